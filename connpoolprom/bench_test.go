package connpoolprom_test

import (
	"context"
	"fmt"
	"net"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/connpoolprom"
)

// pipeDial is a dialer of in-memory conns: no socket, no goroutine. The
// far end is dropped; the pool never writes to it.
func pipeDial(context.Context, string, string) (net.Conn, error) {
	c, _ := net.Pipe()
	return c, nil
}

// benchGroup returns a group of n pools, each with one idle conn, so
// that every pool has counters and a dial in its histogram.
func benchGroup(b *testing.B, n int) *connpool.Group {
	b.Helper()
	g, err := connpool.NewGroup(connpool.WithDialer(pipeDial))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { g.Close() })
	ctx := context.Background()
	for i := range n {
		c, err := g.Get(ctx, "tcp", fmt.Sprintf("10.0.%d.%d:6379", i/256, i%256))
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Close(); err != nil {
			b.Fatal(err)
		}
	}
	return g
}

// BenchmarkGroupCollect measures one full scrape of a group's collector
// through a registry's Gather (gather): one Group.Stats call, the
// constant metrics of every pool, and the registry's checks and sorting;
// and the collector's part alone (collect): Collect into a drained
// channel.
func BenchmarkGroupCollect(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("pools=%d/collect", n), func(b *testing.B) {
			c := connpoolprom.NewGroupCollector(benchGroup(b, n))
			b.ReportAllocs()
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
				<-done
			}
		})
		b.Run(fmt.Sprintf("pools=%d/gather", n), func(b *testing.B) {
			reg := prometheus.NewRegistry()
			reg.MustRegister(connpoolprom.NewGroupCollector(benchGroup(b, n)))
			b.ReportAllocs()
			var samples int
			for b.Loop() {
				mfs, err := reg.Gather()
				if err != nil {
					b.Fatal(err)
				}
				samples = 0
				for _, mf := range mfs {
					samples += len(mf.GetMetric())
				}
			}
			b.ReportMetric(float64(samples), "metrics/scrape")
		})
	}
}
