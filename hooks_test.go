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

// TestGetDoneSaysHowAGetWasServed covers each way a Get ends.
func TestGetDoneSaysHowAGetWasServed(t *testing.T) {
	srv := startServer(t)
	log := newEventLog()
	p := newPool(t, srv.Addr(), connpool.WithHooks(log.hooks()), connpool.WithMaxConns(1), connpool.WithMaxWaiters(1))
	last := func() connpool.GetDoneEvent {
		log.mu.Lock()
		defer log.mu.Unlock()
		return log.getDone[len(log.getDone)-1]
	}
	c := getConn(t, p)
	assert.Equal(t, connpool.ServedDial, last().Served)
	require.NoError(t, c.Close())
	c = getConn(t, p)
	assert.Equal(t, connpool.ServedIdle, last().Served)
	assert.False(t, last().Queued)

	got := make(chan *connpool.Conn)
	go func() {
		c, err := p.Get(context.Background())
		if err != nil {
			c = nil
		}
		got <- c
	}()
	require.Eventually(t, waitersAre(p, 1), waitFor, tick)
	_, err := p.Get(context.Background())
	require.ErrorIs(t, err, connpool.ErrTooManyWaiters)
	assert.Equal(t, connpool.GetTooManyWaiters, last().Failure)
	require.NoError(t, c.Close())
	c = <-got
	require.NotNil(t, c)
	assert.Equal(t, connpool.ServedHandoff, last().Served)
	assert.True(t, last().Queued)
	assert.Positive(t, last().Waited)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_, err = p.Get(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, connpool.GetTimeout, last().Failure)
	assert.Zero(t, last().ConnID)
	require.NoError(t, c.Close())
	require.NoError(t, p.Close())
	_, err = p.Get(context.Background())
	require.ErrorIs(t, err, connpool.ErrClosed)
	assert.Equal(t, connpool.GetPoolClosed, last().Failure)
}

func TestEventEnumsHaveNames(t *testing.T) {
	assert.Equal(t, "dial", connpool.ServedDial.String())
	assert.Equal(t, "handoff", connpool.ServedHandoff.String())
	assert.Equal(t, "too_many_waiters", connpool.GetTooManyWaiters.String())
	assert.Equal(t, "max_idle", connpool.CloseMaxIdle.String())
	assert.Equal(t, "kept", connpool.CloseReason(0).String())
	assert.Equal(t, "dial_failed", connpool.CloseDialFailed.String())
	assert.Equal(t, "CloseReason(200)", connpool.CloseReason(200).String())
	assert.NotContains(t, connpool.CloseReasons(), connpool.CloseDialFailed, "no Stats counter counts it")
}

// TestPutEventComesBeforeTheConnIsReused pins the check-in order: a
// conn's Put event is emitted before the conn can be handed to another
// Get. It was emitted after the conn was back on the idle stack, so a Get
// on another goroutine could take the conn and emit its GetDone first: a
// consumer saw conn 1 checked out twice in a row, then checked in. Here
// that other Get runs inside the Put hook, ahead of the recorder, at the
// one instant the bug left open: it must find no idle conn.
func TestPutEventComesBeforeTheConnIsReused(t *testing.T) {
	var s eventStream
	var p *connpool.Pool
	var once atomic.Bool
	var reused atomic.Bool
	other := connpool.Hooks{Put: func(connpool.PutEvent) {
		if !once.CompareAndSwap(false, true) {
			return
		}
		if c, err := p.TryGet(); err == nil {
			reused.Store(true)
			_ = c.Close()
		}
	}}
	p, _ = cmapPool(t, &s, connpool.WithHooks(other), connpool.WithMaxConns(1))
	require.NoError(t, getConn(t, p).Close())
	assert.False(t, reused.Load(), "the conn was available before its Put event")
	// Per conn: checked out, checked in, alternately.
	var out bool
	for _, e := range s.only(evGetDone, evPut) {
		if e.conn == 0 {
			continue // the TryGet that found no idle conn
		}
		require.NotEqual(t, out, e.kind == evGetDone, "conn %d: %s twice in a row:\n%s", e.conn, e.kind, listEvents(s.all()))
		out = e.kind == evGetDone
	}
}

// TestResetEventComesBeforeTheClosesItCauses pins CMAP's order for a
// clear: the pool is cleared, then its stale conns close. Reset closed
// its idle conns and emitted its PoolReset event after.
func TestResetEventComesBeforeTheClosesItCauses(t *testing.T) {
	var s eventStream
	p, _ := cmapPool(t, &s)
	c1, c2 := getConn(t, p), getConn(t, p)
	require.NoError(t, c1.Close())
	require.NoError(t, p.Reset())
	require.NoError(t, c2.Close())
	requireEvents(t, s.only(evPoolReset, evConnClosed), true,
		event{kind: evPoolReset},
		event{kind: evConnClosed, conn: 1, reason: connpool.CloseReset},
		event{kind: evConnClosed, conn: 2, reason: connpool.CloseReset})
}

// TestFailedDialEmitsConnClosed pins the close of a dial that fails
// (CMAP: a conn that fails to establish is closed, reason "error"): its
// ConnClosed, of reason CloseDialFailed, follows its DialDone and comes
// before the failed Get's GetDone. A failed dial emitted no ConnClosed,
// so a consumer counting created minus closed conns drifted up with every
// failure. No Stats close counter counts it.
func TestFailedDialEmitsConnClosed(t *testing.T) {
	var s eventStream
	refuse := func(context.Context, string, string) (net.Conn, error) { return nil, errors.New("refused") }
	p, _ := cmapPool(t, &s, connpool.WithDialer(refuse))
	_, err := p.Get(context.Background())
	require.Error(t, err)
	requireEvents(t, s.except(evPoolReady), true,
		event{kind: evGetStarted}, event{kind: evDialStarted, conn: 1}, event{kind: evDialDone, conn: 1, failed: true},
		event{kind: evConnClosed, conn: 1, reason: connpool.CloseDialFailed},
		event{kind: evGetDone, failure: connpool.GetDialError})
	st := p.Stats()
	assert.Equal(t, int64(1), st.DialErrors)
	checkBooks(t, st)
}

// TestGetDoneCarriesItsDuration pins CMAP's checkout duration: every
// GetDone, however the Get was served or failed, carries the time from
// its GetStarted event, a dial included. A Get that did not queue
// reported none. The GetStarted hook here takes 2ms, which every
// duration must include.
func TestGetDoneCarriesItsDuration(t *testing.T) {
	const slow = 2 * time.Millisecond
	var s eventStream
	busy := connpool.Hooks{GetStarted: func(connpool.GetStartedEvent) {
		for start := time.Now(); time.Since(start) < slow; {
		}
	}}
	p, _ := cmapPool(t, &s, connpool.WithHooks(busy), connpool.WithMaxConns(1))
	require.NoError(t, getConn(t, p).Close()) // dialed
	c := getConn(t, p)                        // idle
	_, err := p.TryGet()                      // failed: no idle conn
	require.ErrorIs(t, err, connpool.ErrNoIdleConn)
	require.NoError(t, c.Close())
	got := s.only(evGetDone, evDialDone)
	require.Len(t, got, 4)
	assert.GreaterOrEqual(t, got[1].dur, got[0].dur+slow, "a dialed Get: its dial and more")
	assert.GreaterOrEqual(t, got[2].dur, slow, "an idle Get")
	assert.GreaterOrEqual(t, got[3].dur, slow, "a failed Get")
}

// TestGetStartedAndDonePair pins the GetID: under concurrency, each
// GetDone names the GetStarted of its own Get. Without it a consumer
// timing Gets could pair only by goroutine, which hooks do not see.
func TestGetStartedAndDonePair(t *testing.T) {
	var s eventStream
	p, _ := cmapPool(t, &s, connpool.WithMaxConns(2))
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 25 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration((w+i)%4)*time.Millisecond)
				c, err := p.Get(ctx)
				cancel()
				if err == nil {
					_ = c.Close()
				}
			}
		})
	}
	wg.Wait()
	started := map[uint64]bool{}
	done := map[uint64]bool{}
	for _, e := range s.only(evGetStarted, evGetDone) {
		require.NotZero(t, e.get)
		if e.kind == evGetStarted {
			assert.False(t, started[e.get], "GetID %d started twice", e.get)
			started[e.get] = true
			continue
		}
		assert.True(t, started[e.get], "GetID %d done before it started", e.get)
		assert.False(t, done[e.get], "GetID %d done twice", e.get)
		done[e.get] = true
	}
	assert.Len(t, done, 8*25)
	assert.Equal(t, started, done)
}

// TestEventsPerConnInCausalOrder is a consumer that tracks each conn from
// the events, as CMAP's monitoring does, while Gets, Puts, Resets,
// broken and detached conns and a flaky dialer race: for every conn it
// must see DialStarted, DialDone, then (GetDone, Put)* and ConnClosed,
// with no Put or ConnClosed of reason CloseReset before a PoolReset.
func TestEventsPerConnInCausalOrder(t *testing.T) {
	var s eventStream
	dialer := &flakyDialer{}
	p, _ := cmapPool(t, &s, connpool.WithMaxConns(3), connpool.WithMaxIdle(2), connpool.WithMinIdle(1),
		connpool.WithDialer(dialer.dial), connpool.WithDialBackoff(time.Millisecond, 2*time.Millisecond))
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 21))
			for range 100 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rng.IntN(2000))*time.Microsecond)
				c, err := p.Get(ctx)
				cancel()
				if err != nil {
					continue
				}
				switch rng.IntN(20) {
				case 0:
					_ = p.Reset()
				case 1:
					c.MarkUnusable()
				case 2:
					if nc, err := c.Detach(); err == nil {
						_ = nc.Close()
						continue
					}
				}
				_ = c.Close()
			}
		})
	}
	wg.Wait()
	require.NoError(t, p.Close())
	checkCausalOrder(t, s.all())
}

// checkCausalOrder checks each conn's events against its life cycle.
func checkCausalOrder(t *testing.T, events []event) {
	t.Helper()
	const (
		dialing = iota + 1
		failed  // its dial failed
		ready
		out
		closed
	)
	state := map[uint64]int{}
	resets := 0
	for i, e := range events {
		at := func(format string, args ...any) {
			t.Helper()
			require.Failf(t, "events out of order", "event %d, %v: %s", i, e, fmt.Sprintf(format, args...))
		}
		st := state[e.conn]
		switch e.kind {
		case evPoolReset:
			resets++
		case evDialStarted:
			if st != 0 {
				at("dialed twice")
			}
			state[e.conn] = dialing
		case evDialDone:
			if st != dialing {
				at("done but not dialing")
			}
			state[e.conn] = ready
			if e.failed {
				state[e.conn] = failed
			}
		case evGetDone:
			if e.conn == 0 {
				continue
			}
			if st != ready {
				at("checked out while in state %d", st)
			}
			state[e.conn] = out
		case evPut:
			if st != out {
				at("checked in while in state %d", st)
			}
			state[e.conn] = ready
		case evConnClosed:
			switch {
			case (e.reason == connpool.CloseDialFailed) != (st == failed):
				at("closed for %v in state %d", e.reason, st)
			case e.reason == connpool.CloseReset && resets == 0:
				at("closed by a Reset before any PoolReset")
			case st != failed && st != ready && st != out:
				at("closed in state %d", st)
			}
			state[e.conn] = closed
		}
	}
	for id, st := range state {
		assert.Equal(t, closed, st, "conn %d is closed at the end", id)
	}
}

// TestResetEventComesBeforeTheClosesOfOthers pins the same order for a
// conn the Reset retired that someone else closes while the Reset has not
// yet emitted its event: a Put on another goroutine, a dial ending, a
// waiter refusing a stale conn. A hook chained ahead of the recorder's
// PoolReset hook returns a borrowed conn in that window; its ConnClosed
// must still reach the recorder after the PoolReset.
func TestResetEventComesBeforeTheClosesOfOthers(t *testing.T) {
	var s eventStream
	var borrowed *connpool.Conn
	ahead := connpool.Hooks{PoolReset: func(connpool.PoolEvent) { _ = borrowed.Close() }}
	srv := startServer(t)
	p := newPool(t, srv.Addr(), connpool.WithHooks(ahead), connpool.WithHooks(s.hooks()))
	borrowed = getConn(t, p)
	require.NoError(t, p.Reset())
	requireEvents(t, s.only(evPoolReset, evPut, evConnClosed), true,
		event{kind: evPut, conn: 1}, event{kind: evPoolReset},
		event{kind: evConnClosed, conn: 1, reason: connpool.CloseReset})
}
