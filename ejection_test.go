package connpool_test

import (
	"context"
	"errors"
	"fmt"
	"io"
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

// The tests of outlier ejection (ejection.go, internal/addrset's
// outlier.go) against loopback backends: three addresses behind a fake
// name, of which one or two answer a conn's first request and then send
// junk or reset it.

// flaky is a server that answers the first request of each conn and
// then, on the next, sends junk (odd conns) or resets the conn (even
// ones). It counts the conns it accepted and the requests it read.
type flaky struct {
	ln       net.Listener
	accepted atomic.Int64
	requests atomic.Int64
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
}

// replaceWithFlaky closes b's echo server at ip and serves a flaky one
// at its address instead, closed at the end of the test.
func replaceWithFlaky(t *testing.T, b *backends, ip netip.Addr) *flaky {
	t.Helper()
	require.NoError(t, b.srvs[ip].Close())
	ln, err := net.Listen("tcp", b.addr(ip))
	require.NoError(t, err)
	f := &flaky{ln: ln, conns: make(map[net.Conn]struct{})}
	f.wg.Add(1)
	go f.accept()
	t.Cleanup(f.close)
	return f
}

func (f *flaky) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		n := f.accepted.Add(1)
		f.mu.Lock()
		f.conns[c] = struct{}{}
		f.mu.Unlock()
		f.wg.Add(1)
		go f.serve(c, n%2 == 1)
	}
}

func (f *flaky) serve(c net.Conn, junk bool) {
	defer f.wg.Done()
	defer func() {
		f.mu.Lock()
		delete(f.conns, c)
		f.mu.Unlock()
		_ = c.Close()
	}()
	buf := make([]byte, 64)
	for i := 0; ; i++ {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		f.requests.Add(1)
		switch {
		case i == 0:
			_, _ = c.Write(buf[:n])
		case junk:
			_, _ = c.Write([]byte("junk!junk!junk!junk!"[:n]))
		default:
			_ = c.(*net.TCPConn).SetLinger(0) // close with a reset
			return
		}
	}
}

func (f *flaky) close() {
	_ = f.ln.Close()
	f.mu.Lock()
	for c := range f.conns {
		_ = c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// ejectionEvents returns hooks that send every AddressEjected event to
// the channel, never blocking the pool.
func ejectionEvents() (connpool.Hooks, <-chan connpool.EjectionEvent) {
	ch := make(chan connpool.EjectionEvent, 1024)
	return connpool.Hooks{AddressEjected: func(e connpool.EjectionEvent) {
		select {
		case ch <- e:
		default:
		}
	}}, ch
}

// ejectingPool returns a pool of b's name, with ejection on.
func ejectingPool(t *testing.T, b *backends, o connpool.OutlierEjection, hooks connpool.Hooks) *connpool.Pool {
	t.Helper()
	pool, err := connpool.New("tcp", b.name(),
		connpool.WithResolver(newFakeResolver(b.ips...)),
		connpool.WithMaxConns(8),
		connpool.WithOutlierEjection(o),
		connpool.WithHooks(hooks))
	require.NoError(t, err)
	t.Cleanup(func() { _ = pool.Close() })
	return pool
}

// round borrows n conns at once, sends one request over each, and
// returns them: a reply that is not the request marks the conn unusable,
// and a failed read or write is the pool's to see. It returns the
// addresses the conns went to.
func round(t *testing.T, pool *connpool.Pool, n int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	conns := make([]*connpool.Conn, 0, n)
	var addrs []string
	for range n {
		c, err := pool.Get(ctx)
		require.NoError(t, err)
		conns = append(conns, c)
		addrs = append(addrs, c.RemoteAddr().String())
	}
	for _, c := range conns {
		ping(t, c)
	}
	return addrs
}

// ping sends one request over c and returns it: a reply that is not the
// request marks c unusable, and a failed read or write is the pool's to
// see.
func ping(t *testing.T, c *connpool.Conn) {
	t.Helper()
	const msg = "ping"
	_ = c.SetDeadline(time.Now().Add(waitFor))
	if _, err := c.Write([]byte(msg)); err == nil {
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err == nil && string(buf) != msg {
			c.MarkUnusable()
		}
	}
	require.NoError(t, c.Close())
}

// ejectedAddrs returns the addresses Stats shows ejected.
func ejectedAddrs(pool *connpool.Pool) []string {
	var out []string
	for _, a := range pool.Stats().Addresses {
		if a.Ejected {
			out = append(out, a.Address)
		}
	}
	return out
}

// TestOutlierEjectionEjectsAndReadmits pins the promise of
// WithOutlierEjection: of three addresses, the one whose conns fail after
// their first request is ejected after Consecutive failures, no Get
// reaches it while it is ejected (not a dial, not an idle conn), and it
// is readmitted after the ejection time, when dials reach it again.
func TestOutlierEjectionEjectsAndReadmits(t *testing.T) {
	b := startBackends(t, 3)
	bad := replaceWithFlaky(t, b, b.ips[1])
	badAddr := b.addr(b.ips[1])
	hooks, events := ejectionEvents()
	const k = 3
	pool := ejectingPool(t, b, connpool.OutlierEjection{Consecutive: k, FailureRate: -1, BaseEjectionTime: time.Second}, hooks)

	for i := 0; len(ejectedAddrs(pool)) == 0; i++ {
		require.Less(t, i, 100, "never ejected")
		round(t, pool, 3)
	}
	assert.Equal(t, []string{badAddr}, ejectedAddrs(pool))
	s := pool.Stats()
	assert.Equal(t, int64(1), s.Ejections)
	assert.GreaterOrEqual(t, s.BrokenClosed, int64(k), "ejected after %d failures, no fewer", k)
	var ev connpool.EjectionEvent
	select {
	case ev = <-events:
	case <-time.After(waitFor):
		t.Fatal("no ejection event")
	}
	assert.Equal(t, connpool.EjectionEvent{Pool: ev.Pool, Address: badAddr, Ejected: true, Duration: time.Second, Ejections: 1}, ev)

	// While it is ejected, no Get reaches it: neither a dial nor an idle
	// conn of it. Only the rounds that ended with it still ejected count.
	accepted, requests := bad.accepted.Load(), bad.requests.Load()
	for range 10 {
		addrs := round(t, pool, 4) // one more than there are idle conns: a dial each round at first
		if len(ejectedAddrs(pool)) == 0 {
			break // readmitted meanwhile (a slow machine): the rest is moot
		}
		assert.NotContains(t, addrs, badAddr)
		assert.Equal(t, accepted, bad.accepted.Load(), "a dial reached the ejected address")
		assert.Equal(t, requests, bad.requests.Load(), "a request reached the ejected address")
	}

	select {
	case ev = <-events:
	case <-time.After(waitFor):
		t.Fatal("not readmitted")
	}
	assert.Equal(t, connpool.EjectionEvent{Pool: ev.Pool, Address: badAddr, Ejections: 1}, ev)
	assert.Empty(t, ejectedAddrs(pool))
	// Readmitted, it is the emptiest address: the next dial goes there.
	require.Eventually(t, func() bool {
		for _, a := range round(t, pool, 6) {
			if a == badAddr {
				return true
			}
		}
		return false
	}, waitFor, tick)
}

// TestEjectedConnsAreNotHealthFailures: the conns of an address closed
// because it was ejected, idle at the ejection or on their return, are
// counted as EjectedClosed, not as health failures: no check failed on
// them. Regression: they were closed as CloseUnhealthy, and a dashboard
// showed health-check failures that never happened. A first round leaves
// an idle conn at each address; in the second, that conn of the flaky
// address fails its second request, which ejects the address (one
// failure suffices here), while a fresh conn to it, whose first request
// succeeds, is borrowed or idle: it closes for the ejection.
func TestEjectedConnsAreNotHealthFailures(t *testing.T) {
	b := startBackends(t, 3)
	replaceWithFlaky(t, b, b.ips[1])
	var ejectedEvents atomic.Int64
	hooks := connpool.Hooks{ConnClosed: func(e connpool.ConnClosedEvent) {
		if e.Reason == connpool.CloseEjected {
			ejectedEvents.Add(1)
		}
	}}
	pool := ejectingPool(t, b, connpool.OutlierEjection{Consecutive: 1, FailureRate: -1, BaseEjectionTime: time.Minute}, hooks)
	round(t, pool, 3)
	require.Empty(t, ejectedAddrs(pool))
	round(t, pool, 6)
	require.Equal(t, []string{b.addr(b.ips[1])}, ejectedAddrs(pool))
	require.Eventually(t, func() bool { return pool.Stats().EjectedClosed > 0 }, waitFor, tick, "no conn closed for the ejection")
	s := pool.Stats()
	assert.Zero(t, s.HealthFailures, "no health check failed")
	assert.Equal(t, s.EjectedClosed, s.Closed(connpool.CloseEjected))
	assert.Equal(t, s.EjectedClosed, ejectedEvents.Load(), "the ConnClosed events say why")
}

// TestOutlierEjectionMaxPercent pins the cap on ejections: with two of
// three addresses failing and MaxEjectionPercent 50, one is ejected and
// the other, though its conns fail as often, stays in.
func TestOutlierEjectionMaxPercent(t *testing.T) {
	b := startBackends(t, 3)
	replaceWithFlaky(t, b, b.ips[0])
	replaceWithFlaky(t, b, b.ips[1])
	const k = 2
	var mu sync.Mutex
	broken := map[string]int{}
	hooks := connpool.Hooks{ConnClosed: func(e connpool.ConnClosedEvent) {
		if e.Reason == connpool.CloseBroken {
			mu.Lock()
			broken[e.Address]++
			mu.Unlock()
		}
	}}
	pool := ejectingPool(t, b, connpool.OutlierEjection{Consecutive: k, FailureRate: -1, BaseEjectionTime: time.Hour}, hooks)

	for i := 0; ; i++ {
		require.Less(t, i, 200, "the second bad address never failed %d times while the first was ejected", k)
		round(t, pool, 3)
		ej := ejectedAddrs(pool)
		require.LessOrEqual(t, len(ej), 1, "more than 50%% of three ejected")
		if len(ej) == 0 {
			continue
		}
		other := b.addr(b.ips[0])
		if ej[0] == other {
			other = b.addr(b.ips[1])
		}
		mu.Lock()
		n := broken[other]
		mu.Unlock()
		if n >= 2*k {
			break // it failed enough to be ejected twice over, and is not
		}
	}
	assert.Len(t, ejectedAddrs(pool), 1)
	assert.Equal(t, int64(1), pool.Stats().Ejections)
}

// TestTwoAddressesEjectedOneAfterTheOther: with two of three addresses
// failing and room to eject both, each ejection drains its own address:
// its idle conns close as ejected, each once, none of the good
// address's, and the conns of the address ejected first are not counted
// again when the second goes. Afterwards every Get goes to the good one.
func TestTwoAddressesEjectedOneAfterTheOther(t *testing.T) {
	b := startBackends(t, 3)
	replaceWithFlaky(t, b, b.ips[0])
	replaceWithFlaky(t, b, b.ips[1])
	bad := map[string]bool{b.addr(b.ips[0]): true, b.addr(b.ips[1]): true}
	good := b.addr(b.ips[2])
	var mu sync.Mutex
	ejectedConns := map[uint64]string{} // conn ID -> its address, for each conn closed as ejected
	var twice []uint64
	hooks := connpool.Hooks{ConnClosed: func(e connpool.ConnClosedEvent) {
		if e.Reason != connpool.CloseEjected {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if _, ok := ejectedConns[e.ConnID]; ok {
			twice = append(twice, e.ConnID)
		}
		ejectedConns[e.ConnID] = e.Address
	}}
	// 3 x 67% rounds down to 2: both bad addresses may be out at once.
	pool := ejectingPool(t, b, connpool.OutlierEjection{Consecutive: 1, FailureRate: -1, BaseEjectionTime: time.Hour,
		MaxEjectionPercent: 67}, hooks)

	// Two conns to each address, idle, each past its first request.
	round(t, pool, 6)
	for _, a := range pool.Stats().Addresses {
		require.Equal(t, 2, a.Idle, "the six conns did not spread evenly: %+v", pool.Stats().Addresses)
	}
	// Borrow them all, give back one of each address unused (it stays
	// idle), and send the second request over the other: each bad one
	// fails, ejects its address, and the drain must close its idle
	// sibling, the second time without touching the first's.
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	var use []*connpool.Conn
	seen := map[string]bool{}
	for range 6 {
		c, err := pool.Get(ctx)
		require.NoError(t, err)
		if a := c.RemoteAddr().String(); !seen[a] {
			seen[a] = true
			use = append(use, c)
			continue
		}
		require.NoError(t, c.Close())
	}
	for _, c := range use {
		ping(t, c)
		require.NoError(t, pool.CheckInvariants())
	}
	require.Len(t, ejectedAddrs(pool), 2)
	for _, a := range ejectedAddrs(pool) {
		assert.True(t, bad[a], "%s ejected, a good address", a)
	}
	assert.Equal(t, int64(2), pool.Stats().Ejections)
	require.Eventually(t, func() bool { // Open counts the conns being closed too
		for _, a := range pool.Stats().Addresses {
			if bad[a.Address] && a.Open > 0 {
				return false
			}
		}
		return true
	}, waitFor, tick, "an ejected address kept conns open")
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return int64(len(ejectedConns)) == pool.Stats().EjectedClosed
	}, waitFor, tick, "the ConnClosed events of the ejected conns and Stats disagree")
	mu.Lock()
	assert.Len(t, ejectedConns, 2, "each ejection closes its address's idle conn")
	assert.Empty(t, twice, "conns closed as ejected twice")
	for id, a := range ejectedConns {
		assert.True(t, bad[a], "conn %d of %s closed as ejected", id, a)
	}
	mu.Unlock()

	for _, a := range round(t, pool, 4) {
		assert.Equal(t, good, a, "a Get reached an ejected address")
	}
	require.NoError(t, pool.CheckInvariants())
}

// TestOutlierEjectionOption pins the option's checks and that it is off
// unless given.
func TestOutlierEjectionOption(t *testing.T) {
	for _, o := range []connpool.OutlierEjection{
		{FailureRate: 1.5},
		{MaxEjectionPercent: 101},
		{BaseEjectionTime: -time.Second},
		{Window: -1},
	} {
		_, err := connpool.New("tcp", "127.0.0.1:1", connpool.WithOutlierEjection(o))
		assert.True(t, errors.Is(err, connpool.ErrInvalidOption), "%+v: %v", o, err)
		assert.ErrorContains(t, err, "WithOutlierEjection")
	}
}

// TestEjectionEventsInOrder pins the order of AddressEjected events, as a
// consumer that tracks the ejected set sees them: with an ejection time
// of a millisecond, so that readmissions race the next ejections, each
// address's events alternate, ejected first, and the set they describe
// never holds more than 50% of the three addresses.
func TestEjectionEventsInOrder(t *testing.T) {
	b := startBackends(t, 3)
	replaceWithFlaky(t, b, b.ips[0])
	replaceWithFlaky(t, b, b.ips[1])
	var mu sync.Mutex
	var seen []connpool.EjectionEvent
	hooks := connpool.Hooks{AddressEjected: func(e connpool.EjectionEvent) {
		mu.Lock()
		seen = append(seen, e)
		mu.Unlock()
	}}
	pool := ejectingPool(t, b, connpool.OutlierEjection{Consecutive: 1, FailureRate: -1,
		BaseEjectionTime: time.Millisecond, MaxEjectionTime: time.Millisecond}, hooks)
	require.Eventually(t, func() bool {
		round(t, pool, 3)
		mu.Lock()
		defer mu.Unlock()
		return len(seen) >= 6
	}, waitFor, tick)
	require.NoError(t, pool.Close())

	mu.Lock()
	defer mu.Unlock()
	out := map[string]bool{}
	for i, e := range seen {
		require.NotEqual(t, out[e.Address], e.Ejected, "event %d: %+v repeats its address's state", i, e)
		out[e.Address] = e.Ejected
		n := 0
		for _, ej := range out {
			if ej {
				n++
			}
		}
		require.LessOrEqual(t, n, 1, "event %d: two of three ejected", i)
	}
}

// TestResolveToOnlyEjectedAddressesReadmits: a resolve that leaves the
// pool only an ejected address readmits it at once, since never all of a
// pool's addresses are ejected, and a Get is served by one dial.
// Regression: the address stayed ejected, every dial to it opened a conn
// that the pool closed at once as CloseEjected, thousands a second, and
// the Get timed out.
func TestResolveToOnlyEjectedAddressesReadmits(t *testing.T) {
	b := startBackends(t, 2)
	bad := replaceWithFlaky(t, b, b.ips[1])
	badAddr := b.addr(b.ips[1])
	r := newFakeResolver(b.ips...)
	hooks, events := ejectionEvents()
	pool, err := connpool.New("tcp", b.name(), connpool.WithResolver(r), connpool.WithResolveInterval(10*time.Millisecond),
		connpool.WithOutlierEjection(connpool.OutlierEjection{Consecutive: 1, FailureRate: -1, BaseEjectionTime: time.Hour}),
		connpool.WithHooks(hooks))
	require.NoError(t, err)
	t.Cleanup(func() { _ = pool.Close() })
	for i := 0; len(ejectedAddrs(pool)) == 0; i++ {
		require.Less(t, i, 100, "never ejected")
		round(t, pool, 4)
	}
	require.Equal(t, connpool.EjectionEvent{Address: badAddr, Ejected: true, Duration: time.Hour, Ejections: 1}, nextEjection(t, events))

	r.set(b.ips[1])
	require.Equal(t, connpool.EjectionEvent{Address: badAddr, Ejected: false, Ejections: 1}, nextEjection(t, events),
		"the only address left is readmitted")
	require.Eventually(t, func() bool { return len(pool.Stats().Addresses) == 1 }, waitFor, tick)
	assert.Empty(t, ejectedAddrs(pool))

	accepted, closedEjected := bad.accepted.Load(), pool.Stats().EjectedClosed
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, err := pool.Get(ctx)
	require.NoError(t, err)
	assert.Equal(t, badAddr, c.RemoteAddr().String())
	require.NoError(t, c.Close())
	assert.LessOrEqual(t, bad.accepted.Load()-accepted, int64(1), "one dial at most")
	assert.Equal(t, closedEjected, pool.Stats().EjectedClosed, "no conn closed for an ejection")
}

// TestEjectedAddressDoesNotEndTheBackoff: with one address ejected and
// the other down, the pool backs off its dials as a pool whose every
// address is down does: Gets that need a dial fail at once, without one.
// Regression: the ejected address, whose own dials had not failed, kept
// the backoff off, and every Get dialed the address that was down.
func TestEjectedAddressDoesNotEndTheBackoff(t *testing.T) {
	b := startBackends(t, 2)
	replaceWithFlaky(t, b, b.ips[1])
	pool := ejectingPool(t, b, connpool.OutlierEjection{Consecutive: 1, FailureRate: -1, BaseEjectionTime: time.Hour}, connpool.Hooks{})
	for i := 0; len(ejectedAddrs(pool)) == 0; i++ {
		require.Less(t, i, 100, "never ejected")
		round(t, pool, 4)
	}
	require.NoError(t, b.srvs[b.ips[0]].Close()) // the other address goes down
	pool.Reset()                                 // its idle conns would serve the Gets
	before := pool.Stats().DialErrors
	for range 50 {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		_, err := pool.Get(ctx)
		cancel()
		require.Error(t, err)
	}
	assert.LessOrEqual(t, pool.Stats().DialErrors-before, int64(5), "Gets during the backoff must not dial")
}

// nextEjection returns the next event of events, without its pool's name.
func nextEjection(t *testing.T, events <-chan connpool.EjectionEvent) connpool.EjectionEvent {
	t.Helper()
	select {
	case ev := <-events:
		ev.Pool = ""
		return ev
	case <-time.After(waitFor):
		t.Fatal("no ejection event")
		return connpool.EjectionEvent{}
	}
}

// TestEjectionEventComesBeforeTheClosesItCauses: an address's
// AddressEjected event comes before the ConnClosed events of reason
// CloseEjected of its conns, as a Reset's PoolReset comes before the
// closes it causes. A hook chained ahead of the recorder holds the
// ejection's event until a close could overtake it. Regression: the
// ejection closed the address's idle conns at once on a goroutine of its
// own, while the maintainer emitted the event later.
func TestEjectionEventComesBeforeTheClosesItCauses(t *testing.T) {
	b := startBackends(t, 3)
	replaceWithFlaky(t, b, b.ips[1])
	var mu sync.Mutex
	var order []string
	closing := make(chan struct{}, 1)
	ahead := connpool.Hooks{AddressEjected: func(e connpool.EjectionEvent) {
		if e.Ejected {
			select { // a close of the ejection overtakes the event here, if it can
			case <-closing:
			case <-time.After(200 * time.Millisecond):
			}
		}
	}}
	recorder := connpool.Hooks{
		AddressEjected: func(e connpool.EjectionEvent) {
			mu.Lock()
			defer mu.Unlock()
			order = append(order, fmt.Sprint("ejected ", e.Ejected))
		},
		ConnClosed: func(e connpool.ConnClosedEvent) {
			if e.Reason != connpool.CloseEjected {
				return
			}
			mu.Lock()
			order = append(order, "closed")
			mu.Unlock()
			select {
			case closing <- struct{}{}:
			default:
			}
		},
	}
	pool := ejectingPool(t, b, connpool.OutlierEjection{Consecutive: 1, FailureRate: -1, BaseEjectionTime: time.Minute},
		ahead.Chain(recorder))
	round(t, pool, 3) // an idle conn at each address
	require.Empty(t, ejectedAddrs(pool))
	round(t, pool, 6)
	require.Equal(t, []string{b.addr(b.ips[1])}, ejectedAddrs(pool))
	require.Eventually(t, func() bool { return pool.Stats().EjectedClosed > 0 }, waitFor, tick, "no conn closed for the ejection")
	require.NoError(t, pool.Close())
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, order)
	assert.Equal(t, "ejected true", order[0], "the ejection's event comes first: %v", order)
	assert.Equal(t, int(pool.Stats().EjectedClosed), len(order)-1, "a ConnClosed for each close: %v", order)
}
