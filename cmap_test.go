package connpool_test

// The tests of this file hold connpool's events to the unit tests of
// MongoDB's Connection Monitoring and Pooling spec (CMAP), in
// source/connection-monitoring-and-pooling/tests/cmap-format of
// github.com/mongodb/specifications: one Go test per spec test that
// applies, named after its file, written anew for connpool. Each drives a
// pool over loopback as the spec's runner drives a CMAP pool (a goroutine
// per spec "thread"), records every event in the order the hooks ran, and
// checks the ORDER of the events that the spec's test does not ignore,
// not only their counts. CMAP names map to connpool's as the godoc of
// [connpool.Hooks] tabulates: checkout started/out/failed are
// GetStarted/GetDone, checked in is Put, created/ready are
// DialStarted/DialDone, cleared is PoolReset, created+ready of the pool
// is PoolReady. The spec's "wait" steps, which give a thread time to
// queue, become waits for the pool's own state (Stats.Waiting, a dial
// reaching the dialer); its fail points that hold a connection's
// handshake become a dialer that holds each dial until the test lets it
// through (heldDialer).
//
// Spec tests adapted where connpool differs by design (see the godoc of
// Hooks), each test saying how:
//
//	pool-checkout-no-idle      the maintainer closes the idle conn, not the checkout
//	pool-checkout-no-stale     its ready step is dropped: connpool does not pause
//	pool-clear-min-size        warming resumes after Reset with no ready step
//	pool-create-min-size       New warms at once: there is no ready step to wait for
//	pool-create-min-size-error a failed warming dial backs off; it does not clear the pool
//
// Spec tests that do not apply, and why:
//
//	pool-clear-clears-waitqueue   Reset keeps its waiters: they are served by
//	                              new dials, not failed (TestCMAPDiffersResetKeepsWaiters
//	                              pins connpool's behavior instead)
//	pool-clear-interrupting-pending-connections
//	                              Reset never interrupts borrowed conns or dials in
//	                              flight; they close as they come back
//	pool-clear-paused             no paused state: a pool is ready from New
//	pool-clear-ready              no paused state: Gets keep being served after Reset
//	pool-ready                    no paused state and no ready operation
//	pool-ready-ready              no ready operation to repeat
//
// The spec's maxConnecting tests (pool-checkout-custom-maxConnecting-is-
// enforced, pool-checkout-maxConnecting-is-enforced, -maxConnecting-
// timeout, -minPoolSize-connection-maxConnecting, -returned-connection-
// maxConnecting) are integration tests against a MongoDB server whose
// handshake a fail point slows; here a gated dialer slows the dial, and
// WithMaxConnecting is maxConnecting (CMAP's default, 2, set explicitly).

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
)

// Event kinds, by connpool's hook names.
const (
	evPoolReady   = "PoolReady"
	evPoolReset   = "PoolReset"
	evPoolClosed  = "PoolClosed"
	evDialStarted = "DialStarted"
	evDialDone    = "DialDone"
	evGetStarted  = "GetStarted"
	evGetDone     = "GetDone"
	evPut         = "Put"
	evConnClosed  = "ConnClosed"
)

// anyID and anyDur stand for CMAP's placeholder 42 in an expected event:
// a conn id that must be set, a duration that must be positive.
const (
	anyID  = ^uint64(0)
	anyDur = time.Duration(-1)
)

// event is one event as a consumer sees it. In an expected event a zero
// field is not compared.
type event struct {
	kind     string
	conn     uint64
	get      uint64
	reason   connpool.CloseReason
	failure  connpool.GetFailure
	dur      time.Duration
	failed   bool // DialDone with an error
	settings connpool.PoolSettings
}

func (e event) String() string {
	var b strings.Builder
	b.WriteString(e.kind)
	if e.conn != 0 {
		fmt.Fprintf(&b, " conn=%d", e.conn)
	}
	if e.get != 0 {
		fmt.Fprintf(&b, " get=%d", e.get)
	}
	if e.reason != 0 {
		fmt.Fprintf(&b, " reason=%v", e.reason)
	}
	if e.failure != 0 {
		fmt.Fprintf(&b, " failure=%v", e.failure)
	}
	if e.failed {
		b.WriteString(" failed")
	}
	return b.String()
}

// eventStream records a pool's events in the order its hooks ran.
type eventStream struct {
	mu     sync.Mutex
	events []event
}

func (s *eventStream) add(e event) {
	s.mu.Lock()
	s.events = append(s.events, e)
	s.mu.Unlock()
}

func (s *eventStream) hooks() connpool.Hooks {
	return connpool.Hooks{
		PoolReady:  func(e connpool.PoolEvent) { s.add(event{kind: evPoolReady, settings: e.Settings}) },
		PoolReset:  func(connpool.PoolEvent) { s.add(event{kind: evPoolReset}) },
		PoolClosed: func(connpool.PoolEvent) { s.add(event{kind: evPoolClosed}) },
		DialStarted: func(e connpool.DialStartedEvent) {
			s.add(event{kind: evDialStarted, conn: e.ConnID})
		},
		DialDone: func(e connpool.DialDoneEvent) {
			s.add(event{kind: evDialDone, conn: e.ConnID, dur: e.Duration, failed: e.Err != nil})
		},
		GetStarted: func(e connpool.GetStartedEvent) { s.add(event{kind: evGetStarted, get: e.GetID}) },
		GetDone: func(e connpool.GetDoneEvent) {
			s.add(event{kind: evGetDone, get: e.GetID, conn: e.ConnID, failure: e.Failure, dur: e.Duration})
		},
		Put: func(e connpool.PutEvent) { s.add(event{kind: evPut, conn: e.ConnID, reason: e.Closed}) },
		ConnClosed: func(e connpool.ConnClosedEvent) {
			s.add(event{kind: evConnClosed, conn: e.ConnID, reason: e.Reason})
		},
	}
}

// all returns a copy of the events so far.
func (s *eventStream) all() []event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]event(nil), s.events...)
}

// only returns the events of the given kinds, in order.
func (s *eventStream) only(kinds ...string) []event {
	var out []event
	for _, e := range s.all() {
		for _, k := range kinds {
			if e.kind == k {
				out = append(out, e)
				break
			}
		}
	}
	return out
}

// except returns the events not of the given kinds, in order: the spec's
// ignore list.
func (s *eventStream) except(kinds ...string) []event {
	var out []event
next:
	for _, e := range s.all() {
		for _, k := range kinds {
			if e.kind == k {
				continue next
			}
		}
		out = append(out, e)
	}
	return out
}

// count returns how many events of kind there were.
func (s *eventStream) count(kind string) int { return len(s.only(kind)) }

// waitCount waits until there were n events of kind: the spec's
// waitForEvent.
func (s *eventStream) waitCount(t testing.TB, kind string, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return s.count(kind) >= n }, waitFor, tick,
		"waiting for %d %s events", n, kind)
}

// matches reports whether got matches want, a field at a time; want's
// zero fields match anything.
func (want event) matches(got event) bool {
	switch {
	case want.kind != got.kind,
		want.conn == anyID && got.conn == 0,
		want.conn != 0 && want.conn != anyID && want.conn != got.conn,
		want.get != 0 && want.get != got.get,
		want.reason != 0 && want.reason != got.reason,
		want.failure != 0 && want.failure != got.failure,
		want.dur == anyDur && got.dur <= 0,
		want.failed && !got.failed:
		return false
	}
	return true
}

// requireEvents checks that got starts with events matching want, in
// order, as the spec's runner does; exact also rules out any event after
// them.
func requireEvents(t testing.TB, got []event, exact bool, want ...event) {
	t.Helper()
	ok := len(got) >= len(want) && (!exact || len(got) == len(want))
	for i := 0; ok && i < len(want); i++ {
		ok = want[i].matches(got[i])
	}
	if !ok {
		require.Failf(t, "events out of CMAP's order", "want (in order):\n%s\ngot:\n%s", listEvents(want), listEvents(got))
	}
}

func listEvents(es []event) string {
	var b strings.Builder
	for i, e := range es {
		fmt.Fprintf(&b, "  %2d %v\n", i, e)
	}
	return b.String()
}

// heldDialer holds each dial until the test lets it through, in the
// order the dials reach it: CMAP's tests hold a handshake with a fail
// point. Dials end early when the pool closes.
type heldDialer struct {
	mu      sync.Mutex
	gates   []chan struct{} // one per dial, in arrival order
	arrived atomic.Int32
}

func (g *heldDialer) gate(i int) chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	for len(g.gates) <= i {
		g.gates = append(g.gates, make(chan struct{}))
	}
	return g.gates[i]
}

func (g *heldDialer) dial(ctx context.Context, network, address string) (net.Conn, error) {
	i := int(g.arrived.Add(1)) - 1
	select {
	case <-g.gate(i):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var d net.Dialer
	return d.DialContext(ctx, network, address)
}

// open lets the dial that arrived i-th (from 0) through, now or when it
// arrives.
func (g *heldDialer) open(i int) { close(g.gate(i)) }

// waitArrived waits until n dials have reached the dialer.
func (g *heldDialer) waitArrived(t testing.TB, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return int(g.arrived.Load()) >= n }, waitFor, tick, "waiting for %d dials", n)
}

// result is what a Get on a goroutine of its own returned.
type result struct {
	c   *connpool.Conn
	err error
}

// goGet runs p.Get(ctx) on a goroutine of its own, a spec "thread", and
// delivers its result.
func goGet(ctx context.Context, p *connpool.Pool) <-chan result {
	ch := make(chan result, 1)
	go func() {
		c, err := p.Get(ctx)
		ch <- result{c, err}
	}()
	return ch
}

// await waits for a goroutine's Get: the spec's waitForThread.
func await(t testing.TB, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(waitFor):
		require.FailNow(t, "a Get did not return")
	}
	return result{}
}

// cmapPool makes a pool whose events s records.
func cmapPool(t testing.TB, s *eventStream, opts ...connpool.Option) (*connpool.Pool, string) {
	t.Helper()
	srv := startServer(t)
	return newPool(t, srv.Addr(), append([]connpool.Option{connpool.WithHooks(s.hooks())}, opts...)...), srv.Addr()
}

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
