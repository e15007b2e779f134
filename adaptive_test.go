package connpool_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
)

func TestAdaptiveMaxConnsValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []connpool.Option
		want string
	}{
		{"zero min", []connpool.Option{connpool.WithAdaptiveMaxConns(0, 8)}, "WithAdaptiveMaxConns(0, 8): min must be at least 1"},
		{"max below min", []connpool.Option{connpool.WithAdaptiveMaxConns(8, 4)}, "WithAdaptiveMaxConns(8, 4): max must be at least min"},
		{"max conns outside", []connpool.Option{connpool.WithAdaptiveMaxConns(2, 8), connpool.WithMaxConns(9)}, "WithMaxConns(9) is outside WithAdaptiveMaxConns(2, 8)"},
		{"max conns below", []connpool.Option{connpool.WithMaxConns(1), connpool.WithAdaptiveMaxConns(2, 8)}, "WithMaxConns(1) is outside WithAdaptiveMaxConns(2, 8)"},
		{"min idle above min", []connpool.Option{connpool.WithAdaptiveMaxConns(2, 8), connpool.WithMinIdle(3)}, "WithMinIdle(3) exceeds the min of WithAdaptiveMaxConns(2, 8)"},
		{"max idle above min", []connpool.Option{connpool.WithAdaptiveMaxConns(2, 8), connpool.WithMaxIdle(3)}, "WithMaxIdle(3) exceeds the min of WithAdaptiveMaxConns(2, 8)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := connpool.New("tcp", "x:1", tc.opts...)
			require.Error(t, err)
			assert.Nil(t, p)
			assert.ErrorIs(t, err, connpool.ErrInvalidOption)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestAdaptiveMaxConnsStartsAndStats(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr(), connpool.WithAdaptiveMaxConns(2, 16), connpool.WithMinIdle(2))
	s := p.Stats()
	def := newPool(t, srv.Addr()).Stats().MaxConns
	assert.Equal(t, min(max(def, 2), 16), s.MaxConns, "starts at the default cap, within the bounds")
	assert.Equal(t, 2, s.AdaptiveMin)
	assert.Equal(t, 16, s.AdaptiveMax)

	p = newPool(t, srv.Addr(), connpool.WithAdaptiveMaxConns(2, 16), connpool.WithMaxConns(10))
	assert.Equal(t, 10, p.Stats().MaxConns, "starts at WithMaxConns")

	s = newPool(t, srv.Addr()).Stats()
	assert.Zero(t, s.AdaptiveMin, "off by default")
	assert.Zero(t, s.AdaptiveMax)
	assert.Zero(t, s.AdaptiveBaseline)
}

// TestAdaptiveCapStartsWhereAPoolWould pins where an adaptive cap given
// no WithMaxConns starts: at the default cap a pool without it has,
// within the bounds. It started at min: poolbench's short sizing run,
// with WithAdaptiveMaxConns(1, 128) and half the backend's capacity
// already arriving, still had its cap at 4 after a second and served
// 66.8% of the best fixed cap's goodput.
func TestAdaptiveCapStartsWhereAPoolWould(t *testing.T) {
	srv := startServer(t)
	def := newPool(t, srv.Addr()).Stats().MaxConns
	assert.Equal(t, def, newPool(t, srv.Addr(), connpool.WithAdaptiveMaxConns(1, 128)).Stats().MaxConns)
	assert.Equal(t, 2, newPool(t, srv.Addr(), connpool.WithAdaptiveMaxConns(1, 2)).Stats().MaxConns, "within max")
	assert.Equal(t, def+1, newPool(t, srv.Addr(), connpool.WithAdaptiveMaxConns(def+1, def+5)).Stats().MaxConns, "within min")
}

func TestAdaptiveRejectsDialContext(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr(), connpool.WithAdaptiveMaxConns(1, 4))
	c, err := p.DialContext(context.Background(), "tcp", srv.Addr())
	assert.Nil(t, c)
	assert.ErrorIs(t, err, connpool.ErrAdaptiveDialContext)
	assert.ErrorContains(t, err, "use Get and Put", "the error says what to do")
	assert.Zero(t, p.Stats().Dials, "nothing dialed for it")

	g, err := connpool.NewGroup(connpool.WithAdaptiveMaxConns(1, 4))
	require.NoError(t, err)
	t.Cleanup(func() { _ = g.Close() })
	_, err = g.DialContext(context.Background(), "tcp", srv.Addr())
	assert.ErrorIs(t, err, connpool.ErrAdaptiveDialContext)
	assert.ErrorContains(t, err, "in a Group, one without it among NewGroup's options")
}

// TestSetMaxConnsOnAdaptivePool pins what SetMaxConns does there: within
// the bounds it moves the cap and reports it; outside, it is an error.
func TestSetMaxConnsOnAdaptivePool(t *testing.T) {
	srv := startServer(t)
	var mu sync.Mutex
	var events []connpool.MaxConnsChangedEvent
	p := newPool(t, srv.Addr(), connpool.WithName("a"), connpool.WithAdaptiveMaxConns(2, 8), connpool.WithMaxConns(2),
		connpool.WithHooks(connpool.Hooks{MaxConnsChanged: func(e connpool.MaxConnsChangedEvent) {
			mu.Lock()
			events = append(events, e)
			mu.Unlock()
		}}))
	require.NoError(t, p.SetMaxConns(6))
	assert.Equal(t, 6, p.Stats().MaxConns)
	err := p.SetMaxConns(9)
	assert.ErrorIs(t, err, connpool.ErrInvalidOption)
	assert.Contains(t, err.Error(), "SetMaxConns(9) is outside WithAdaptiveMaxConns(2, 8)")
	assert.Error(t, p.SetMaxConns(1))
	assert.Equal(t, 6, p.Stats().MaxConns)
	mu.Lock()
	defer mu.Unlock()
	// Idle, the pool sees no demand: the controller does not move the cap.
	assert.Equal(t, []connpool.MaxConnsChangedEvent{{Pool: "a", Old: 2, New: 6, Reason: connpool.MaxConnsSet}}, events)
	assert.Equal(t, "set", connpool.MaxConnsSet.String())
	assert.Equal(t, "latency", connpool.MaxConnsLatency.String())
}

// limitedServer is a loopback server that serves at most c requests at
// once, each for service, and queues the others, first come, first
// served: a backend whose best pool size is c. A request is one byte,
// answered by one byte.
type limitedServer struct {
	ln      net.Listener
	slots   chan struct{}
	service time.Duration
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
}

func startLimitedServer(t *testing.T, c int, service time.Duration) *limitedServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &limitedServer{ln: ln, slots: make(chan struct{}, c), service: service, conns: map[net.Conn]struct{}{}}
	s.wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[nc] = struct{}{}
			s.mu.Unlock()
			s.wg.Go(func() { s.serve(nc) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for nc := range s.conns {
			nc.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *limitedServer) serve(nc net.Conn) {
	defer nc.Close()
	b := make([]byte, 1)
	for {
		if _, err := nc.Read(b); err != nil {
			return
		}
		s.slots <- struct{}{}
		time.Sleep(s.service) // the backend's work
		<-s.slots
		if _, err := nc.Write(b); err != nil {
			return
		}
	}
}

// TestAdaptiveCapFindsServerConcurrency drives a real pool from 1 conn,
// with many more clients than the server serves at once, against a
// server that serves 8 at a time: the cap must find 8 and stay near it
// (its median from a quarter of 8 to four times 8: on a loaded machine the
// held time is noisy), and the ledger must balance throughout. The
// service time is long beside a loopback round trip, even under -race, so
// that the best cap is the server's concurrency.
func TestAdaptiveCapFindsServerConcurrency(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for seconds")
	}
	const c = 8
	srv := startLimitedServer(t, c, 10*time.Millisecond)
	var mu sync.Mutex
	reasons := map[connpool.MaxConnsReason]int{}
	p := newPool(t, srv.ln.Addr().String(), connpool.WithAdaptiveMaxConns(1, 64),
		connpool.WithHooks(connpool.Hooks{MaxConnsChanged: func(e connpool.MaxConnsChangedEvent) {
			mu.Lock()
			reasons[e.Reason]++
			mu.Unlock()
		}}))
	stopLedger := watchLedger(t, p)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var heldFor, helds atomic.Int64 // Get to Close, as the pool times it
	errs := make(chan error, 1)
	for range 4 * c {
		wg.Go(func() {
			b := []byte{'x'}
			for ctx.Err() == nil {
				conn, err := p.Get(ctx)
				start := time.Now()
				if err != nil {
					if ctx.Err() == nil {
						select {
						case errs <- err:
						default:
						}
					}
					return
				}
				if _, err := conn.Write(b); err == nil {
					_, _ = conn.Read(b) // a failed Read poisons conn: Close then closes it
				}
				conn.Close()
				heldFor.Add(int64(time.Since(start)))
				helds.Add(1)
			}
		})
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})

	// The cap grows only while the held time stays within tolerance of
	// its baseline. On a loaded machine (CI runs the chaos tests beside
	// this one) the held time can rise above a baseline taken in a quiet
	// moment, with no queueing of the pool's making, and the cap then
	// waits for the baseline to follow, within two epochs (20s).
	require.Eventually(t, func() bool { return p.Stats().MaxConns >= c-2 }, 30*time.Second, 10*time.Millisecond, "the cap grows to the server's concurrency")
	var caps []int
	tk := time.NewTicker(25 * time.Millisecond)
	defer tk.Stop()
	for range 120 { // 3s
		<-tk.C
		caps = append(caps, p.Stats().MaxConns)
	}
	cancel()
	wg.Wait()
	stopLedger()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	slices.Sort(caps)
	median := caps[len(caps)/2]
	// Within a factor of four, well off both bounds (1 and 64): on a
	// loaded machine (CI runs packages side by side) the server's sleeps
	// overshoot and round trips stall, by as much as the 10ms service
	// itself, and the cap rightly follows what it measures: with two CPU
	// hogs beside the tests (issue 22) medians of 3 and 26 came up. The
	// simulations in internal/adaptive pin the controller's settling
	// exactly.
	assert.GreaterOrEqual(t, median, c/4, "median cap %d: %v", median, caps)
	s := p.Stats()
	// Above c by more, scaled by the baseline over the service time: a
	// client slowed by its own load (the baseline a trial found) holds
	// each conn longer than the server works on it, and then more conns
	// than c keep the server's c slots busy.
	assert.LessOrEqual(t, float64(median), 4*c*max(1, float64(s.AdaptiveBaseline)/float64(10*time.Millisecond)),
		"median cap %d, baseline %v: %v", median, s.AdaptiveBaseline, caps)
	// The baseline is at least the server's sleep, and at most what the
	// clients held their conns for on average (it is the lowest window
	// mean). Not a fixed bound: a loaded machine stretches the sleeps and
	// the round trips (issue 22: 24ms against a fixed 20ms).
	held := time.Duration(heldFor.Load() / max(1, helds.Load()))
	t.Logf("baseline %v; conns held for %v on average", s.AdaptiveBaseline, held)
	assert.GreaterOrEqual(t, s.AdaptiveBaseline, 10*time.Millisecond)
	assert.LessOrEqual(t, s.AdaptiveBaseline, held+time.Millisecond, "the baseline is the low held time")
	mu.Lock()
	assert.Positive(t, reasons[connpool.MaxConnsDemand], "grew for demand: %v", reasons)
	mu.Unlock()
	checkBooks(t, s)
}

// TestAdaptiveClosedPool: the controller's goroutine ends with the
// pool (goleak checks every test), and a closed adaptive pool refuses
// SetMaxConns like any other.
func TestAdaptiveClosedPool(t *testing.T) {
	srv := startServer(t)
	p, err := connpool.New("tcp", srv.Addr(), connpool.WithAdaptiveMaxConns(1, 4))
	require.NoError(t, err)
	require.NoError(t, p.Close())
	assert.True(t, errors.Is(p.SetMaxConns(2), connpool.ErrClosed))
}
