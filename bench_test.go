package connpool_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/internal/fakeconn"
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
			getPutLoop(b, benchPool(b, 1, connpool.WithLivenessCheck(peek)))
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

// getPutLoop times a Get and a Put of an idle conn of p, from one
// goroutine.
func getPutLoop(b *testing.B, p *connpool.Pool) {
	ctx := context.Background()
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
}

// fullPool returns a pool of in-memory conns with n idle.
func fullPool(b *testing.B, n int) *connpool.Pool {
	b.Helper()
	p, err := connpool.New("tcp", "fake:0", connpool.WithMaxConns(n), connpool.WithDialer(fakeconn.Dial))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	conns := make([]*connpool.Conn, n)
	for i := range conns {
		if conns[i], err = p.Get(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range conns {
		c.Close()
	}
	return p
}

// BenchmarkReapSweep measures one reaper sweep over an idle set in which
// nothing is due: the background cost of a large pool.
func BenchmarkReapSweep(b *testing.B) {
	for _, n := range []int{100, 10000} {
		b.Run(fmt.Sprintf("idle=%d", n), func(b *testing.B) {
			p := fullPool(b, n)
			b.ReportAllocs()
			for b.Loop() {
				p.ReapNow()
			}
		})
	}
}

// BenchmarkGetPutObserved measures Get+Put of an idle conn (peek off) with
// each way of observing it on: nothing, the use-time histogram, hooks on
// every event, leak detection (a stack per Get).
func BenchmarkGetPutObserved(b *testing.B) {
	noop := connpool.Hooks{
		GetStarted: func(connpool.GetStartedEvent) {},
		GetDone:    func(connpool.GetDoneEvent) {},
		Put:        func(connpool.PutEvent) {},
	}
	for _, m := range []struct {
		name string
		opt  connpool.Option
	}{
		{"none", connpool.WithUseTimeMetrics(false)},
		{"usetime", connpool.WithUseTimeMetrics(true)},
		{"hooks", connpool.WithHooks(noop)},
		{"leaks", connpool.WithLeakDetection(time.Minute)},
	} {
		b.Run("observe="+m.name, func(b *testing.B) {
			getPutLoop(b, benchPool(b, 1, connpool.WithLivenessCheck(false), m.opt))
		})
	}
}
