package connpool_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
)

// eventLog records every event a pool emits, from whatever goroutine.
type eventLog struct {
	mu           sync.Mutex
	ready, reset int
	closed       int
	getStarted   int
	getDone      []connpool.GetDoneEvent
	dialStarted  map[uint64]int
	dialDone     map[uint64]connpool.DialDoneEvent
	dialDoneN    map[uint64]int
	puts         []connpool.PutEvent
	connClosed   map[uint64][]connpool.ConnClosedEvent
	checks       []connpool.HealthCheckEvent
	names        map[string]bool
}

func newEventLog() *eventLog {
	return &eventLog{
		dialStarted: map[uint64]int{}, dialDone: map[uint64]connpool.DialDoneEvent{},
		dialDoneN: map[uint64]int{}, connClosed: map[uint64][]connpool.ConnClosedEvent{},
		names: map[string]bool{},
	}
}

func (l *eventLog) record(pool string, f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.names[pool] = true
	f()
}

func (l *eventLog) hooks() connpool.Hooks {
	return connpool.Hooks{
		PoolReady:  func(e connpool.PoolEvent) { l.record(e.Pool, func() { l.ready++ }) },
		PoolReset:  func(e connpool.PoolEvent) { l.record(e.Pool, func() { l.reset++ }) },
		PoolClosed: func(e connpool.PoolEvent) { l.record(e.Pool, func() { l.closed++ }) },
		DialStarted: func(e connpool.DialStartedEvent) {
			l.record(e.Pool, func() { l.dialStarted[e.ConnID]++ })
		},
		DialDone: func(e connpool.DialDoneEvent) {
			l.record(e.Pool, func() { l.dialDone[e.ConnID] = e; l.dialDoneN[e.ConnID]++ })
		},
		GetStarted: func(e connpool.GetStartedEvent) { l.record(e.Pool, func() { l.getStarted++ }) },
		GetDone:    func(e connpool.GetDoneEvent) { l.record(e.Pool, func() { l.getDone = append(l.getDone, e) }) },
		Put:        func(e connpool.PutEvent) { l.record(e.Pool, func() { l.puts = append(l.puts, e) }) },
		ConnClosed: func(e connpool.ConnClosedEvent) {
			l.record(e.Pool, func() { l.connClosed[e.ConnID] = append(l.connClosed[e.ConnID], e) })
		},
		HealthCheckDone: func(e connpool.HealthCheckEvent) {
			l.record(e.Pool, func() { l.checks = append(l.checks, e) })
		},
	}
}

// stats rebuilds every Stats counter from the events alone.
func (l *eventLog) stats() connpool.Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	var s connpool.Stats
	for _, d := range l.dialDone {
		if d.Err == nil {
			s.Dials++
			observe(&s.DialTime, d.Duration)
		} else {
			s.DialErrors++
		}
	}
	for _, g := range l.getDone {
		switch {
		case g.Served == connpool.ServedDial:
			s.Misses++
		case g.Served != 0:
			s.Hits++
		}
		if g.Queued {
			s.WaitCount++
			s.WaitDuration += g.Waited
			observe(&s.WaitTime, g.Waited)
		}
		switch g.Failure {
		case connpool.GetTimeout:
			s.Timeouts++
		case connpool.GetTooManyWaiters:
			s.TooManyWaiters++
		case connpool.GetDialError:
			s.GetDialErrors++
		case connpool.GetPoolClosed:
			s.ClosedPoolGets++
		case connpool.GetNoIdleConn:
			s.NoIdleConn++
		case connpool.GetInvalid:
			s.InvalidGets++
		}
	}
	for _, p := range l.puts {
		observe(&s.UseTime, p.Held)
	}
	for _, evs := range l.connClosed {
		for _, e := range evs {
			if e.Reason != connpool.CloseDialFailed { // counted by its DialDone, in DialErrors
				*closeCounter(&s, e.Reason)++
			}
		}
	}
	return s
}

// observe adds d to h as the pool does: in the first bucket whose bound
// is at least d.
func observe(h *connpool.Histogram, d time.Duration) {
	i := 0
	for i < connpool.HistogramBuckets && d > connpool.HistogramBound(i) {
		i++
	}
	h.Buckets[i]++
	h.Sum += d
}

// closeCounter returns the Stats counter of a close reason.
func closeCounter(s *connpool.Stats, r connpool.CloseReason) *int64 {
	switch r {
	case connpool.CloseIdle:
		return &s.IdleClosed
	case connpool.CloseLifetime:
		return &s.LifetimeClosed
	case connpool.CloseUnhealthy:
		return &s.HealthFailures
	case connpool.CloseBroken:
		return &s.BrokenClosed
	case connpool.CloseMaxIdle:
		return &s.MaxIdleClosed
	case connpool.CloseReleased:
		return &s.ReleasedClosed
	case connpool.ClosePool:
		return &s.PoolClosed
	case connpool.CloseReset:
		return &s.ResetClosed
	case connpool.CloseDetached:
		return &s.DetachedClosed
	case connpool.CloseLeaked:
		return &s.LeakedClosed
	case connpool.CloseResized:
		return &s.ResizedClosed
	case connpool.CloseAddressRemoved:
		return &s.AddressRemovedClosed
	case connpool.CloseRebalanced:
		return &s.RebalancedClosed
	case connpool.CloseEjected:
		return &s.EjectedClosed
	}
	panic(fmt.Sprintf("no counter for %v", r))
}

// flakyDialer fails about one dial in ten, at once.
type flakyDialer struct{ calls atomic.Int64 }

var errFlaky = errors.New("flaky dialer: refused")

func (d *flakyDialer) dial(ctx context.Context, network, address string) (net.Conn, error) {
	if d.calls.Add(1)%10 == 0 {
		return nil, errFlaky
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, address)
}

// TestEventsRebuildStats drives a pool with random Gets (some through
// DialContext, some with contexts that end at random), I/O, marks,
// resets, detaches and a flaky dialer, while the server resets conns now
// and then, and checks that every Stats counter can be rebuilt from the
// events, and each event's own promises: one GetStarted and one GetDone
// per Get, one DialStarted, one DialDone and one ConnClosed per dial
// (CloseDialFailed for one that failed), conn ids increasing in dial
// order.
func TestEventsRebuildStats(t *testing.T) {
	srv := startServer(t)
	log := newEventLog()
	dialer := &flakyDialer{}
	p, err := connpool.New("tcp", srv.Addr(), connpool.WithHooks(log.hooks()),
		connpool.WithMaxConns(4), connpool.WithMaxIdle(3), connpool.WithMinIdle(1), connpool.WithMaxWaiters(6),
		connpool.WithDialer(dialer.dial), connpool.WithDialBackoff(time.Millisecond, 2*time.Millisecond),
		connpool.WithHealthCheckInterval(20*time.Millisecond), connpool.WithName("rebuild"),
		connpool.WithUseTimeMetrics(true))
	require.NoError(t, err)
	stopWatch := watchLedger(t, p)

	var wg sync.WaitGroup
	var gets atomic.Int64
	for w := range 12 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := range 150 {
				if w == 0 && i == 75 {
					// At least one Reset, however many Gets time out on a
					// loaded machine before reaching the random ones below.
					assert.NoError(t, p.Reset())
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rng.IntN(3000))*time.Microsecond)
				var c net.Conn
				var err error
				if rng.IntN(4) == 0 {
					c, err = p.DialContext(ctx, "tcp", srv.Addr())
				} else {
					c, err = p.Get(ctx)
				}
				cancel()
				gets.Add(1)
				if err != nil {
					continue
				}
				_, _ = roundTrip(c, fmt.Sprintf("w%d-%d", w, i))
				switch pc, _ := c.(*connpool.Conn); {
				case rng.IntN(40) == 0:
					_ = p.Reset()
				case pc != nil && rng.IntN(30) == 0:
					if nc, err := pc.Detach(); err == nil {
						_ = nc.Close()
						continue
					}
				case pc != nil && rng.IntN(15) == 0:
					pc.MarkUnusable()
				case rng.IntN(60) == 0:
					_ = srv.ResetConns()
				}
				_ = c.Close()
			}
		})
	}
	wg.Wait()
	stopWatch()
	require.NoError(t, p.Close())
	require.NoError(t, p.CheckInvariants())

	st := p.Stats()
	rebuilt := log.stats()
	rebuilt.Name, rebuilt.MaxConns, rebuilt.MinIdle, rebuilt.MaxIdle = st.Name, st.MaxConns, st.MinIdle, st.MaxIdle // settings, not counters
	st.OpenConns, st.InUse, st.Idle, st.Dialing, st.Waiting = 0, 0, 0, 0, 0
	assert.Equal(t, st, rebuilt, "Stats rebuilt from the events")
	assert.Positive(t, st.Timeouts+st.TooManyWaiters, "some Gets failed")
	assert.Positive(t, st.DialErrors, "some dials failed")
	assert.Positive(t, st.ResetClosed+st.DetachedClosed+st.BrokenClosed, "some conns were retired")

	log.mu.Lock()
	defer log.mu.Unlock()
	assert.Equal(t, gets.Load(), int64(log.getStarted), "one GetStarted per Get")
	assert.Equal(t, gets.Load(), int64(len(log.getDone)), "one GetDone per Get")
	assert.Equal(t, 1, log.ready)
	assert.Equal(t, 1, log.closed)
	assert.Positive(t, log.reset)
	assert.Equal(t, map[string]bool{"rebuild": true}, log.names, "every event names the pool")
	var last uint64
	for id := range uint64(len(log.dialStarted)) + 1 {
		if id == 0 {
			continue
		}
		assert.Equal(t, 1, log.dialStarted[id], "conn %d: one DialStarted", id)
		assert.Equal(t, 1, log.dialDoneN[id], "conn %d: one DialDone", id)
		if assert.Len(t, log.connClosed[id], 1, "conn %d: one ConnClosed", id) {
			failed := log.dialDone[id].Err != nil
			assert.Equal(t, failed, log.connClosed[id][0].Reason == connpool.CloseDialFailed,
				"conn %d: CloseDialFailed if and only if its dial failed", id)
		}
		last = id
	}
	assert.Len(t, log.connClosed, int(st.Dials+st.DialErrors), "one closed event per dial")
	for _, g := range log.getDone {
		if g.ConnID != 0 {
			assert.LessOrEqual(t, g.ConnID, last, "ids come from dials")
		}
	}
}

// TestHooksMayCallThePool: hooks run with the pool's locks released, so a
// hook that calls Stats, Get or Put does not deadlock.
func TestHooksMayCallThePool(t *testing.T) {
	srv := startServer(t)
	var p *connpool.Pool
	var nested atomic.Bool // a hook's own Get must not recurse
	var calls atomic.Int64
	useThePool := func() {
		calls.Add(1)
		_ = p.Stats()
		if nested.CompareAndSwap(false, true) {
			ctx, cancel := context.WithTimeout(context.Background(), waitFor)
			defer cancel()
			if c, err := p.Get(ctx); err == nil {
				_ = c.Close()
			}
			nested.Store(false)
		}
	}
	hooks := connpool.Hooks{
		DialStarted: func(connpool.DialStartedEvent) { useThePool() },
		DialDone:    func(connpool.DialDoneEvent) { useThePool() },
		GetDone:     func(connpool.GetDoneEvent) { useThePool() },
		Put:         func(connpool.PutEvent) { useThePool() },
		ConnClosed:  func(connpool.ConnClosedEvent) { useThePool() },
		PoolReset:   func(connpool.PoolEvent) { useThePool() },
	}
	var err error
	p, err = connpool.New("tcp", srv.Addr(), connpool.WithHooks(hooks), connpool.WithMaxConns(2))
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 20 {
			c, err := p.Get(context.Background())
			if err != nil {
				continue
			}
			if i%3 == 0 {
				c.MarkUnusable()
			}
			_ = c.Close()
			if i%7 == 0 {
				_ = p.Reset()
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(waitFor):
		t.Fatal("a hook that calls the pool deadlocked it")
	}
	require.NoError(t, p.Close())
	assert.Positive(t, calls.Load())
	require.NoError(t, p.CheckInvariants())
}

// TestPanickingHookIsRecovered: every hook panics; the pool keeps
// serving, logs the first panic only, and its books balance.
func TestPanickingHookIsRecovered(t *testing.T) {
	srv := startServer(t)
	boom := func() { panic("hook bug") }
	hooks := connpool.Hooks{
		PoolReady:       func(connpool.PoolEvent) { boom() },
		PoolReset:       func(connpool.PoolEvent) { boom() },
		PoolClosed:      func(connpool.PoolEvent) { boom() },
		DialStarted:     func(connpool.DialStartedEvent) { boom() },
		DialDone:        func(connpool.DialDoneEvent) { boom() },
		GetStarted:      func(connpool.GetStartedEvent) { boom() },
		GetDone:         func(connpool.GetDoneEvent) { boom() },
		Put:             func(connpool.PutEvent) { boom() },
		ConnClosed:      func(connpool.ConnClosedEvent) { boom() },
		HealthCheckDone: func(connpool.HealthCheckEvent) { boom() },
	}
	rec := &logRecorder{}
	p, err := connpool.New("tcp", srv.Addr(), connpool.WithHooks(hooks), connpool.WithLogger(slog.New(rec)),
		connpool.WithMaxConns(2), connpool.WithHealthCheckInterval(time.Millisecond))
	require.NoError(t, err)
	for i := range 10 {
		c := getConn(t, p)
		mustRoundTrip(t, c, "still served")
		if i%2 == 0 {
			c.MarkUnusable()
		}
		require.NoError(t, c.Close())
	}
	require.NoError(t, p.Reset())
	require.NoError(t, p.CheckInvariants())
	require.NoError(t, p.Close())
	checkBooks(t, p.Stats())
	assert.Equal(t, 1, rec.count(slog.LevelError, "connpool: a hook panicked"), "logged once")
}

// TestHooksChain: Chain calls both hooks in order, WithHooks given twice
// chains, and neither drops the other.
func TestHooksChain(t *testing.T) {
	srv := startServer(t)
	var order []string
	var mu sync.Mutex
	note := func(s string) func(connpool.GetDoneEvent) {
		return func(connpool.GetDoneEvent) { mu.Lock(); order = append(order, s); mu.Unlock() }
	}
	user := connpool.Hooks{GetDone: note("user")}
	lib := connpool.Hooks{GetDone: note("library"), Put: func(connpool.PutEvent) { mu.Lock(); order = append(order, "put"); mu.Unlock() }}
	p := newPool(t, srv.Addr(), connpool.WithHooks(user.Chain(lib)), connpool.WithHooks(connpool.Hooks{GetDone: note("second option")}))
	c := getConn(t, p)
	require.NoError(t, c.Close())
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"user", "library", "second option", "put"}, order)
}
