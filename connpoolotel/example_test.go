package connpoolotel_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"slices"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/connpoolotel"
)

// ExampleNew wires a pool in three lines (New, WithHooks, Observe), uses
// one conn, and prints what a collection by a manual reader holds: the
// gauges and counters of the pool, and how many points each histogram
// has. A real program passes otel.GetMeterProvider() or its own provider.
func ExampleNew() {
	srv, err := startEcho()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))

	m, err := connpoolotel.New(mp)
	if err != nil {
		log.Fatal(err)
	}
	pool, err := connpool.New("tcp", srv.Addr(), connpool.WithName("orders"),
		connpool.WithMaxConns(2), connpool.WithHooks(m.Hooks()))
	if err != nil {
		log.Fatal(err)
	}
	reg, err := m.Observe(pool)
	if err != nil {
		log.Fatal(err)
	}

	conn, err := pool.Get(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	conn.MarkUnusable() // its return closes it, as "broken"
	if err := conn.Close(); err != nil {
		log.Fatal(err)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		log.Fatal(err)
	}
	var lines []string
	for _, sm := range rm.ScopeMetrics {
		for _, metric := range sm.Metrics {
			switch data := metric.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range data.DataPoints {
					if strings.HasPrefix(metric.Name, "connpool.") && dp.Value == 0 {
						continue // one series per reason or result: print those that happened
					}
					lines = append(lines, fmt.Sprintf("%s%s = %d", metric.Name, labels(dp.Attributes), dp.Value))
				}
			case metricdata.Histogram[float64]:
				for _, dp := range data.DataPoints {
					lines = append(lines, fmt.Sprintf("%s%s: %d point(s)", metric.Name, labels(dp.Attributes), dp.Count))
				}
			}
		}
	}
	slices.Sort(lines)
	fmt.Println(strings.Join(lines, "\n"))

	if err := reg.Unregister(); err != nil { // before the pool goes: the meter forgets it
		log.Fatal(err)
	}
	if err := pool.Close(); err != nil {
		log.Fatal(err)
	}
	if err := mp.Shutdown(context.Background()); err != nil {
		log.Fatal(err)
	}
	// Output:
	// connpool.client.connection.closed{pool=orders connpool.close.reason=broken} = 1
	// connpool.client.connection.gets{pool=orders connpool.get.result=miss} = 1
	// db.client.connection.count{pool=orders db.client.connection.state=idle} = 0
	// db.client.connection.count{pool=orders db.client.connection.state=used} = 0
	// db.client.connection.create_time{pool=orders}: 1 point(s)
	// db.client.connection.idle.max{pool=orders} = 2
	// db.client.connection.idle.min{pool=orders} = 0
	// db.client.connection.max{pool=orders} = 2
	// db.client.connection.pending_requests{pool=orders} = 0
	// db.client.connection.timeouts{pool=orders} = 0
	// db.client.connection.use_time{pool=orders}: 1 point(s)
}

// labels renders a point's attributes, the pool's name first as "pool".
func labels(set attribute.Set) string {
	var b strings.Builder
	if v, ok := set.Value("db.client.connection.pool.name"); ok {
		b.WriteString("pool=" + v.AsString())
	}
	for _, kv := range set.ToSlice() {
		if kv.Key != "db.client.connection.pool.name" {
			b.WriteString(" " + string(kv.Key) + "=" + kv.Value.String())
		}
	}
	return "{" + b.String() + "}"
}

// echoServer echoes what each conn sends, on a loopback port of its own.
type echoServer struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex // guards conns
	conns map[net.Conn]struct{}
}

// startEcho starts an echo server and returns it with its address.
func startEcho() (*echoServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &echoServer{ln: ln, conns: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

func (s *echoServer) Addr() string { return s.ln.Addr().String() }

func (s *echoServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			_, _ = io.Copy(c, c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			_ = c.Close()
		}()
	}
}

// Close stops the server, closes its conns and waits for its goroutines.
func (s *echoServer) Close() error {
	err := s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}
