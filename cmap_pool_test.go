package connpool_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
)

// pool-clear-min-size, adapted: after a Reset, warming resumes at once,
// with no ready step, and the retired conn closes after the reset event.
func TestCMAPPoolClearMinSize(t *testing.T) {
	var s eventStream
	p, _ := cmapPool(t, &s, connpool.WithMinIdle(1))
	s.waitCount(t, evDialDone, 1)
	require.NoError(t, p.Reset())
	s.waitCount(t, evDialDone, 2)
	requireEvents(t, s.only(evPoolReady, evDialStarted, evDialDone, evPoolReset), false,
		event{kind: evPoolReady}, event{kind: evDialStarted, conn: 1}, event{kind: evDialDone, conn: 1})
	requireEvents(t, s.only(evPoolReset, evConnClosed), false,
		event{kind: evPoolReset}, event{kind: evConnClosed, conn: 1, reason: connpool.CloseReset})
	requireEvents(t, s.only(evDialStarted, evDialDone), false,
		event{kind: evDialStarted, conn: 1}, event{kind: evDialDone, conn: 1},
		event{kind: evDialStarted, conn: 2}, event{kind: evDialDone, conn: 2})
}

// TestCMAPDiffersResetKeepsWaiters pins where connpool parts from
// pool-clear-clears-waitqueue on purpose: a Reset does not fail the Gets
// that wait; the retired conn, returned, closes, and they are served by
// new dials in the order they queued.
func TestCMAPDiffersResetKeepsWaiters(t *testing.T) {
	var s eventStream
	p, _ := cmapPool(t, &s, connpool.WithMaxConns(1))
	c0 := getConn(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	var threads []<-chan result
	for i := range 3 {
		threads = append(threads, goGet(ctx, p))
		require.Eventually(t, waitersAre(p, i+1), waitFor, tick)
	}
	require.NoError(t, p.Reset())
	require.NoError(t, c0.Close())
	for _, ch := range threads {
		r := await(t, ch)
		require.NoError(t, r.err, "a Reset does not fail the Gets that wait")
		require.NoError(t, r.c.Close())
	}
	// Conn 1's slot is freed before its ConnClosed event, so the first
	// waiter's GetDone of conn 2 may come before or after that event.
	var one []event
	for _, e := range s.only(evPoolReset, evPut, evConnClosed, evGetDone) {
		if e.kind == evPoolReset || e.conn == 1 {
			one = append(one, e)
		}
	}
	requireEvents(t, one, true,
		event{kind: evGetDone, conn: 1}, event{kind: evPoolReset}, event{kind: evPut, conn: 1},
		event{kind: evConnClosed, conn: 1, reason: connpool.CloseReset})
	done := s.only(evGetDone)
	require.Len(t, done, 4)
	for _, e := range done[1:] {
		assert.Equal(t, uint64(2), e.conn, "the waiters are served by a new dial, then in turn")
	}
}

func TestCMAPPoolClearScheduleRunInterruptInUseConnectionsFalse(t *testing.T) {
	var s eventStream
	p, _ := cmapPool(t, &s)
	c1 := getConn(t, p)
	require.NoError(t, getConn(t, p).Close())
	require.NoError(t, p.Reset())
	s.waitCount(t, evPoolReset, 1)
	s.waitCount(t, evConnClosed, 1)
	require.NoError(t, p.Close())
	requireEvents(t, s.except(evDialStarted, evPoolReady, evDialDone, evGetStarted), true,
		event{kind: evGetDone, conn: 1}, event{kind: evGetDone, conn: 2}, event{kind: evPut, conn: 2},
		event{kind: evPoolReset}, event{kind: evConnClosed, conn: 2, reason: connpool.CloseReset},
		event{kind: evPoolClosed})
	require.NoError(t, c1.Close())
}

func TestCMAPPoolCloseDestroyConns(t *testing.T) {
	var s eventStream
	p, _ := cmapPool(t, &s)
	c1, c2, c3 := getConn(t, p), getConn(t, p), getConn(t, p)
	require.NoError(t, c2.Close())
	require.NoError(t, p.Close())
	requireEvents(t, s.only(evPut, evConnClosed, evPoolClosed), true,
		event{kind: evPut, conn: 2}, event{kind: evConnClosed, conn: 2, reason: connpool.ClosePool},
		event{kind: evPoolClosed})
	require.NoError(t, c1.Close())
	require.NoError(t, c3.Close())
}

func TestCMAPPoolClose(t *testing.T) {
	var s eventStream
	p, addr := cmapPool(t, &s)
	require.NoError(t, p.Close())
	got := s.all()
	requireEvents(t, got, true, event{kind: evPoolReady}, event{kind: evPoolClosed})
	assert.Equal(t, addr, got[0].settings.Address)
}

func TestCMAPPoolCreateMaxSize(t *testing.T) {
	var s eventStream
	p, _ := cmapPool(t, &s, connpool.WithMaxConns(3))
	c1 := getConn(t, p)
	c := getConn(t, p)
	defer c.Close()
	c2 := getConn(t, p)
	require.NoError(t, c2.Close())
	c = getConn(t, p)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	thread := goGet(ctx, p)
	s.waitCount(t, evGetStarted, 5)
	require.NoError(t, c1.Close())
	r := await(t, thread)
	require.NoError(t, r.err)
	defer r.c.Close()
	got := s.except(evDialDone)
	requireEvents(t, got, true,
		event{kind: evPoolReady},
		event{kind: evGetStarted}, event{kind: evDialStarted, conn: anyID}, event{kind: evGetDone, conn: anyID},
		event{kind: evGetStarted}, event{kind: evDialStarted, conn: anyID}, event{kind: evGetDone, conn: anyID},
		event{kind: evGetStarted}, event{kind: evDialStarted, conn: anyID}, event{kind: evGetDone, conn: anyID},
		event{kind: evPut, conn: anyID},
		event{kind: evGetStarted}, event{kind: evGetDone, conn: anyID},
		event{kind: evGetStarted}, event{kind: evPut, conn: anyID}, event{kind: evGetDone, conn: anyID})
	assert.Equal(t, 3, got[0].settings.MaxConns)
	assert.Equal(t, got[10].conn, got[12].conn, "the conn checked in is checked out next")
	assert.Equal(t, got[14].conn, got[15].conn, "the waiter is served the conn checked in")
}

// pool-create-min-size-error, adapted: a warming dial that fails is
// closed with CloseDialFailed (CMAP's "error"), as a CMAP pool closes a
// conn that fails to establish; connpool then backs off instead of
// clearing the pool, so no PoolReset follows.
func TestCMAPPoolCreateMinSizeError(t *testing.T) {
	var s eventStream
	refuse := func(context.Context, string, string) (net.Conn, error) { return nil, errors.New("refused") }
	p, _ := cmapPool(t, &s, connpool.WithMinIdle(1), connpool.WithDialer(refuse),
		connpool.WithDialBackoff(time.Minute, time.Minute))
	s.waitCount(t, evConnClosed, 1)
	requireEvents(t, s.all(), true,
		event{kind: evPoolReady}, event{kind: evDialStarted, conn: 1}, event{kind: evDialDone, conn: 1, failed: true},
		event{kind: evConnClosed, conn: 1, reason: connpool.CloseDialFailed})
	require.NoError(t, p.Close())
	assert.Zero(t, s.count(evPoolReset))
}

// pool-create-min-size, adapted: New warms at once, there being no ready
// step to wait for.
func TestCMAPPoolCreateMinSize(t *testing.T) {
	var s eventStream
	p, _ := cmapPool(t, &s, connpool.WithMinIdle(3))
	s.waitCount(t, evDialStarted, 3)
	s.waitCount(t, evDialDone, 3)
	c := getConn(t, p)
	defer c.Close()
	// A fourth dial may start once the Get takes a warmed conn: MinIdle
	// wants it replaced. The spec's test has no such dial before its
	// checkout; leave it out.
	var got []event
	for _, e := range s.only(evPoolReady, evDialStarted, evGetDone) {
		if e.kind != evDialStarted || e.conn <= 3 {
			got = append(got, e)
		}
	}
	requireEvents(t, got, false,
		event{kind: evPoolReady},
		event{kind: evDialStarted, conn: anyID}, event{kind: evDialStarted, conn: anyID}, event{kind: evDialStarted, conn: anyID},
		event{kind: evGetDone, conn: anyID})
	assert.Equal(t, 3, got[0].settings.MinIdle)
}

func TestCMAPPoolCreateWithOptions(t *testing.T) {
	var s eventStream
	_, addr := cmapPool(t, &s, connpool.WithMaxConns(50), connpool.WithMinIdle(5), connpool.WithIdleTimeout(100*time.Millisecond))
	got := s.only(evPoolReady)
	require.Len(t, got, 1)
	set := got[0].settings
	assert.Equal(t, "tcp", set.Network)
	assert.Equal(t, addr, set.Address)
	assert.Equal(t, 50, set.MaxConns)
	assert.Equal(t, 5, set.MinIdle)
	assert.Equal(t, 100*time.Millisecond, set.IdleTimeout)
	assert.Equal(t, 50, set.MaxIdle, "defaults are filled in")
	assert.Equal(t, 30*time.Minute, set.MaxLifetime)
}

func TestCMAPPoolCreate(t *testing.T) {
	var s eventStream
	_, addr := cmapPool(t, &s)
	got := s.all()
	requireEvents(t, got, true, event{kind: evPoolReady})
	assert.Equal(t, addr, got[0].settings.Address)
	assert.Positive(t, got[0].settings.MaxConns)
}

func TestCMAPWaitQueueFairness(t *testing.T) {
	var s eventStream
	p, _ := cmapPool(t, &s, connpool.WithMaxConns(1))
	held := getConn(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	var threads []<-chan result
	for i := range 4 {
		threads = append(threads, goGet(ctx, p))
		require.Eventually(t, waitersAre(p, i+1), waitFor, tick, "Get %d queues", i+1)
	}
	for i, ch := range threads {
		require.NoError(t, held.Close())
		r := await(t, ch)
		require.NoError(t, r.err, "thread %d", i+1)
		held = r.c
	}
	require.NoError(t, held.Close())
	got := s.except(evDialStarted, evDialDone, evConnClosed, evPoolReady)
	requireEvents(t, got, false,
		event{kind: evGetStarted}, event{kind: evGetDone, conn: 1},
		event{kind: evGetStarted}, event{kind: evGetStarted}, event{kind: evGetStarted}, event{kind: evGetStarted},
		event{kind: evPut, conn: 1}, event{kind: evGetDone, conn: 1},
		event{kind: evPut, conn: 1}, event{kind: evGetDone, conn: 1},
		event{kind: evPut, conn: 1}, event{kind: evGetDone, conn: 1},
		event{kind: evPut, conn: 1}, event{kind: evGetDone, conn: 1})
	// First come, first served: the Gets end in the order they started.
	for i, j := range []int{2, 3, 4, 5} {
		assert.Equal(t, got[j].get, got[7+2*i].get, "waiter %d is served %d-th", i+1, i+1)
	}
}

func TestCMAPWaitQueueTimeout(t *testing.T) {
	var s eventStream
	p, _ := cmapPool(t, &s, connpool.WithMaxConns(1))
	c0 := getConn(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	thread := goGet(ctx, p)
	s.waitCount(t, evGetDone, 2)
	require.NoError(t, c0.Close())
	r := await(t, thread)
	require.ErrorIs(t, r.err, context.DeadlineExceeded)
	requireEvents(t, s.except(evDialStarted, evDialDone, evConnClosed, evPoolReady), true,
		event{kind: evGetStarted}, event{kind: evGetDone, conn: anyID, dur: anyDur},
		event{kind: evGetStarted}, event{kind: evGetDone, failure: connpool.GetTimeout, dur: anyDur},
		event{kind: evPut, conn: anyID})
}
