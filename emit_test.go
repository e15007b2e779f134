package connpool_test

// The events of events.go as emit.go delivers them: what each carries, and
// the order they come in.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
)

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
	resetsAtDial := map[uint64]int{} // the PoolResets seen before each conn's DialStarted
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
			resetsAtDial[e.conn] = resets
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
			case e.reason == connpool.CloseReset && resets == resetsAtDial[e.conn]:
				at("closed by a Reset whose PoolReset came before its DialStarted, or none")
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

// TestConnDialedAfterResetEventIsNotRetiredByIt: a dial that a Get
// started before a Reset, but whose DialStarted (CMAP's
// ConnectionCreated) comes after the Reset's PoolReset, makes a conn of
// the new generation: the Get is served with it, and the Reset closes
// nothing. Regression: the conn was closed as CloseReset, so a consumer
// saw a conn created after the clear retired by it. The dial waits for
// the first resolve, which the test holds until the Reset is done.
func TestConnDialedAfterResetEventIsNotRetiredByIt(t *testing.T) {
	srv := startServer(t)
	_, port, err := net.SplitHostPort(srv.Addr())
	require.NoError(t, err)
	release := make(chan struct{})
	resolver := connpool.ResolverFunc(func(ctx context.Context, _, _ string) ([]netip.Addr, error) {
		select {
		case <-release:
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	var s eventStream
	p := newPool(t, net.JoinHostPort("svc.test", port), connpool.WithResolver(resolver), connpool.WithHooks(s.hooks()))
	got := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		c, err := p.Get(ctx)
		if err == nil {
			err = c.Close()
		}
		got <- err
	}()
	require.Eventually(t, func() bool { return p.Stats().Dialing == 1 }, waitFor, tick, "the Get's dial has started")
	require.NoError(t, p.Reset())
	close(release)
	require.NoError(t, <-got)
	require.NoError(t, p.Close())
	assert.Zero(t, p.Stats().ResetClosed, "the Reset retired no conn")
	requireEvents(t, s.only(evPoolReset, evDialStarted, evConnClosed), true,
		event{kind: evPoolReset}, event{kind: evDialStarted, conn: 1},
		event{kind: evConnClosed, conn: 1, reason: connpool.ClosePool})
	checkCausalOrder(t, s.all())
}
