package connpoolprom_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/connpoolprom"
)

// ExampleNewCollector registers a pool's collector, as a /metrics handler
// would serve it (promhttp.HandlerFor(reg, promhttp.HandlerOpts{})), and
// prints a few of its metrics after a TryGet, one Get and a Put: the
// TryGet found no idle conn (a failed Get, no_idle_conn), the Get dialed
// the pool's first conn (a miss), which is idle again. A rate over every
// result of connpool_gets_total is the pool's Get rate.
func ExampleNewCollector() {
	addr, stop := listen() // a loopback server, standing in for a backend
	defer stop()
	pool, err := connpool.New("tcp", addr, connpool.WithName("cache"))
	if err != nil {
		log.Fatal(err)
	}
	defer func() {
		if err := pool.Close(); err != nil {
			log.Fatal(err)
		}
	}()

	reg := prometheus.NewRegistry()
	reg.MustRegister(connpoolprom.NewCollector(pool))

	if _, err := pool.TryGet(); !errors.Is(err, connpool.ErrNoIdleConn) {
		log.Fatalf("TryGet of an empty pool: %v", err)
	}
	conn, err := pool.Get(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	if err := conn.Close(); err != nil {
		log.Fatal(err)
	}

	mfs, err := reg.Gather()
	if err != nil {
		log.Fatal(err)
	}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "connpool_connections", "connpool_dials_total", "connpool_gets_total":
			for _, m := range mf.GetMetric() {
				fmt.Printf("%s{%s} %v\n", mf.GetName(), labels(m), value(m))
			}
		}
	}
	// Output:
	// connpool_connections{pool="cache",state="closing"} 0
	// connpool_connections{pool="cache",state="dialing"} 0
	// connpool_connections{pool="cache",state="idle"} 1
	// connpool_connections{pool="cache",state="in_use"} 0
	// connpool_dials_total{pool="cache"} 1
	// connpool_gets_total{pool="cache",result="clients_over_cap"} 0
	// connpool_gets_total{pool="cache",result="dial_error"} 0
	// connpool_gets_total{pool="cache",result="hit"} 0
	// connpool_gets_total{pool="cache",result="invalid"} 0
	// connpool_gets_total{pool="cache",result="miss"} 1
	// connpool_gets_total{pool="cache",result="no_idle_conn"} 1
	// connpool_gets_total{pool="cache",result="pool_closed"} 0
	// connpool_gets_total{pool="cache",result="shed_deadline"} 0
	// connpool_gets_total{pool="cache",result="shed_overload"} 0
	// connpool_gets_total{pool="cache",result="timeout"} 0
	// connpool_gets_total{pool="cache",result="too_many_waiters"} 0
}

// labels writes m's labels but the address and network, which change
// from run to run.
func labels(m *dto.Metric) string {
	var out []string
	for _, lp := range m.GetLabel() {
		if lp.GetName() != "address" && lp.GetName() != "network" {
			out = append(out, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
		}
	}
	return strings.Join(out, ",")
}

// value returns the value of a gauge or a counter.
func value(m *dto.Metric) float64 {
	if g := m.GetGauge(); g != nil {
		return g.GetValue()
	}
	return m.GetCounter().GetValue()
}

// listen starts a loopback server that accepts conns and holds each until
// its client closes it. stop closes the listener and waits for the
// server's goroutines, which end once their clients have closed.
func listen() (addr string, stop func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					log.Print(err)
				}
				return
			}
			wg.Go(func() {
				if _, err := io.Copy(io.Discard, c); err != nil {
					log.Print(err)
				}
				if err := c.Close(); err != nil {
					log.Print(err)
				}
			})
		}
	})
	return ln.Addr().String(), func() {
		if err := ln.Close(); err != nil {
			log.Print(err)
		}
		wg.Wait()
	}
}
