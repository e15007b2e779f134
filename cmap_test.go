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
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
