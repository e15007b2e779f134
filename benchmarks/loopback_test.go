package benchmarks

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

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

func startEcho(b testing.TB, opts ...testserver.Option) *testserver.Server {
	b.Helper()
	srv, err := testserver.Start(opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	return srv
}

// requester does one round trip; each client goroutine gets its own.
type requester func(buf []byte) error

// way is one way of getting a conn for a request. setup runs once per
// benchmark and returns a maker of per-goroutine requesters.
type way struct {
	name  string
	setup func(b testing.TB, addr string) func() (requester, func())
}

func dialEach(dial func() (net.Conn, error)) func() (requester, func()) {
	return func() (requester, func()) {
		return func(buf []byte) error {
			c, err := dial()
			if err != nil {
				return err
			}
			defer c.Close()
			return echo(c, buf)
		}, func() {}
	}
}

var ways = []way{
	{"raw", func(b testing.TB, addr string) func() (requester, func()) {
		return func() (requester, func()) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Error(err)
				return func([]byte) error { return err }, func() {}
			}
			return func(buf []byte) error { return echo(c, buf) }, func() { c.Close() }
		}
	}},
	{"connpool", func(b testing.TB, addr string) func() (requester, func()) {
		p, err := connpool.New("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { p.Close() })
		return func() (requester, func()) {
			return func(buf []byte) error {
				c, err := p.Get(context.Background())
				if err != nil {
					return err
				}
				defer c.Close()
				return echo(c, buf)
			}, func() {}
		}
	}},
	{"puddle", func(b testing.TB, addr string) func() (requester, func()) {
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
		b.Cleanup(p.Close)
		return func() (requester, func()) {
			return func(buf []byte) error {
				r, err := p.Acquire(context.Background())
				if err != nil {
					return err
				}
				defer r.Release()
				return echo(r.Value(), buf)
			}, func() {}
		}
	}},
	{"dial-per-request", func(b testing.TB, addr string) func() (requester, func()) {
		return dialEach(func() (net.Conn, error) { return net.Dial("tcp", addr) })
	}},
	{"tls-dial-per-request", func(b testing.TB, _ string) func() (requester, func()) {
		pair, err := testcert.New()
		if err != nil {
			b.Fatal(err)
		}
		srv := startEcho(b, testserver.WithTLS(pair.Server))
		return dialEach(func() (net.Conn, error) { return tls.Dial("tcp", srv.Addr(), pair.Client) })
	}},
}

// BenchmarkLoopback measures one echo round trip of 64 bytes over
// loopback TCP with the conn got in five ways: a raw persistent conn (the
// floor), connpool (checkout peek on), puddle holding net.Conns, a new
// dial per request, and a new TLS dial per request. Sequential is one
// client, latency-bound; parallel is GOMAXPROCS clients, CPU-bound (the
// server shares the machine), where every nanosecond of client work shows.
func BenchmarkLoopback(b *testing.B) {
	srv := startEcho(b)
	for _, w := range ways {
		b.Run("conn="+w.name+"/mode=sequential", func(b *testing.B) {
			newRequester := w.setup(b, srv.Addr())
			req, cleanup := newRequester()
			defer cleanup()
			buf := make([]byte, msgSize)
			b.ReportAllocs()
			for b.Loop() {
				if err := req(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("conn="+w.name+"/mode=parallel", func(b *testing.B) {
			newRequester := w.setup(b, srv.Addr())
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				req, cleanup := newRequester()
				defer cleanup()
				buf := make([]byte, msgSize)
				for pb.Next() {
					if err := req(buf); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// TestWaysWork checks each way of getting a conn carries a round trip.
func TestWaysWork(t *testing.T) {
	srv := startEcho(t)
	for _, w := range ways {
		t.Run(w.name, func(t *testing.T) {
			req, cleanup := w.setup(t, srv.Addr())()
			defer cleanup()
			buf := []byte("0123456789")
			if err := req(buf); err != nil {
				t.Fatal(err)
			}
			if string(buf) != "0123456789" {
				t.Fatalf("echo returned %q", buf)
			}
		})
	}
}

// BenchmarkLoopbackPaired alternates, in one loop, a round trip on a raw
// persistent conn and one through connpool, and reports the mean of each
// and the pool's overhead in percent. The machine's drift falls on both
// alike, so it resolves differences of a percent that separate runs
// cannot. peek=true is connpool's default; peek=false isolates the cost of
// the checkout peek.
func BenchmarkLoopbackPaired(b *testing.B) {
	srv := startEcho(b)
	for _, peek := range []bool{true, false} {
		b.Run(fmt.Sprintf("peek=%v", peek), func(b *testing.B) {
			raw, err := net.Dial("tcp", srv.Addr())
			if err != nil {
				b.Fatal(err)
			}
			defer raw.Close()
			p, err := connpool.New("tcp", srv.Addr(), connpool.WithLivenessCheck(peek))
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			buf := make([]byte, msgSize)
			var rawTime, poolTime time.Duration
			for b.Loop() {
				t0 := time.Now()
				if err := echo(raw, buf); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				c, err := p.Get(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				if err := echo(c, buf); err != nil {
					b.Fatal(err)
				}
				c.Close()
				t2 := time.Now()
				rawTime += t1.Sub(t0)
				poolTime += t2.Sub(t1)
			}
			n := float64(b.N)
			b.ReportMetric(float64(rawTime.Nanoseconds())/n, "raw-ns/rt")
			b.ReportMetric(float64(poolTime.Nanoseconds())/n, "connpool-ns/rt")
			b.ReportMetric(100*(float64(poolTime)/float64(rawTime)-1), "overhead-%")
		})
	}
}
