package connpoolprom_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/connpoolprom"
)

// pipeDial is a dialer of in-memory conns: no socket, no goroutine. The
// far end is dropped; the pool never writes to it.
func pipeDial(context.Context, string, string) (net.Conn, error) {
	c, _ := net.Pipe()
	return c, nil
}

// benchGroup returns a group of n pools, each of which has done what a
// pool in service does, so that its counters and all three histograms
// have data: two dials, a Get that queued and timed out, a conn closed
// as broken, a hit, with use time on. Each pool ends with one idle conn.
func benchGroup(b *testing.B, n int) *connpool.Group {
	b.Helper()
	g, err := connpool.NewGroup(
		connpool.WithDialer(pipeDial),
		connpool.WithMaxConns(2),
		connpool.WithUseTimeMetrics(true),
		connpool.WithGroupIdleTimeout(0), // no pool leaves during the run
	)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { g.Close() })
	var eg errgroup.Group
	eg.SetLimit(64)
	for i := range n {
		addr := fmt.Sprintf("10.0.%d.%d:6379", i/256, i%256)
		eg.Go(func() error { return exercise(g, "tcp", addr) })
	}
	if err := eg.Wait(); err != nil {
		b.Fatal(err)
	}
	if got := len(g.Stats()); got != n {
		b.Fatalf("the group has %d pools, want %d", got, n)
	}
	return g
}

// exercise runs the pool of g for network and addr through a dial, a
// wait, a timeout, a broken close and a hit.
func exercise(g *connpool.Group, network, addr string) error {
	ctx := context.Background()
	c1, err := g.Get(ctx, network, addr)
	if err != nil {
		return err
	}
	c2, err := g.Get(ctx, network, addr)
	if err != nil {
		return err
	}
	short, cancel := context.WithTimeout(ctx, time.Millisecond)
	_, err = g.Get(short, network, addr) // the pool is full: it queues, then times out
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("a Get of a full pool returned %v, want a timeout", err)
	}
	c1.MarkUnusable()
	if err := errors.Join(c1.Close(), c2.Close()); err != nil {
		return err
	}
	c3, err := g.Get(ctx, network, addr)
	if err != nil {
		return err
	}
	return c3.Close()
}

// discard is an http.ResponseWriter that counts the bytes of the body.
type discard struct {
	h http.Header
	n int
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { d.n += len(p); return len(p), nil }
func (d *discard) WriteHeader(int)             {}

// resend is an unchecked collector that sends the same metrics at each
// Collect: with it, a Gather costs only the registry's part.
type resend []prometheus.Metric

func (r resend) Describe(chan<- *prometheus.Desc) {}

func (r resend) Collect(ch chan<- prometheus.Metric) {
	for _, m := range r {
		ch <- m
	}
}

// BenchmarkGroupCollect measures a scrape of a group's collector, a
// group of pools in service (benchGroup), at three depths:
//
//   - collect: the collector's own part, Collect into a channel drained
//     by another goroutine: one Group.Stats call and the metrics built;
//   - gather: what the registry's Gather costs with the collector as its
//     only one (a registry from NewRegistry, as in the package doc):
//     Collect, then the registry's per-metric Write, checks and sorting.
//     This is the scrape of the bar;
//   - registry: the registry's part alone, the floor under gather: a
//     Gather of metrics made once, by the same collector, and sent again
//     at each scrape;
//   - http: a whole /metrics request as a Prometheus server pays for it
//     without compression: promhttp's handler gathering and encoding
//     the text format (bytes/scrape is the body's size).
func BenchmarkGroupCollect(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("pools=%d/collect", n), func(b *testing.B) {
			c := connpoolprom.NewGroupCollector(benchGroup(b, n))
			b.ReportAllocs()
			var metrics int
			for b.Loop() {
				ch := make(chan prometheus.Metric, 1024)
				done := make(chan int)
				go func() {
					n := 0
					for range ch {
						n++
					}
					done <- n
				}()
				c.Collect(ch)
				close(ch)
				metrics = <-done
			}
			b.ReportMetric(float64(metrics), "metrics/scrape")
		})
		b.Run(fmt.Sprintf("pools=%d/gather", n), func(b *testing.B) {
			reg := prometheus.NewRegistry()
			reg.MustRegister(connpoolprom.NewGroupCollector(benchGroup(b, n)))
			b.ReportAllocs()
			var metrics int
			for b.Loop() {
				mfs, err := reg.Gather()
				if err != nil {
					b.Fatal(err)
				}
				metrics = 0
				for _, mf := range mfs {
					metrics += len(mf.GetMetric())
				}
			}
			b.ReportMetric(float64(metrics), "metrics/scrape")
		})
		b.Run(fmt.Sprintf("pools=%d/registry", n), func(b *testing.B) {
			ch := make(chan prometheus.Metric, 64*n)
			connpoolprom.NewGroupCollector(benchGroup(b, n)).Collect(ch)
			close(ch)
			var made resend
			for m := range ch {
				made = append(made, m)
			}
			reg := prometheus.NewRegistry()
			reg.MustRegister(made)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := reg.Gather(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(made)), "metrics/scrape")
		})
		b.Run(fmt.Sprintf("pools=%d/http", n), func(b *testing.B) {
			reg := prometheus.NewRegistry()
			reg.MustRegister(connpoolprom.NewGroupCollector(benchGroup(b, n)))
			h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError})
			req, err := http.NewRequest(http.MethodGet, "/metrics", nil)
			if err != nil {
				b.Fatal(err)
			}
			req.Header.Set("Accept", "text/plain;version=0.0.4")
			b.ReportAllocs()
			var w discard
			for b.Loop() {
				w = discard{h: make(http.Header)}
				h.ServeHTTP(&w, req)
			}
			b.ReportMetric(float64(w.n), "bytes/scrape")
		})
	}
}
