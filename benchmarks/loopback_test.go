package benchmarks

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"testing"

	"github.com/jackc/puddle/v2"

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/internal/testcert"
	"github.com/connpool/connpool/internal/testserver"
)

const msgSize = 64

// echo does one request/reply round trip of msgSize bytes.
func echo(c net.Conn, buf []byte) error {
	if _, err := c.Write(buf); err != nil {
		return err
	}
	_, err := io.ReadFull(c, buf)
	return err
}

func startEcho(b *testing.B, opts ...testserver.Option) *testserver.Server {
	b.Helper()
	srv, err := testserver.Start(opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	return srv
}

// BenchmarkLoopback measures one echo round trip over loopback TCP, from
// GOMAXPROCS goroutines, with the conn got in five ways: a raw persistent
// conn per goroutine (the floor), connpool (checkout peek on), puddle
// holding net.Conns, a new dial per request, and a new TLS dial per
// request.
func BenchmarkLoopback(b *testing.B) {
	srv := startEcho(b)
	addr := srv.Addr()
	ctx := context.Background()

	b.Run("conn=raw", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Error(err)
				return
			}
			defer c.Close()
			buf := make([]byte, msgSize)
			for pb.Next() {
				if err := echo(c, buf); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})

	b.Run("conn=connpool", func(b *testing.B) {
		p, err := connpool.New("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			buf := make([]byte, msgSize)
			for pb.Next() {
				c, err := p.Get(ctx)
				if err != nil {
					b.Error(err)
					return
				}
				if err := echo(c, buf); err != nil {
					b.Error(err)
					return
				}
				c.Close()
			}
		})
	})

	b.Run("conn=puddle", func(b *testing.B) {
		p, err := puddle.NewPool(&puddle.Config[net.Conn]{
			Constructor: func(ctx context.Context) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "tcp", addr)
			},
			Destructor: func(c net.Conn) { c.Close() },
			MaxSize:    64,
		})
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			buf := make([]byte, msgSize)
			for pb.Next() {
				r, err := p.Acquire(ctx)
				if err != nil {
					b.Error(err)
					return
				}
				if err := echo(r.Value(), buf); err != nil {
					b.Error(err)
					return
				}
				r.Release()
			}
		})
	})

	b.Run("conn=dial-per-request", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			buf := make([]byte, msgSize)
			for pb.Next() {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Error(err)
					return
				}
				err = echo(c, buf)
				c.Close()
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	})

	b.Run("conn=tls-dial-per-request", func(b *testing.B) {
		pair, err := testcert.New()
		if err != nil {
			b.Fatal(err)
		}
		tlsSrv := startEcho(b, testserver.WithTLS(pair.Server))
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			buf := make([]byte, msgSize)
			for pb.Next() {
				c, err := tls.Dial("tcp", tlsSrv.Addr(), pair.Client)
				if err != nil {
					b.Error(err)
					return
				}
				err = echo(c, buf)
				c.Close()
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
