package connpool_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
)

func TestCMAPConnectionMustHaveID(t *testing.T) {
	var s eventStream
	p, _ := cmapPool(t, &s)
	c1, c2 := getConn(t, p), getConn(t, p)
	defer c1.Close()
	defer c2.Close()
	got := s.except(evPoolReady, evPoolClosed, evDialDone)
	requireEvents(t, got, true,
		event{kind: evGetStarted}, event{kind: evDialStarted, conn: anyID}, event{kind: evGetDone, conn: anyID},
		event{kind: evGetStarted}, event{kind: evDialStarted, conn: anyID}, event{kind: evGetDone, conn: anyID})
	assert.Equal(t, got[1].conn, got[2].conn, "each Get is served the conn dialed for it")
	assert.Equal(t, got[4].conn, got[5].conn)
}

func TestCMAPConnectionMustOrderIDs(t *testing.T) {
	var s eventStream
	p, _ := cmapPool(t, &s)
	c1, c2 := getConn(t, p), getConn(t, p)
	defer c1.Close()
	defer c2.Close()
	requireEvents(t, s.except(evPoolReady, evPoolClosed, evDialDone), true,
		event{kind: evGetStarted}, event{kind: evDialStarted, conn: 1}, event{kind: evGetDone, conn: 1},
		event{kind: evGetStarted}, event{kind: evDialStarted, conn: 2}, event{kind: evGetDone, conn: 2})
}

func TestCMAPPoolCheckinDestroyClosed(t *testing.T) {
	var s eventStream
	p, _ := cmapPool(t, &s)
	c := getConn(t, p)
	require.NoError(t, p.Close())
	require.NoError(t, c.Close())
	requireEvents(t, s.except(evPoolReady, evDialStarted, evDialDone, evGetStarted), true,
		event{kind: evGetDone, conn: 1}, event{kind: evPoolClosed},
		event{kind: evPut, conn: 1}, event{kind: evConnClosed, conn: 1, reason: connpool.ClosePool})
}

func TestCMAPPoolCheckinDestroyStale(t *testing.T) {
	var s eventStream
	p, _ := cmapPool(t, &s)
	c := getConn(t, p)
	require.NoError(t, p.Reset())
	require.NoError(t, c.Close())
	requireEvents(t, s.except(evPoolReady, evDialStarted, evDialDone, evGetStarted), true,
		event{kind: evGetDone, conn: 1}, event{kind: evPoolReset},
		event{kind: evPut, conn: 1}, event{kind: evConnClosed, conn: 1, reason: connpool.CloseReset})
}

func TestCMAPPoolCheckinMakeAvailable(t *testing.T) {
	var s eventStream
	p, _ := cmapPool(t, &s)
	require.NoError(t, getConn(t, p).Close())
	c := getConn(t, p)
	defer c.Close()
	got := s.except(evPoolReady, evDialStarted, evDialDone, evGetStarted)
	requireEvents(t, got, true,
		event{kind: evGetDone, conn: 1, dur: anyDur}, event{kind: evPut, conn: 1}, event{kind: evGetDone, conn: 1})
	assert.GreaterOrEqual(t, got[2].dur, time.Duration(0), "an idle checkout has a duration too")
}

func TestCMAPPoolCheckin(t *testing.T) {
	var s eventStream
	p, _ := cmapPool(t, &s)
	require.NoError(t, getConn(t, p).Close())
	requireEvents(t, s.only(evPut), true, event{kind: evPut, conn: anyID})
}

func TestCMAPPoolCheckoutConnection(t *testing.T) {
	var s eventStream
	p, _ := cmapPool(t, &s)
	c := getConn(t, p)
	defer c.Close()
	got := s.except(evPoolReady)
	requireEvents(t, got, true,
		event{kind: evGetStarted}, event{kind: evDialStarted, conn: 1},
		event{kind: evDialDone, conn: 1, dur: anyDur}, event{kind: evGetDone, conn: 1, dur: anyDur})
	assert.GreaterOrEqual(t, got[3].dur, got[2].dur, "the checkout's duration includes its dial")
	assert.Equal(t, got[0].get, got[3].get, "started and done share the Get's id")
}

func TestCMAPPoolCheckoutCustomMaxConnectingIsEnforced(t *testing.T) {
	var s eventStream
	g := &heldDialer{}
	p, _ := cmapPool(t, &s, connpool.WithMaxConns(2), connpool.WithMaxConnecting(1), connpool.WithDialer(g.dial))
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	first := goGet(ctx, p)
	g.waitArrived(t, 1)
	second := goGet(ctx, p)
	require.Eventually(t, waitersAre(p, 2), waitFor, tick, "the second Get queues at the dial limit")
	g.open(0)
	g.open(1)
	for _, ch := range []<-chan result{first, second} {
		r := await(t, ch)
		require.NoError(t, r.err)
		defer r.c.Close()
	}
	requireEvents(t, s.only(evDialStarted, evDialDone), true,
		event{kind: evDialStarted, conn: 1}, event{kind: evDialDone, conn: 1},
		event{kind: evDialStarted, conn: 2}, event{kind: evDialDone, conn: 2})
}

func TestCMAPPoolCheckoutErrorClosed(t *testing.T) {
	var s eventStream
	p, addr := cmapPool(t, &s)
	require.NoError(t, getConn(t, p).Close())
	require.NoError(t, p.Close())
	_, err := p.Get(context.Background())
	require.ErrorIs(t, err, connpool.ErrClosed)
	got := s.except(evDialStarted, evDialDone, evConnClosed)
	requireEvents(t, got, true,
		event{kind: evPoolReady},
		event{kind: evGetStarted}, event{kind: evGetDone, conn: anyID, dur: anyDur}, event{kind: evPut, conn: anyID},
		event{kind: evPoolClosed},
		event{kind: evGetStarted}, event{kind: evGetDone, failure: connpool.GetPoolClosed})
	assert.Equal(t, addr, got[0].settings.Address, "the ready event carries the pool's options")
	assert.GreaterOrEqual(t, got[6].dur, time.Duration(0))
}

func TestCMAPPoolCheckoutMaxConnectingIsEnforced(t *testing.T) {
	var s eventStream
	g := &heldDialer{}
	p, _ := cmapPool(t, &s, connpool.WithMaxConns(10), connpool.WithMaxConnecting(2), connpool.WithDialer(g.dial))
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	threads := []<-chan result{goGet(ctx, p)}
	g.waitArrived(t, 1)
	threads = append(threads, goGet(ctx, p), goGet(ctx, p))
	require.Eventually(t, waitersAre(p, 3), waitFor, tick)
	g.waitArrived(t, 2) // the third Get waits at the dial limit
	g.open(0)
	g.waitArrived(t, 3) // conn 1's dial ended: the third Get's dial starts
	g.open(1)
	g.open(2)
	for _, ch := range threads {
		r := await(t, ch)
		require.NoError(t, r.err)
		defer r.c.Close()
	}
	requireEvents(t, s.only(evDialStarted, evDialDone), true,
		event{kind: evDialStarted, conn: 1}, event{kind: evDialStarted, conn: 2}, event{kind: evDialDone, conn: 1},
		event{kind: evDialStarted, conn: 3}, event{kind: evDialDone}, event{kind: evDialDone})
}

func TestCMAPPoolCheckoutMaxConnectingTimeout(t *testing.T) {
	var s eventStream
	g := &heldDialer{}
	p, _ := cmapPool(t, &s, connpool.WithMaxConns(10), connpool.WithMaxConnecting(2), connpool.WithDialer(g.dial))
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	first, second := goGet(ctx, p), goGet(ctx, p)
	g.waitArrived(t, 2)
	short, cancelShort := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancelShort()
	_, err := p.Get(short)
	require.ErrorIs(t, err, context.DeadlineExceeded, "the Get waiting at the dial limit times out")
	requireEvents(t, s.only(evGetStarted, evGetDone), true,
		event{kind: evGetStarted}, event{kind: evGetStarted}, event{kind: evGetStarted},
		event{kind: evGetDone, failure: connpool.GetTimeout, dur: anyDur})
	g.open(0)
	g.open(1)
	for _, ch := range []<-chan result{first, second} {
		r := await(t, ch)
		require.NoError(t, r.err)
		defer r.c.Close()
	}
}

func TestCMAPPoolCheckoutMinPoolSizeConnectionMaxConnecting(t *testing.T) {
	var s eventStream
	g := &heldDialer{}
	p, _ := cmapPool(t, &s, connpool.WithMinIdle(2), connpool.WithMaxConns(3), connpool.WithMaxConnecting(2),
		connpool.WithDialer(g.dial))
	g.waitArrived(t, 2) // the two warming dials, held
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	first := goGet(ctx, p)
	require.Eventually(t, waitersAre(p, 1), waitFor, tick)
	second := goGet(ctx, p)
	require.Eventually(t, waitersAre(p, 2), waitFor, tick)
	g.open(0)
	g.open(1)
	ids := map[uint64]bool{}
	for _, ch := range []<-chan result{first, second} {
		r := await(t, ch)
		require.NoError(t, r.err)
		defer r.c.Close()
	}
	for _, e := range s.only(evGetDone) {
		ids[e.conn] = true
	}
	assert.Equal(t, map[uint64]bool{1: true, 2: true}, ids, "the Gets are served the warmed conns")
	// A third dial, held, may start once the warmed conns are lent: MinIdle
	// wants them replaced. The spec's test leaves it out of its events.
	var got []event
	for _, e := range s.only(evDialStarted, evGetDone) {
		if e.kind == evGetDone || e.conn <= 2 {
			got = append(got, e)
		}
	}
	requireEvents(t, got, true,
		event{kind: evDialStarted}, event{kind: evDialStarted}, event{kind: evGetDone}, event{kind: evGetDone})
}

func TestCMAPPoolCheckoutMultiple(t *testing.T) {
	var s eventStream
	p, _ := cmapPool(t, &s)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	threads := []<-chan result{goGet(ctx, p), goGet(ctx, p), goGet(ctx, p)}
	for _, ch := range threads {
		r := await(t, ch)
		require.NoError(t, r.err)
		defer r.c.Close()
	}
	got := s.only(evGetDone)
	requireEvents(t, got, true,
		event{kind: evGetDone, conn: anyID}, event{kind: evGetDone, conn: anyID}, event{kind: evGetDone, conn: anyID})
	assert.ElementsMatch(t, []uint64{1, 2, 3}, []uint64{got[0].conn, got[1].conn, got[2].conn})
}

// pool-checkout-no-idle, adapted: connpool's maintainer closes a conn
// idle past IdleTimeout, where a CMAP pool may find it at checkout; the
// test waits for that close, where the spec sleeps, and checks that the
// next Get is served a new conn after it.
func TestCMAPPoolCheckoutNoIdle(t *testing.T) {
	var s eventStream
	p, _ := cmapPool(t, &s, connpool.WithIdleTimeout(10*time.Millisecond))
	require.NoError(t, getConn(t, p).Close())
	s.waitCount(t, evConnClosed, 1)
	c := getConn(t, p)
	defer c.Close()
	requireEvents(t, s.except(evDialStarted, evDialDone, evGetStarted), true,
		event{kind: evPoolReady},
		event{kind: evGetDone, conn: 1}, event{kind: evPut, conn: 1},
		event{kind: evConnClosed, conn: 1, reason: connpool.CloseIdle},
		event{kind: evGetDone, conn: 2})
}

// pool-checkout-no-stale, without its ready step: a Reset does not
// pause the pool.
func TestCMAPPoolCheckoutNoStale(t *testing.T) {
	var s eventStream
	p, _ := cmapPool(t, &s)
	require.NoError(t, getConn(t, p).Close())
	require.NoError(t, p.Reset())
	c := getConn(t, p)
	defer c.Close()
	requireEvents(t, s.except(evDialStarted, evDialDone, evGetStarted), true,
		event{kind: evPoolReady},
		event{kind: evGetDone, conn: 1}, event{kind: evPut, conn: 1}, event{kind: evPoolReset},
		event{kind: evConnClosed, conn: 1, reason: connpool.CloseReset},
		event{kind: evGetDone, conn: 2})
}

func TestCMAPPoolCheckoutReturnedConnectionMaxConnecting(t *testing.T) {
	var s eventStream
	g := &heldDialer{}
	p, _ := cmapPool(t, &s, connpool.WithMaxConns(10), connpool.WithMaxConnecting(2), connpool.WithDialer(g.dial))
	g.open(0)
	c0 := getConn(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	var threads []<-chan result
	for i := range 3 {
		threads = append(threads, goGet(ctx, p))
		require.Eventually(t, waitersAre(p, i+1), waitFor, tick, "Get %d queues", i+1)
	}
	g.waitArrived(t, 3) // two dials held; the third Get waits at the dial limit
	require.NoError(t, c0.Close())
	r := await(t, threads[0])
	require.NoError(t, r.err)
	defer r.c.Close()
	requireEvents(t, s.only(evDialStarted, evGetDone, evPut), true,
		event{kind: evDialStarted, conn: 1}, event{kind: evGetDone, conn: 1},
		event{kind: evDialStarted}, event{kind: evDialStarted},
		event{kind: evPut, conn: 1}, event{kind: evGetDone, conn: 1})
	for i := 1; i < 4; i++ {
		g.open(i)
	}
	for _, ch := range threads[1:] {
		r := await(t, ch)
		require.NoError(t, r.err)
		defer r.c.Close()
	}
}
