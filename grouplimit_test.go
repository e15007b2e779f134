package connpool_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
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

// TestGroupDialingCountsOnlyDialsInFlight pins Stats.Dialing for the pools
// of a group at its cap: a dial waiting for a slot under the group's cap
// has not reached the dialer, so it is not counted in Dialing. Summed over
// a group of 10 open sockets, Dialing read 80: the dials waiting for a
// group slot.
func TestGroupDialingCountsOnlyDialsInFlight(t *testing.T) {
	held, waiting := startServer(t), []string{startServer(t).Addr(), startServer(t).Addr(), startServer(t).Addr()}
	g := newGroup(t, connpool.WithGroupMaxConns(2), connpool.WithMaxConns(4))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range 2 {
		c, err := g.Get(ctx, "tcp", held.Addr())
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
	}
	gets := make(chan error, 2*len(waiting))
	for _, addr := range waiting {
		for range 2 {
			go func() {
				c, err := g.Get(ctx, "tcp", addr)
				if err == nil {
					err = c.Close()
				}
				gets <- err
			}()
		}
	}
	sum := func() (s connpool.Stats) {
		for _, st := range g.Stats() {
			s.OpenConns += st.OpenConns
			s.Dialing += st.Dialing
			s.Waiting += st.Waiting
		}
		return s
	}
	require.Eventually(t, func() bool { return sum().Waiting == 2*len(waiting) }, waitFor, tick)
	assert.Eventually(t, func() bool { return sum().Dialing == 0 }, waitFor, tick,
		"dials waiting for a slot under the group's cap counted as in flight: %d", sum().Dialing)
	assert.Equal(t, 2, sum().OpenConns)
	require.Eventually(t, func() bool { return g.GroupStats().Waiting == 2*len(waiting) }, waitFor, tick)
	st := g.GroupStats()
	assert.Equal(t, connpool.GroupStats{Pools: 4, MaxConns: 2, OpenConns: 2, Waiting: 2 * len(waiting)},
		connpool.GroupStats{Pools: st.Pools, MaxConns: st.MaxConns, OpenConns: st.OpenConns, Waiting: st.Waiting})
	assert.Positive(t, st.OldestWait)
	cancel() // the waiting Gets leave
	for range 2 * len(waiting) {
		err := <-gets
		assert.ErrorIs(t, err, context.Canceled)
		assert.ErrorContains(t, err, "dialing 0", "the Get's error counts dials in flight only")
		assert.ErrorContains(t, err, "dials waiting at the group's cap of 2 (WithGroupMaxConns)")
	}
}

// The group's queue: dials waiting at the cap are served first come, first
// served across the group's pools, whatever frees a slot. A dial used to
// give up its place every 20ms, to look for an idle conn to evict, and
// join again at the back: the queue rotated, and four waiters were served
// [1 4 3 2] or [4 3 2 1]. Each test below pins one way a slot frees.

// servedCall is a Get or a DialContext of a group that returned: n is its
// place in the queue, release gives its conn back.
type servedCall struct {
	n       int
	release func(destroy bool) error
	err     error
}

// queueAtGroupCap starts call n to a server of its own in the background, a
// Get, or with mixed a DialContext when n is even, and returns once its
// dial waits at g's cap, behind those already waiting. The call is
// reported on served when it returns; it gives up when the test ends.
func queueAtGroupCap(t *testing.T, g *connpool.Group, n int, mixed bool, served chan<- servedCall) {
	t.Helper()
	addr := startServer(t).Addr()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	want := g.GroupStats().Waiting + 1
	go func() {
		s := servedCall{n: n}
		if !mixed || n%2 == 1 {
			var c *connpool.Conn
			if c, s.err = g.Get(ctx, "tcp", addr); s.err == nil {
				s.release = func(destroy bool) error {
					if destroy {
						c.MarkUnusable()
					}
					return c.Close()
				}
			}
		} else {
			var c net.Conn
			if c, s.err = g.DialContext(ctx, "tcp", addr); s.err == nil {
				s.release = func(bool) error { return c.Close() } // a client's close: the conn closes
			}
		}
		served <- s
	}()
	require.Eventually(t, func() bool { return g.GroupStats().Waiting == want }, waitFor, tick,
		"call %d did not queue at the group's cap", n)
}

// nextServed returns the next call served, failing the test after waitFor.
func nextServed(t *testing.T, served <-chan servedCall) servedCall {
	t.Helper()
	select {
	case s := <-served:
		require.NoError(t, s.err, "call %d", s.n)
		return s
	case <-time.After(waitFor):
		require.FailNow(t, "no call served")
		return servedCall{}
	}
}

// queueFour holds the only slot of a group capped at 1 and queues four
// calls behind it (Gets, or with mixed Gets and DialContexts), 15ms apart:
// the spacing of the report, long enough for a dial that rejoined the
// queue every 20ms to rotate it; the order comes from waiting until each
// call is queued. It returns the held conn.
func queueFour(t *testing.T, g *connpool.Group, mixed bool, served chan<- servedCall) *connpool.Conn {
	t.Helper()
	held, err := g.Get(context.Background(), "tcp", startServer(t).Addr())
	require.NoError(t, err)
	t.Cleanup(func() { held.Close() })
	for n := 1; n <= 4; n++ {
		queueAtGroupCap(t, g, n, mixed, served)
		<-time.After(15 * time.Millisecond)
	}
	st := g.GroupStats()
	assert.Equal(t, 1, st.MaxConns)
	assert.Equal(t, 1, st.OpenConns)
	assert.Equal(t, 4, st.Waiting)
	assert.Positive(t, st.OldestWait)
	return held
}

// TestGroupServesRaisedCapInOrder: each raise of the cap by one serves the
// call that waited longest.
func TestGroupServesRaisedCapInOrder(t *testing.T) {
	g := newGroup(t, connpool.WithGroupMaxConns(1))
	served := make(chan servedCall, 4)
	queueFour(t, g, false, served)
	var order []int
	for size := 2; size <= 5; size++ {
		require.NoError(t, g.SetGroupMaxConns(size))
		s := nextServed(t, served)
		t.Cleanup(func() { s.release(false) })
		order = append(order, s.n)
	}
	assert.Equal(t, []int{1, 2, 3, 4}, order, "served out of the order they queued in")
	st := g.GroupStats()
	assert.Equal(t, [3]int{5, 5, 0}, [3]int{st.MaxConns, st.OpenConns, st.Waiting}, "max, open, waiting")
	assert.Equal(t, int64(4), st.WaitCount)
	assert.Positive(t, st.WaitDuration)
}

// TestGroupServesClosedConnsSlotsInOrder: each conn closed in another pool
// (destroyed by its borrower, or closed by a DialContext client) frees its
// slot for the call that waited longest.
func TestGroupServesClosedConnsSlotsInOrder(t *testing.T) {
	g := newGroup(t, connpool.WithGroupMaxConns(1))
	served := make(chan servedCall, 4)
	held := queueFour(t, g, true, served)
	held.MarkUnusable()
	require.NoError(t, held.Close())
	var order []int
	for range 4 {
		s := nextServed(t, served)
		order = append(order, s.n)
		require.NoError(t, s.release(true))
	}
	assert.Equal(t, []int{1, 2, 3, 4}, order, "served out of the order they queued in")
}

// TestGroupServesEvictedIdleConnsSlotsInOrder: each conn returned idle in
// another pool is evicted for the call that waited longest, whichever
// waiting dial evicts it.
func TestGroupServesEvictedIdleConnsSlotsInOrder(t *testing.T) {
	g := newGroup(t, connpool.WithGroupMaxConns(1))
	served := make(chan servedCall, 4)
	held := queueFour(t, g, true, served)
	require.NoError(t, held.Close()) // idle in its pool, holding the slot
	var order []int
	for range 4 {
		s := nextServed(t, served)
		order = append(order, s.n)
		require.NoError(t, s.release(false)) // a Get's conn goes idle; a DialContext conn closes
	}
	assert.Equal(t, []int{1, 2, 3, 4}, order, "served out of the order they queued in")
	var evicted int64
	for _, st := range g.Stats() {
		evicted += st.IdleClosed
	}
	assert.Equal(t, int64(3), evicted, "the held conn and the conns of calls 1 and 3, evicted")
}

// groupStressFor is how long TestGroupQueueStress runs.
var groupStressFor = flag.Duration("connpool.groupstress", 300*time.Millisecond, "how long TestGroupQueueStress runs")

// TestGroupQueueStress runs Gets and DialContexts to four hosts, a third
// of them giving up within a few milliseconds, while the cap moves between
// 1 and 4 and the waiting dials evict each other's idle conns. Every call
// ends served or with its context's error; no more sockets are open than
// the largest cap; at the end, with the cap at 4, no dial waits and the
// group's slots are its open sockets, one for one.
func TestGroupQueueStress(t *testing.T) {
	if testing.Short() {
		t.Skip("stress test")
	}
	counter := &countingDialer{}
	g := newGroup(t, connpool.WithGroupMaxConns(2), connpool.WithMaxConns(4), connpool.WithDialer(counter.dial))
	var addrs []string
	for range 4 {
		addrs = append(addrs, startServer(t).Addr())
	}
	stop := make(chan struct{})
	errs := make(chan error, 100)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), waitFor)
				if (w+i)%3 == 0 {
					ctx, cancel = context.WithTimeout(context.Background(), time.Duration(1+i%5)*time.Millisecond)
				}
				addr := addrs[(w*7+i)%len(addrs)]
				var err error
				if w%2 == 0 {
					var c *connpool.Conn
					if c, err = g.Get(ctx, "tcp", addr); err == nil {
						if i%4 == 0 {
							c.MarkUnusable()
						}
						err = c.Close()
					}
				} else {
					var c net.Conn
					if c, err = g.DialContext(ctx, "tcp", addr); err == nil {
						err = c.Close()
					}
				}
				cancel()
				if err != nil && !errors.Is(err, context.DeadlineExceeded) {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	wg.Go(func() {
		for size := 0; ; size++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			if err := g.SetGroupMaxConns(1 + size%4); err != nil {
				errs <- err
				return
			}
		}
	})
	<-time.After(*groupStressFor)
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	assert.LessOrEqual(t, counter.peak.Load(), int64(4), "sockets open at once, with a cap of at most 4")

	require.NoError(t, g.SetGroupMaxConns(4))
	require.Eventually(t, func() bool {
		st := g.GroupStats()
		return st.Waiting == 0 && int64(st.OpenConns) == counter.open.Load()
	}, waitFor, tick, "the group's slots against its sockets")
	st := g.GroupStats()
	t.Logf("%d dials waited at the cap, %v in all", st.WaitCount, st.WaitDuration)
	assert.Positive(t, st.WaitCount)
	open := 0
	for _, ps := range g.Stats() {
		open += ps.OpenConns + ps.Dialing
	}
	assert.Equal(t, st.OpenConns, open, "the group's slots against its pools' conns")
}

// TestGroupHostNameDialingCountsOnlyDialsInFlight: for a pool of a host
// name, each address's Dialing, like the pool's, counts only the dials in
// flight, not one waiting for a slot under the group's cap.
func TestGroupHostNameDialingCountsOnlyDialsInFlight(t *testing.T) {
	srv := startServer(t)
	_, port, err := net.SplitHostPort(srv.Addr())
	require.NoError(t, err)
	resolver := connpool.ResolverFunc(func(context.Context, string, string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	})
	g := newGroup(t, connpool.WithGroupMaxConns(1), connpool.WithResolver(resolver))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	held, err := g.Get(ctx, "tcp", net.JoinHostPort("held.test", port))
	require.NoError(t, err)
	defer held.Close()
	addr := net.JoinHostPort("waiting.test", port)
	got := make(chan error, 1)
	go func() {
		_, err := g.Get(ctx, "tcp", addr)
		got <- err
	}()
	require.Eventually(t, func() bool { return g.GroupStats().Waiting == 1 }, waitFor, tick)
	require.Eventually(t, func() bool { // the dial waits at the cap from its start, before the first resolve answers
		return len(g.Stats()[connpool.Addr{Network: "tcp", Address: addr}].Addresses) == 1
	}, waitFor, tick)
	st := g.Stats()[connpool.Addr{Network: "tcp", Address: addr}]
	assert.Zero(t, st.Dialing)
	require.Len(t, st.Addresses, 1)
	assert.Zero(t, st.Addresses[0].Dialing, "a dial waiting for a slot under the group's cap counted as in flight")
	cancel()
	assert.ErrorIs(t, <-got, context.Canceled)
}

// groupTotals adds up the stats of a group's pools.
func groupTotals(g *connpool.Group) (s connpool.Stats) {
	for _, st := range g.Stats() {
		s.OpenConns += st.OpenConns
		s.Idle += st.Idle
		s.Dialing += st.Dialing
		s.Waiting += st.Waiting
		s.Dials += st.Dials
		s.DialErrors += st.DialErrors
		s.IdleClosed += st.IdleClosed
	}
	return s
}

// TestGroupMinIdleSettlesUnderTheCap pins warming under a group's cap
// below what the pools' MinIdle add up to: four hosts wanting two idle
// conns each under a cap of 6. A warming dial used to evict another
// pool's idle conn, whose pool warmed again in turn, and so on, with no
// Get anywhere: 40 such hosts under a cap of 64 made 13,850 dials in 2s.
// Warming takes only a free slot, so the group fills its cap and stays
// there.
func TestGroupMinIdleSettlesUnderTheCap(t *testing.T) {
	g := newGroup(t, connpool.WithGroupMaxConns(6), connpool.WithMinIdle(2))
	for range 4 {
		c, err := g.Get(context.Background(), "tcp", startServer(t).Addr())
		require.NoError(t, err)
		require.NoError(t, c.Close())
	}
	require.Eventually(t, func() bool {
		st, gs := groupTotals(g), g.GroupStats()
		return st.Idle == 6 && st.OpenConns == 6 && st.Dialing == 0 && gs.Waiting == 0
	}, waitFor, tick, "the pools warm up to the group's cap: %+v", g.GroupStats())
	settled := groupTotals(g)
	assert.Never(t, func() bool {
		st := groupTotals(g)
		return st.Dials != settled.Dials || st.IdleClosed != settled.IdleClosed
	}, 500*time.Millisecond, 5*time.Millisecond, "warming dialed and evicted with no Get")
	after := groupTotals(g)
	assert.Equal(t, settled.Dials, after.Dials, "dials")
	assert.Equal(t, settled.IdleClosed, after.IdleClosed, "idle conns evicted")
}

// TestGroupMinIdleWarmsWhenTheCapRises: a pool left below its MinIdle at
// the group's cap warms once a raised cap frees a slot.
func TestGroupMinIdleWarmsWhenTheCapRises(t *testing.T) {
	g := newGroup(t, connpool.WithGroupMaxConns(1), connpool.WithMinIdle(1), connpool.WithMaxConns(1))
	held, err := g.Get(context.Background(), "tcp", startServer(t).Addr())
	require.NoError(t, err)
	defer held.Close()
	cold := startServer(t).Addr()
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan error, 1)
	go func() {
		_, err := g.Get(ctx, "tcp", cold)
		got <- err
	}()
	require.Eventually(t, func() bool { return g.GroupStats().Waiting == 1 }, waitFor, tick)
	cancel()
	require.ErrorIs(t, <-got, context.Canceled)
	require.NoError(t, g.SetGroupMaxConns(2))
	assert.Eventually(t, func() bool {
		return g.Stats()[connpool.Addr{Network: "tcp", Address: cold}].Idle == 1
	}, waitFor, tick, "the pool below its MinIdle did not warm into the raised cap: %+v", g.GroupStats())
}

// dialEvents counts a group's dial events.
type dialEvents struct {
	started, done, failed, dialFailedClosed atomic.Int64
}

func (e *dialEvents) hooks() connpool.Hooks {
	return connpool.Hooks{
		DialStarted: func(connpool.DialStartedEvent) { e.started.Add(1) },
		DialDone: func(ev connpool.DialDoneEvent) {
			e.done.Add(1)
			if ev.Err != nil {
				e.failed.Add(1)
			}
		},
		ConnClosed: func(ev connpool.ConnClosedEvent) {
			if ev.Reason == connpool.CloseDialFailed {
				e.dialFailedClosed.Add(1)
			}
		},
	}
}

// TestGroupDialOfAGetThatLeftLeavesTheQueue pins what becomes of a dial
// waiting at the group's cap once the Get it was for gives up: it leaves
// the group's queue. It used to keep its place: with its own pool's conns
// holding the cap, nothing could evict for it, and three such dials sat
// in GroupStats.Waiting with no Get anywhere, kept their pool busy for
// the sweeper, and later dialed conns nobody asked for, ahead of the
// Gets behind them. Its end is a dial that was not needed: it closes
// with CloseDialFailed and counts in Stats.DialErrors, as one that Close
// cut short, but not against its address or a Get.
func TestGroupDialOfAGetThatLeftLeavesTheQueue(t *testing.T) {
	var events dialEvents
	g := newGroup(t, connpool.WithGroupMaxConns(2), connpool.WithHooks(events.hooks()))
	x, y := startServer(t).Addr(), startServer(t).Addr()
	keyX := connpool.Addr{Network: "tcp", Address: x}
	var held []*connpool.Conn
	for range 2 {
		c, err := g.Get(context.Background(), "tcp", x)
		require.NoError(t, err)
		held = append(held, c)
	}
	for n := 1; n <= 3; n++ {
		ctx, cancel := context.WithCancel(context.Background())
		got := make(chan error, 1)
		go func() {
			_, err := g.Get(ctx, "tcp", x)
			got <- err
		}()
		require.Eventually(t, func() bool { return g.Stats()[keyX].Waiting == 1 }, waitFor, tick, "Get %d did not queue", n)
		cancel()
		require.ErrorIs(t, <-got, context.Canceled)
	}
	require.Eventually(t, func() bool { return g.GroupStats().Waiting == 0 }, waitFor, tick,
		"dials of Gets that left still wait at the group's cap: %+v", g.GroupStats())
	require.Eventually(t, func() bool { return events.dialFailedClosed.Load() == 3 }, waitFor, tick)
	st := g.Stats()[keyX]
	assert.Zero(t, st.Dialing)
	assert.Equal(t, 2, st.OpenConns, "the pool keeps only the conns its Gets took")
	assert.Equal(t, int64(2), st.Dials)
	assert.Equal(t, int64(3), st.DialErrors, "an unneeded dial ends like one Close cut short")
	assert.Zero(t, st.GetDialErrors, "no Get failed for it")
	assert.Equal(t, int64(5), events.started.Load())
	assert.Equal(t, int64(5), events.done.Load(), "a DialDone for every DialStarted")
	assert.Equal(t, int64(3), events.failed.Load())
	checkBooks(t, st)

	for _, c := range held {
		require.NoError(t, c.Close())
	}
	// Nothing owes x a dial: y's Get evicts one of x's idle conns at once,
	// with no dial of x served before it, and x dials nothing.
	c, err := g.Get(context.Background(), "tcp", y)
	require.NoError(t, err)
	require.NoError(t, c.Close())
	st = g.Stats()[keyX]
	assert.Equal(t, int64(2), st.Dials, "x dialed a conn nobody asked for")
	assert.Equal(t, int64(1), st.IdleClosed, "one of x's idle conns evicted for y")
	c, err = g.Get(context.Background(), "tcp", x)
	require.NoError(t, err, "x serves from its idle conn, with no backoff after the unneeded dials")
	require.NoError(t, c.Close())
}

// TestGroupDialOfAGetThatLeftStaysForTheNextGet: a dial whose Get left
// keeps its place at the group's cap while another Get of its pool waits
// with no dial of its own (at the pool's MaxConns), and serves that Get
// ahead of the dials that queued after it.
func TestGroupDialOfAGetThatLeftStaysForTheNextGet(t *testing.T) {
	g := newGroup(t, connpool.WithGroupMaxConns(1), connpool.WithMaxConns(1))
	held, err := g.Get(context.Background(), "tcp", startServer(t).Addr())
	require.NoError(t, err)
	t.Cleanup(func() { held.Close() })
	x := startServer(t).Addr()
	keyX := connpool.Addr{Network: "tcp", Address: x}
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := g.Get(ctx, "tcp", x)
		first <- err
	}()
	require.Eventually(t, func() bool { return g.GroupStats().Waiting == 1 }, waitFor, tick)
	served := make(chan servedCall, 2)
	queueAtGroupCap(t, g, 2, false, served) // another pool's dial, behind x's
	second := make(chan servedCall, 1)
	go func() {
		c, err := g.Get(context.Background(), "tcp", x) // at x's MaxConns: no dial of its own
		second <- servedCall{n: 3, err: err, release: func(bool) error { return c.Close() }}
	}()
	require.Eventually(t, func() bool { return g.Stats()[keyX].Waiting == 2 }, waitFor, tick)
	cancel()
	require.ErrorIs(t, <-first, context.Canceled)
	held.MarkUnusable()
	require.NoError(t, held.Close()) // one slot frees
	s := nextServed(t, second)
	assert.Equal(t, 1, g.GroupStats().Waiting, "the other pool's dial still waits, behind x's")
	require.NoError(t, s.release(false))
	assert.Equal(t, int64(1), g.Stats()[keyX].Dials)
}

// TestGroupDialingNeverCountsDialsWithoutASlot pins Stats.Dialing and
// AddressStats.Dialing against dials waiting at the group's cap: a dial
// counts as in flight only once it holds its slot. A dial used to count
// from its start until it found the cap reached, so that with the cap's
// only slot held, Dialing summed over the pools read non-zero in 3 of 5
// runs. Each dial's DialStarted hook reads the stats in that window, and
// a reader samples them throughout; neither may see a dial in flight.
func TestGroupDialingNeverCountsDialsWithoutASlot(t *testing.T) {
	srv := startServer(t)
	_, port, err := net.SplitHostPort(srv.Addr())
	require.NoError(t, err)
	resolver := connpool.ResolverFunc(func(context.Context, string, string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	})
	var g *connpool.Group // set before the first Get, which starts the first dial
	var seen, samples atomic.Int64
	inFlight := func() int {
		n := 0
		for _, st := range g.Stats() {
			n += st.Dialing
			for _, a := range st.Addresses {
				n += a.Dialing
			}
		}
		return n
	}
	record := func() {
		samples.Add(1)
		if n := inFlight(); n > 0 {
			seen.Add(int64(n))
		}
	}
	g = newGroup(t, connpool.WithGroupMaxConns(1), connpool.WithResolver(resolver),
		connpool.WithHooks(connpool.Hooks{DialStarted: func(connpool.DialStartedEvent) {
			if g.GroupStats().OpenConns == 1 { // the held conn's own dial is in flight
				record()
			}
		}}))
	held, err := g.Get(context.Background(), "tcp", net.JoinHostPort("held.test", port))
	require.NoError(t, err)
	defer held.Close()
	seen.Store(0)
	samples.Store(0)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			default:
				record()
			}
		}
	}()
	const gets = 20
	errs := make(chan error, gets)
	for i := range gets {
		go func() {
			_, err := g.Get(ctx, "tcp", net.JoinHostPort(fmt.Sprintf("waiting%d.test", i), port))
			errs <- err
		}()
	}
	require.Eventually(t, func() bool { return g.GroupStats().Waiting == gets }, waitFor, tick)
	cancel()
	for range gets {
		assert.ErrorIs(t, <-errs, context.Canceled)
	}
	close(stop)
	<-sampled
	t.Logf("%d samples", samples.Load())
	assert.Zero(t, seen.Load(), "dials counted in flight with the group's only slot held")
}
