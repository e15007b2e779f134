package connpool_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/internal/testserver"
)

// benchPool returns a pool against a loopback echo server with idle conns
// already open, so that every Get in the timed loop is a hit.
func benchPool(b *testing.B, idle int, opts ...connpool.Option) *connpool.Pool {
	b.Helper()
	srv, err := testserver.Start()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	opts = append([]connpool.Option{connpool.WithMaxConns(idle), connpool.WithMinIdle(idle)}, opts...)
	p, err := connpool.New("tcp", srv.Addr(), opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	for p.Stats().Idle < idle {
		runtime.Gosched()
	}
	return p
}

// BenchmarkGetPut measures a Get and a Put of an idle conn, with the
// checkout peek on and off, from one goroutine and from GOMAXPROCS.
func BenchmarkGetPut(b *testing.B) {
	ctx := context.Background()
	for _, peek := range []bool{false, true} {
		b.Run(fmt.Sprintf("peek=%v/sequential", peek), func(b *testing.B) {
			p := benchPool(b, 1, connpool.WithLivenessCheck(peek))
			b.ReportAllocs()
			for b.Loop() {
				c, err := p.Get(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if err := p.Put(c); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("peek=%v/parallel", peek), func(b *testing.B) {
			p := benchPool(b, runtime.GOMAXPROCS(0), connpool.WithLivenessCheck(peek))
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					c, err := p.Get(ctx)
					if err != nil {
						b.Error(err)
						return
					}
					if err := p.Put(c); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
