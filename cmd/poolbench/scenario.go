package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/connpool/connpool"
)

// scenario is one way of getting a conn for each request.
type scenario struct {
	name     string
	group    string // "dial", "pool", "raw", "saturated" or "chan": how the conn is got
	poolSize int    // for groups "pool", "saturated" and "chan"
	tls      bool
	noPeek   bool // for group "saturated": connpool with WithLivenessCheck(false)
	clients  int  // if > 0, the clients to run instead of the load's

	// Filled in by run.
	requests  int64
	errors    int64
	elapsed   time.Duration
	latencies []time.Duration // sorted
	dials     int64
	stats     *connpool.Stats
	firstErr  error
}

func (s *scenario) rps() float64 {
	if s.elapsed <= 0 {
		return 0
	}
	return float64(s.requests) / s.elapsed.Seconds()
}

// percentile returns the q-th quantile (0 < q <= 1) of the latencies.
func (s *scenario) percentile(q float64) time.Duration {
	if len(s.latencies) == 0 {
		return 0
	}
	i := int(q*float64(len(s.latencies))+0.5) - 1
	return s.latencies[min(max(i, 0), len(s.latencies)-1)]
}

// target is what the scenarios talk to.
type target struct {
	addr      string
	tlsAddr   string // "" when there is no TLS endpoint
	tlsConfig *tls.Config
	ping      []byte
	pong      []byte
}

// load says how much work a scenario does: n requests, or for d.
type load struct {
	concurrency int
	requests    int64
	duration    time.Duration
}

// countingDialer counts the dials a scenario makes.
type countingDialer struct {
	dials atomic.Int64
	tls   *tls.Config
}

func (d *countingDialer) dial(ctx context.Context, network, address string) (net.Conn, error) {
	d.dials.Add(1)
	var nd net.Dialer
	if d.tls != nil {
		td := tls.Dialer{NetDialer: &nd, Config: d.tls}
		return td.DialContext(ctx, network, address)
	}
	return nd.DialContext(ctx, network, address)
}

// roundTrip sends the ping and checks the pong.
func (t *target) roundTrip(c net.Conn, buf []byte) error {
	if _, err := c.Write(t.ping); err != nil {
		return err
	}
	if _, err := io.ReadFull(c, buf[:len(t.pong)]); err != nil {
		return err
	}
	if !bytes.Equal(buf[:len(t.pong)], t.pong) {
		return fmt.Errorf("unexpected reply %q", buf[:len(t.pong)])
	}
	return nil
}

// worker is one client goroutine's way of doing a request.
type worker func(ctx context.Context, buf []byte) error

// run drives s with l's load against t, calling progress every so often.
func (s *scenario) run(t *target, l load, progress func(done int64)) error {
	addr := t.addr
	d := &countingDialer{}
	if s.tls {
		addr, d.tls = t.tlsAddr, t.tlsConfig
	}
	ctx := context.Background()
	var newWorker func() (worker, func(), error)
	var pool *connpool.Pool

	switch s.group {
	case "dial":
		newWorker = func() (worker, func(), error) {
			return func(ctx context.Context, buf []byte) error {
				c, err := d.dial(ctx, "tcp", addr)
				if err != nil {
					return err
				}
				defer c.Close()
				return t.roundTrip(c, buf)
			}, func() {}, nil
		}
	case "raw":
		newWorker = func() (worker, func(), error) {
			c, err := d.dial(ctx, "tcp", addr)
			if err != nil {
				return nil, nil, err
			}
			return func(_ context.Context, buf []byte) error { return t.roundTrip(c, buf) },
				func() { c.Close() }, nil
		}
	case "pool", "saturated":
		var err error
		pool, err = connpool.New("tcp", addr, connpool.WithMaxConns(s.poolSize), connpool.WithDialer(d.dial),
			connpool.WithLivenessCheck(!s.noPeek))
		if err != nil {
			return err
		}
		defer pool.Close()
		newWorker = func() (worker, func(), error) {
			return func(ctx context.Context, buf []byte) error {
				c, err := pool.Get(ctx)
				if err != nil {
					return err
				}
				if err := t.roundTrip(c, buf); err != nil {
					c.MarkUnusable()
					c.Close()
					return err
				}
				return c.Close()
			}, func() {}, nil
		}
	case "chan":
		// The plain buffered-channel pool: n pre-dialed conns, no health
		// checks, no contexts. A conn that fails a request is closed and
		// its slot goes back empty (nil), to be redialed by the next taker.
		ch := make(chan net.Conn, s.poolSize)
		defer func() {
			for range len(ch) {
				if c := <-ch; c != nil {
					c.Close()
				}
			}
		}()
		for range s.poolSize {
			c, err := d.dial(ctx, "tcp", addr)
			if err != nil {
				return err
			}
			ch <- c
		}
		newWorker = func() (worker, func(), error) {
			return func(ctx context.Context, buf []byte) error {
				c := <-ch
				if c == nil {
					var err error
					if c, err = d.dial(ctx, "tcp", addr); err != nil {
						ch <- nil
						return err
					}
				}
				if err := t.roundTrip(c, buf); err != nil {
					c.Close()
					ch <- nil
					return err
				}
				ch <- c
				return nil
			}, func() {}, nil
		}
	}

	clients := l.concurrency
	if s.clients > 0 {
		clients = s.clients
	}
	var (
		issued   atomic.Int64
		done     atomic.Int64
		failures atomic.Int64
		mu       sync.Mutex
		all      []time.Duration
		firstErr error
		wg       sync.WaitGroup
	)
	deadline := time.Now().Add(l.duration)
	more := func() bool {
		if l.requests > 0 {
			return issued.Add(1) <= l.requests
		}
		return time.Now().Before(deadline)
	}
	start := time.Now()
	stop := make(chan struct{})
	ticker := time.NewTicker(200 * time.Millisecond)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-ticker.C:
				progress(done.Load())
			}
		}
	}()
	fail := func(err error) {
		failures.Add(1)
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	for range clients {
		w, cleanup, err := newWorker()
		if err != nil {
			fail(err)
			continue
		}
		wg.Go(func() {
			defer cleanup()
			buf := make([]byte, max(len(t.pong), 1))
			lat := make([]time.Duration, 0, 1024)
			for more() {
				t0 := time.Now()
				if err := w(ctx, buf); err != nil {
					fail(err)
					continue
				}
				lat = append(lat, time.Since(t0))
				done.Add(1)
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		})
	}
	wg.Wait()
	s.elapsed = time.Since(start)
	ticker.Stop()
	close(stop)
	progress(done.Load())

	slices.Sort(all)
	s.latencies, s.requests, s.errors, s.firstErr = all, done.Load(), failures.Load(), firstErr
	s.dials = d.dials.Load()
	if pool != nil {
		st := pool.Stats()
		s.stats = &st
	}
	return nil
}
