package connpool_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/internal/testserver"
)

// The tests of resolve.go: a pool of a host name against echo servers on
// 127.0.0.2, 127.0.0.3, ... (on Linux all of 127/8 is on lo), one port
// for all, behind a fake resolver.

// backends is a set of echo servers on one port, one per loopback IP.
type backends struct {
	port string
	srvs map[netip.Addr]*testserver.Server
	ips  []netip.Addr
}

// startBackends starts n echo servers on 127.0.0.2 to 127.0.0.(n+1), on
// a port free on all of them, closed at the end of the test.
func startBackends(t testing.TB, n int) *backends {
	t.Helper()
	for range 20 {
		b := &backends{srvs: make(map[netip.Addr]*testserver.Server)}
		ok := true
		for i := range n {
			ip := netip.AddrFrom4([4]byte{127, 0, 0, byte(i + 2)})
			srv, err := testserver.StartAt(net.JoinHostPort(ip.String(), b.portOr0()))
			if err != nil {
				ok = false
				break
			}
			if b.port == "" {
				_, b.port, _ = net.SplitHostPort(srv.Addr())
			}
			b.srvs[ip] = srv
			b.ips = append(b.ips, ip)
		}
		if ok {
			t.Cleanup(b.close)
			return b
		}
		b.close() // the port was taken on a later IP: try another
	}
	t.Fatal("no port free on every loopback address")
	return nil
}

func (b *backends) portOr0() string {
	if b.port == "" {
		return "0"
	}
	return b.port
}

func (b *backends) close() {
	for _, s := range b.srvs {
		s.Close()
	}
}

// name is the host:port the pools dial: a name only the fake resolver
// knows.
func (b *backends) name() string { return net.JoinHostPort("svc.test", b.port) }

func (b *backends) addr(ip netip.Addr) string { return net.JoinHostPort(ip.String(), b.port) }

// open returns the conns open at each server's end.
func (b *backends) open() []int {
	out := make([]int, len(b.ips))
	for i, ip := range b.ips {
		out[i] = b.srvs[ip].Open()
	}
	return out
}

// fakeResolver answers with the set it is given, or its error, and counts
// the lookups.
type fakeResolver struct {
	mu    sync.Mutex
	ips   []netip.Addr
	err   error
	calls atomic.Int64
}

func newFakeResolver(ips ...netip.Addr) *fakeResolver { return &fakeResolver{ips: ips} }

func (r *fakeResolver) set(ips ...netip.Addr) {
	r.mu.Lock()
	r.ips, r.err = ips, nil
	r.mu.Unlock()
}

func (r *fakeResolver) fail(err error) {
	r.mu.Lock()
	r.err = err
	r.mu.Unlock()
}

func (r *fakeResolver) LookupNetIP(_ context.Context, _, _ string) ([]netip.Addr, error) {
	r.calls.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ips), r.err
}

// resolvedEvents returns hooks that send every Resolved event to the
// channel, never blocking the pool.
func resolvedEvents() (connpool.Hooks, <-chan connpool.ResolveEvent) {
	ch := make(chan connpool.ResolveEvent, 1024)
	return connpool.Hooks{Resolved: func(e connpool.ResolveEvent) {
		select {
		case ch <- e:
		default:
		}
	}}, ch
}

// awaitResolve waits for a Resolved event that f accepts.
func awaitResolve(t *testing.T, ch <-chan connpool.ResolveEvent, f func(connpool.ResolveEvent) bool) connpool.ResolveEvent {
	t.Helper()
	timeout := time.After(waitFor)
	for {
		select {
		case e := <-ch:
			if f(e) {
				return e
			}
		case <-timeout:
			t.Fatal("no such Resolved event")
		}
	}
}

func remoteIP(t *testing.T, c net.Conn) netip.Addr {
	t.Helper()
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	require.NoError(t, err)
	return ap.Addr()
}

func addressStats(s connpool.Stats, addr string) (connpool.AddressStats, bool) {
	for _, a := range s.Addresses {
		if a.Address == addr {
			return a, true
		}
	}
	return connpool.AddressStats{}, false
}

// TestResolveSpreadsConnsEvenly: three records, thirty conns, ten at each
// server, whether the Gets come one by one or all at once; each conn's
// RemoteAddr is the server it reached.
func TestResolveSpreadsConnsEvenly(t *testing.T) {
	for _, concurrent := range []bool{false, true} {
		t.Run(fmt.Sprintf("concurrent=%v", concurrent), func(t *testing.T) {
			b := startBackends(t, 3)
			r := newFakeResolver(b.ips...)
			p := newPool(t, b.name(), connpool.WithResolver(r), connpool.WithMaxConns(30))
			stop := watchLedger(t, p)
			conns := make([]*connpool.Conn, 30)
			if concurrent {
				errs := make(chan error, len(conns))
				var wg sync.WaitGroup
				for i := range conns {
					wg.Go(func() {
						c, err := p.Get(context.Background())
						conns[i] = c
						errs <- err
					})
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					require.NoError(t, err)
				}
			} else {
				conns = holdAll(t, p, len(conns))
			}
			perIP := map[netip.Addr]int{}
			for _, c := range conns {
				mustRoundTrip(t, c, "hello")
				ip := remoteIP(t, c)
				perIP[ip]++
				assert.Equal(t, ip.String(), c.Unwrap().RemoteAddr().(*net.TCPAddr).IP.String(), "RemoteAddr is where the socket goes")
			}
			for _, ip := range b.ips {
				assert.Equal(t, 10, perIP[ip], "conns to %v", ip)
			}
			require.Eventually(t, func() bool { return slices.Equal(b.open(), []int{10, 10, 10}) }, waitFor, tick)
			st := p.Stats()
			require.Len(t, st.Addresses, 3)
			for i, a := range st.Addresses {
				assert.Equal(t, b.addr(b.ips[i]), a.Address)
				assert.Equal(t, 10, a.Open)
				assert.Equal(t, 10, a.InUse)
				assert.Equal(t, int64(10), a.Dials)
				assert.False(t, a.Draining)
			}
			for _, c := range conns {
				require.NoError(t, c.Close())
			}
			stop()
		})
	}
}

// addressRecorder dials as a net.Dialer does, to the address asked for or
// to to if set, and records the addresses asked for.
type addressRecorder struct {
	to string

	mu    sync.Mutex // guards asked
	asked []string
}

func (d *addressRecorder) dial(ctx context.Context, network, address string) (net.Conn, error) {
	d.mu.Lock()
	d.asked = append(d.asked, address)
	d.mu.Unlock()
	var nd net.Dialer
	return nd.DialContext(ctx, network, cmp.Or(d.to, address))
}

// addresses returns the addresses asked for so far.
func (d *addressRecorder) addresses() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.asked)
}

// TestIPLiteralIsNotResolved: an IP literal is dialed as given; the
// resolver is never asked, and Stats has no per-address entries.
func TestIPLiteralIsNotResolved(t *testing.T) {
	srv := startServer(t)
	r := newFakeResolver()
	var d addressRecorder
	p := newPool(t, srv.Addr(), connpool.WithResolver(r), connpool.WithResolveInterval(time.Millisecond), connpool.WithDialer(d.dial))
	c := getConn(t, p)
	mustRoundTrip(t, c, "x")
	assert.Equal(t, srv.Addr(), c.RemoteAddr().String())
	require.NoError(t, c.Close())
	assert.Zero(t, r.calls.Load())
	assert.Equal(t, []string{srv.Addr()}, d.addresses())
	assert.Nil(t, p.Stats().Addresses)
}

// TestOwnDialerSeesTheNameAsGiven: a pool with its own dialer and no
// WithResolver, or with WithResolver(nil), does not resolve, so the
// dialer sees the host name, as one through a proxy or a TLS dialer that
// verifies the name must; given WithResolver too, it is handed ip:port.
func TestOwnDialerSeesTheNameAsGiven(t *testing.T) {
	srv := startServer(t)
	host, port, err := net.SplitHostPort(srv.Addr())
	require.NoError(t, err)
	name := net.JoinHostPort("backend.test", port)
	for _, tc := range []struct {
		name string
		opts []connpool.Option
		want string
	}{
		{"no WithResolver", nil, name},
		{"WithResolver(nil)", []connpool.Option{connpool.WithResolver(nil)}, name},
		{"WithResolver", []connpool.Option{connpool.WithResolver(newFakeResolver(netip.MustParseAddr(host)))}, srv.Addr()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := addressRecorder{to: srv.Addr()} // the proxy's part
			opts := append([]connpool.Option{connpool.WithDialer(d.dial), connpool.WithMinIdle(0)}, tc.opts...)
			p := newPool(t, name, opts...)
			for range 3 {
				c := getConn(t, p)
				mustRoundTrip(t, c, "x")
				c.MarkUnusable()
				require.NoError(t, c.Close())
			}
			assert.Equal(t, []string{tc.want, tc.want, tc.want}, d.addresses())
			if tc.want == name {
				s := p.Stats()
				assert.Nil(t, s.Addresses)
				assert.Zero(t, s.Resolves+s.ResolveErrors)
			}
		})
	}
}

// TestResolveDialsIPPortThroughTheDialer: the dialer is asked for the
// picked "ip:port", and the dial, Get, Put and close events name it.
func TestResolveDialsIPPortThroughTheDialer(t *testing.T) {
	b := startBackends(t, 2)
	var d addressRecorder
	var mu sync.Mutex
	var started, closed, got, put []string
	hooks := connpool.Hooks{
		DialStarted: func(e connpool.DialStartedEvent) { mu.Lock(); started = append(started, e.Address); mu.Unlock() },
		ConnClosed:  func(e connpool.ConnClosedEvent) { mu.Lock(); closed = append(closed, e.Address); mu.Unlock() },
		GetDone:     func(e connpool.GetDoneEvent) { mu.Lock(); got = append(got, e.Address); mu.Unlock() },
		Put:         func(e connpool.PutEvent) { mu.Lock(); put = append(put, e.Address); mu.Unlock() },
	}
	p, err := connpool.New("tcp", b.name(), connpool.WithResolver(newFakeResolver(b.ips...)), connpool.WithDialer(d.dial), connpool.WithHooks(hooks))
	require.NoError(t, err)
	conns := holdAll(t, p, 2)
	for _, c := range conns {
		require.NoError(t, c.Close())
	}
	require.NoError(t, p.Close())
	want := []string{b.addr(b.ips[0]), b.addr(b.ips[1])}
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, want, d.addresses())
	assert.Equal(t, want, started)
	assert.Equal(t, want, got)
	assert.Equal(t, want, put)
	assert.ElementsMatch(t, want, closed)
}

// TestResolveDrainsRemovedAddress: when an address leaves the set, its
// idle conns close at the resolve that saw it go (within an interval),
// no Get is handed a conn to it after that, and a borrowed one closes
// when it comes back.
func TestResolveDrainsRemovedAddress(t *testing.T) {
	const interval = 40 * time.Millisecond
	b := startBackends(t, 3)
	r := newFakeResolver(b.ips...)
	hooks, resolved := resolvedEvents()
	p := newPool(t, b.name(), connpool.WithResolver(r), connpool.WithResolveInterval(interval),
		connpool.WithMaxConns(9), connpool.WithRebalanceRate(0), connpool.WithHooks(hooks))
	stop := watchLedger(t, p)
	conns := holdAll(t, p, 9)
	gone := b.ips[2]
	var kept *connpool.Conn // one conn to the address removed, held across the change
	for _, c := range conns {
		if kept == nil && remoteIP(t, c) == gone {
			kept = c
			continue
		}
		require.NoError(t, c.Close())
	}
	require.NotNil(t, kept)
	require.Eventually(t, func() bool { return slices.Equal(b.open(), []int{3, 3, 3}) }, waitFor, tick)

	// "Within an interval" is counted in lookups, not read off a clock
	// that a loaded machine stretches: the removal is seen by the first
	// lookup that starts after the change, after at most the one that
	// was in flight.
	for len(resolved) > 0 {
		<-resolved // lookups done before the change
	}
	changed := time.Now()
	r.set(b.ips[:2]...)
	before := 0
	ev := awaitResolve(t, resolved, func(e connpool.ResolveEvent) bool {
		if len(e.Removed) > 0 {
			return true
		}
		before++
		return false
	})
	seen := time.Since(changed)
	assert.Equal(t, []string{b.addr(gone)}, ev.Removed)
	assert.Equal(t, []string{b.addr(b.ips[0]), b.addr(b.ips[1])}, ev.Addresses)
	t.Logf("removal seen %v after the change (interval %v), after %d lookups", seen, interval, before)
	assert.LessOrEqual(t, before, 1, "seen by the first lookup after the change")
	// The idle conns to it were closed before the event: only the
	// borrowed one is left.
	require.Eventually(t, func() bool { return b.srvs[gone].Open() == 1 }, waitFor, tick)
	st := p.Stats()
	assert.Equal(t, int64(2), st.AddressRemovedClosed)
	a, ok := addressStats(st, b.addr(gone))
	require.True(t, ok, "a removed address with a borrowed conn is listed")
	assert.True(t, a.Draining)
	assert.Equal(t, 1, a.InUse)

	for range 50 { // no Get is handed a conn to it any more, idle or new
		held := holdAll(t, p, 8)
		for _, c := range held {
			assert.NotEqual(t, gone, remoteIP(t, c))
			mustRoundTrip(t, c, "ping")
		}
		for _, c := range held {
			require.NoError(t, c.Close())
		}
	}
	mustRoundTrip(t, kept, "still works while borrowed")
	require.NoError(t, kept.Close())
	require.Eventually(t, func() bool { return b.srvs[gone].Open() == 0 }, waitFor, tick)
	st = p.Stats()
	assert.Equal(t, int64(3), st.AddressRemovedClosed)
	_, ok = addressStats(st, b.addr(gone))
	assert.False(t, ok, "a drained address is forgotten")
	checkBooks(t, st)
	stop()
}

// TestResolveRebalancesToNewAddress: a record is added; conns move to it
// until the addresses are within one conn of each other, in at most
// ceil(n/k) intervals, never more than k per interval, and the pool keeps
// its size.
func TestResolveRebalancesToNewAddress(t *testing.T) {
	for _, k := range []int{1, 3} {
		t.Run(fmt.Sprintf("rate=%d", k), func(t *testing.T) {
			const interval, n = 50 * time.Millisecond, 12
			b := startBackends(t, 3)
			r := newFakeResolver(b.ips[:2]...)
			var mu sync.Mutex
			var retiredAt []time.Time
			hooks := connpool.Hooks{ConnClosed: func(e connpool.ConnClosedEvent) {
				if e.Reason == connpool.CloseRebalanced {
					mu.Lock()
					retiredAt = append(retiredAt, time.Now())
					mu.Unlock()
				}
			}}
			p := newPool(t, b.name(), connpool.WithResolver(r), connpool.WithResolveInterval(interval),
				connpool.WithMaxConns(n), connpool.WithMinIdle(n), connpool.WithRebalanceRate(k), connpool.WithHooks(hooks))
			stop := watchLedger(t, p)
			require.Eventually(t, func() bool { return slices.Equal(b.open(), []int{6, 6, 0}) }, waitFor, tick)

			added := time.Now()
			r.set(b.ips...)
			require.Eventually(t, func() bool { return slices.Equal(b.open(), []int{4, 4, 4}) }, waitFor, tick)

			mu.Lock()
			defer mu.Unlock()
			require.Len(t, retiredAt, 4, "the conns moved, no more")
			// Timed to the last retirement, not to the balance the test
			// polls for: the replacement dials are not the rounds' pace.
			took := retiredAt[len(retiredAt)-1].Sub(added)
			bound := time.Duration((n+k-1)/k) * interval
			t.Logf("last conn retired after %v (bound %v)", took, bound)
			assert.LessOrEqual(t, took, bound+interval+200*time.Millisecond,
				"within ceil(n/k) intervals, the one that finds the record, and some slack for a loaded machine")
			for i := 0; i+k < len(retiredAt); i++ {
				// Rounds are an interval apart; the closes of one round
				// may lag it a little on a busy machine.
				assert.GreaterOrEqual(t, retiredAt[i+k].Sub(retiredAt[i]), interval/2, "more than %d retired in an interval", k)
			}
			st := p.Stats()
			assert.Equal(t, int64(4), st.RebalancedClosed)
			assert.Equal(t, n, st.OpenConns+st.Dialing)
			stop()
		})
	}
}

// borrowAllThenAddAddress returns a pool of two backends' name that
// resolves every interval and may retire all its 4 conns a round, with
// all 4 borrowed while the name resolved to the first backend alone, and
// the second backend's address added to the name since.
func borrowAllThenAddAddress(t *testing.T, interval time.Duration) (*backends, *connpool.Pool, []*connpool.Conn) {
	t.Helper()
	b := startBackends(t, 2)
	r := newFakeResolver(b.ips[0])
	p := newPool(t, b.name(), connpool.WithResolver(r), connpool.WithResolveInterval(interval),
		connpool.WithMaxConns(4), connpool.WithRebalanceRate(4))
	conns := holdAll(t, p, 4)
	r.set(b.ips...)
	return b, p, conns
}

// TestResolveRebalanceRetiresBorrowedOnReturn: with every conn borrowed,
// a rebalance flags the conns it retires and closes them when they come
// back; their replacements go to the new address.
func TestResolveRebalanceRetiresBorrowedOnReturn(t *testing.T) {
	const interval = 30 * time.Millisecond
	b, p, conns := borrowAllThenAddAddress(t, interval)
	require.Eventually(t, func() bool { return p.Stats().Resolves >= 2 && len(p.Stats().Addresses) == 2 }, waitFor, tick)
	// The round after the change flags two of the four.
	require.Eventually(t, func() bool {
		for _, c := range conns {
			require.NoError(t, c.Close())
		}
		conns = holdAll(t, p, 4)
		return slices.Equal(b.open(), []int{2, 2})
	}, waitFor, interval)
	for _, c := range conns {
		require.NoError(t, c.Close())
	}
	assert.Equal(t, int64(2), p.Stats().RebalancedClosed)
}

// TestDialForWaiterAfterCloseGoesToTheEmptiedAddress: a conn that closes
// while a Get waits frees its permit, and the dial started for the waiter
// goes to the address that lost the conn. The close used to start that
// dial before taking the conn off its address's count, so the picker saw
// both addresses full and sent it by set order, leaving them 2 and 0.
func TestDialForWaiterAfterCloseGoesToTheEmptiedAddress(t *testing.T) {
	b := startBackends(t, 2)
	r := newFakeResolver(b.ips...)
	p := newPool(t, b.name(), connpool.WithResolver(r), connpool.WithMaxConns(2),
		connpool.WithMinIdle(0), connpool.WithRebalanceRate(0))
	for _, ip := range b.ips { // each address in turn loses its conn
		conns := holdAll(t, p, 2)
		require.ElementsMatch(t, []string{b.addr(b.ips[0]), b.addr(b.ips[1])},
			[]string{conns[0].RemoteAddr().String(), conns[1].RemoteAddr().String()})
		got := make(chan *connpool.Conn, 1)
		go func() {
			c, err := p.Get(context.Background())
			assert.NoError(t, err)
			got <- c
		}()
		require.Eventually(t, func() bool { return p.Stats().Waiting == 1 }, waitFor, tick)
		for _, c := range conns {
			if c.RemoteAddr().String() == b.addr(ip) {
				c.MarkUnusable()
				require.NoError(t, c.Close())
			}
		}
		c := <-got
		require.NotNil(t, c)
		assert.Equal(t, b.addr(ip), c.RemoteAddr().String(), "the waiter's dial went to the address that lost a conn")
		for _, c := range append(conns, c) {
			_ = c.Close() // one was closed above: ErrConnReturned
		}
	}
}

// TestRebalanceCountsRetireesNotYetReturned: conns a round retired while
// borrowed are replaced only when they come back; later rounds before
// then count those replacements as made, and retire no more. The pool
// used to retire 3 of 4 conns, for an imbalance that asked for 2, when
// the borrowers held them over two rounds.
func TestRebalanceCountsRetireesNotYetReturned(t *testing.T) {
	const interval = 20 * time.Millisecond
	b, p, conns := borrowAllThenAddAddress(t, interval)
	require.Eventually(t, func() bool { return len(p.Stats().Addresses) == 2 }, waitFor, tick)
	seen := p.Stats().Resolves
	require.Eventually(t, func() bool { return p.Stats().Resolves >= seen+4 }, waitFor, tick, "rounds pass while all four are out")
	for _, c := range conns {
		require.NoError(t, c.Close())
	}
	conns = holdAll(t, p, 4)
	require.Eventually(t, func() bool { return slices.Equal(b.open(), []int{2, 2}) }, waitFor, tick)
	for _, c := range conns {
		require.NoError(t, c.Close())
	}
	assert.Equal(t, int64(2), p.Stats().RebalancedClosed)
}

// TestResolveFailureKeepsLastGoodSet: a failing resolver leaves the pool
// serving the addresses it had, logs once per streak, and a recovery
// takes the new answer.
func TestResolveFailureKeepsLastGoodSet(t *testing.T) {
	const interval = 20 * time.Millisecond
	b := startBackends(t, 2)
	r := newFakeResolver(b.ips...)
	logs := &logRecorder{}
	p := newPool(t, b.name(), connpool.WithResolver(r), connpool.WithResolveInterval(interval),
		connpool.WithMaxConns(4), connpool.WithLogger(slog.New(logs)))
	conns := holdAll(t, p, 4)
	for _, c := range conns {
		require.NoError(t, c.Close())
	}
	r.fail(errors.New("SERVFAIL"))
	require.Eventually(t, func() bool { return p.Stats().ResolveErrors >= 3 }, waitFor, tick)
	st := p.Stats()
	require.Len(t, st.Addresses, 2)
	for i := range 20 {
		c := getConn(t, p)
		mustRoundTrip(t, c, "still served")
		require.NoError(t, c.Close())
		if i%2 == 0 { // and new dials go to the last good set
			c = getConn(t, p)
			c.MarkUnusable()
			require.NoError(t, c.Close())
		}
	}
	assert.Equal(t, 1, logs.count(slog.LevelWarn, "connpool: resolve failed"), "one warning per streak")

	r.set(b.ips[1])
	require.Eventually(t, func() bool { return len(p.Stats().Addresses) == 1 }, waitFor, tick)
	assert.Equal(t, 1, logs.count(slog.LevelInfo, "connpool: resolve recovered"))
	r.fail(errors.New("SERVFAIL again"))
	require.Eventually(t, func() bool { return logs.count(slog.LevelWarn, "connpool: resolve failed") == 2 }, waitFor, tick)
}

// TestResolveFailsFirstDialsAddressAsGiven: before any lookup succeeds,
// the pool dials the name as given, through its dialer.
func TestResolveFailsFirstDialsAddressAsGiven(t *testing.T) {
	srv := startServer(t)
	_, port, _ := net.SplitHostPort(srv.Addr())
	name := net.JoinHostPort("svc.test", port)
	dial := func(ctx context.Context, network, address string) (net.Conn, error) {
		if address != name {
			return nil, fmt.Errorf("dialed %s", address)
		}
		var d net.Dialer
		return d.DialContext(ctx, network, srv.Addr()) // the dialer's own resolving
	}
	r := newFakeResolver()
	r.fail(errors.New("NXDOMAIN"))
	p := newPool(t, name, connpool.WithResolver(r), connpool.WithDialer(dial))
	c := getConn(t, p)
	mustRoundTrip(t, c, "as given")
	require.NoError(t, c.Close())
	st := p.Stats()
	require.Len(t, st.Addresses, 1)
	assert.Equal(t, name, st.Addresses[0].Address)
}

// TestOneBackendRefusesDials: one of three backends goes away; once its
// conns are gone, Gets keep succeeding on the other two, with no error a
// caller sees, while its address backs off.
func TestOneBackendRefusesDials(t *testing.T) {
	b := startBackends(t, 3)
	r := newFakeResolver(b.ips...)
	p := newPool(t, b.name(), connpool.WithResolver(r), connpool.WithMaxConns(6),
		connpool.WithDialBackoff(5*time.Millisecond, 20*time.Millisecond))
	stop := watchLedger(t, p)
	for _, c := range holdAll(t, p, 6) {
		require.NoError(t, c.Close())
	}
	down := b.ips[1]
	require.NoError(t, b.srvs[down].Close()) // closes its conns; dials to it are refused
	// Its idle conns go: the checkout peek finds each dead and has the
	// maintainer sweep the rest (a request on one whose FIN is still on
	// its way may fail: that is before the bar).
	for deadline := time.Now().Add(waitFor); ; {
		a, _ := addressStats(p.Stats(), b.addr(down))
		if a.Open == 0 {
			break
		}
		require.True(t, time.Now().Before(deadline), "its conns never went")
		for _, c := range holdAll(t, p, 6) { // every idle conn is checked out
			if _, err := roundTrip(c, "x"); err != nil {
				c.MarkUnusable()
			}
			require.NoError(t, c.Close())
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 6 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for i := range 100 {
				c, err := p.Get(context.Background())
				if err != nil {
					errs <- fmt.Errorf("get %d: %w", i, err)
					return
				}
				if got, err := roundTrip(c, "x"); err != nil || got != "x" {
					errs <- fmt.Errorf("request %d: %q, %v", i, got, err)
				}
				if rng.IntN(3) == 0 {
					c.MarkUnusable() // so that new dials keep coming, to all three
				}
				_ = c.Close()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
	st := p.Stats()
	a, ok := addressStats(st, b.addr(down))
	require.True(t, ok)
	assert.Positive(t, a.DialErrors, "its dials were tried, and failed")
	assert.Zero(t, a.Open)
	var served int64
	for _, a := range st.Addresses {
		served += a.Dials
	}
	assert.Equal(t, st.Dials, served)
	stop()
}

// TestEveryAddressBackingOffFailsFast: when every address refuses, a Get
// that must dial fails, and the next fails at once with the backoff.
func TestEveryAddressBackingOffFailsFast(t *testing.T) {
	b := startBackends(t, 2)
	r := newFakeResolver(b.ips...)
	b.close()
	p := newPool(t, b.name(), connpool.WithResolver(r), connpool.WithDialBackoff(time.Second, 2*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	_, err := p.Get(ctx)
	require.Error(t, err)
	assert.NotErrorIs(t, err, context.DeadlineExceeded)
	start := time.Now()
	_, err = p.Get(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "retrying in")
	assert.Less(t, time.Since(start), 500*time.Millisecond, "fails fast")
	for _, a := range p.Stats().Addresses {
		assert.True(t, a.BackingOff, a.Address)
		assert.Equal(t, int64(1), a.DialErrors, a.Address)
	}
}

// TestResolveGroupAndDialContext: a Group keys its pool by the name the
// client asked for, and DialContext checks the address against the name.
func TestResolveGroupAndDialContext(t *testing.T) {
	b := startBackends(t, 2)
	r := newFakeResolver(b.ips...)
	g, err := connpool.NewGroup(connpool.WithResolver(r))
	require.NoError(t, err)
	t.Cleanup(func() { _ = g.Close() })
	var conns []net.Conn
	for range 4 {
		c, err := g.DialContext(context.Background(), "tcp", b.name())
		require.NoError(t, err)
		mustRoundTrip(t, c, "via group")
		conns = append(conns, c)
	}
	st := g.Stats()
	require.Len(t, st, 1)
	s, ok := st[connpool.Addr{Network: "tcp", Address: b.name()}]
	require.True(t, ok, "keyed by the name")
	require.Len(t, s.Addresses, 2)
	assert.Equal(t, 2, s.Addresses[0].Open)
	assert.Equal(t, 2, s.Addresses[1].Open)
	for _, c := range conns {
		require.NoError(t, c.Close())
	}

	p := newPool(t, b.name(), connpool.WithResolver(r))
	c, err := p.DialContext(context.Background(), "tcp", b.name())
	require.NoError(t, err)
	require.NoError(t, c.Close())
	_, err = p.DialContext(context.Background(), "tcp", b.addr(b.ips[0]))
	assert.ErrorIs(t, err, connpool.ErrWrongAddress, "an address of the set is not the pool's address")
}

// TestResolveNetworkFiltersFamilies: tcp4 keeps the IPv4 answers, mapped
// ones unmapped; duplicates count once.
func TestResolveNetworkFiltersFamilies(t *testing.T) {
	b := startBackends(t, 1)
	var network atomic.Value
	r := connpool.ResolverFunc(func(_ context.Context, nw, _ string) ([]netip.Addr, error) {
		network.Store(nw)
		return []netip.Addr{netip.MustParseAddr("::1"), netip.MustParseAddr("::ffff:127.0.0.2"), b.ips[0]}, nil
	})
	p, err := connpool.New("tcp4", b.name(), connpool.WithResolver(r))
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	c, err := p.Get(context.Background())
	require.NoError(t, err)
	require.NoError(t, c.Close())
	assert.Equal(t, "ip4", network.Load())
	st := p.Stats()
	require.Len(t, st.Addresses, 1)
	assert.Equal(t, b.addr(b.ips[0]), st.Addresses[0].Address)
}

// TestResolveStress flips the record set at random while goroutines Get,
// use and return conns; the ledger holds throughout, every reply is the
// request's own, and after Close nothing is open at any server.
func TestResolveStress(t *testing.T) {
	if testing.Short() {
		t.Skip("stress test")
	}
	b := startBackends(t, 4)
	r := newFakeResolver(b.ips[:2]...)
	p, err := connpool.New("tcp", b.name(), connpool.WithResolver(r), connpool.WithResolveInterval(5*time.Millisecond),
		connpool.WithMaxConns(8), connpool.WithMinIdle(2), connpool.WithRebalanceRate(2),
		connpool.WithDialBackoff(time.Millisecond, 5*time.Millisecond))
	require.NoError(t, err)
	stop := watchLedger(t, p)
	deadline := time.Now().Add(time.Second)
	var wg sync.WaitGroup
	var failures atomic.Int64
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 2))
			for i := 0; time.Now().Before(deadline); i++ {
				c, err := p.Get(context.Background())
				if err != nil {
					failures.Add(1)
					continue
				}
				msg := strconv.Itoa(g*1_000_000 + i)
				if got, err := roundTrip(c, msg); err != nil || got != msg {
					failures.Add(1)
				}
				if rng.IntN(10) == 0 {
					c.MarkUnusable()
				}
				_ = c.Close()
			}
		})
	}
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(9, 9))
		for time.Now().Before(deadline) {
			set := slices.Clone(b.ips)
			rng.Shuffle(len(set), func(i, j int) { set[i], set[j] = set[j], set[i] })
			r.set(set[:1+rng.IntN(len(set))]...)
			time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
		}
	})
	wg.Wait()
	stop()
	assert.Zero(t, failures.Load(), "Gets or requests that failed")
	require.NoError(t, p.Close())
	require.NoError(t, p.CheckInvariants())
	st := p.Stats()
	checkBooks(t, st)
	assert.Zero(t, st.OpenConns)
	require.Eventually(t, func() bool { return slices.Equal(b.open(), make([]int, len(b.ips))) }, waitFor, tick)
	t.Logf("%v", st)
}

// TestResolveDialToRemovedAddressServesElsewhere pins the dial in flight
// to an address a resolve removes: its conn is closed as it arrives, and
// the Get it was for is served by a dial to the address that replaced it.
func TestResolveDialToRemovedAddressServesElsewhere(t *testing.T) {
	b := startBackends(t, 2)
	old, replacement := b.ips[0], b.ips[1]
	r := newFakeResolver(old)
	gate := make(chan struct{})
	dialing := make(chan struct{}, 1)
	dial := func(ctx context.Context, network, address string) (net.Conn, error) {
		if address == b.addr(old) {
			dialing <- struct{}{}
			<-gate
		}
		var d net.Dialer
		return d.DialContext(ctx, network, address)
	}
	hooks, resolved := resolvedEvents()
	p := newPool(t, b.name(), connpool.WithResolver(r), connpool.WithResolveInterval(20*time.Millisecond),
		connpool.WithDialer(dial), connpool.WithHooks(hooks))
	got := make(chan *connpool.Conn, 1)
	go func() {
		c, err := p.Get(context.Background())
		assert.NoError(t, err)
		got <- c
	}()
	<-dialing
	r.set(replacement)
	awaitResolve(t, resolved, func(e connpool.ResolveEvent) bool { return len(e.Removed) > 0 })
	close(gate)
	c := <-got
	require.NotNil(t, c)
	assert.Equal(t, replacement, remoteIP(t, c))
	mustRoundTrip(t, c, "served elsewhere")
	require.NoError(t, c.Close())
	require.Eventually(t, func() bool { return p.Stats().AddressRemovedClosed == 1 }, waitFor, tick)
	require.NoError(t, p.CheckInvariants())
}

// BenchmarkGetPutResolved is BenchmarkGetPut's sequential loop on a pool
// of a host name with three addresses: the idle fast path is the same
// code whatever the pool dials.
func BenchmarkGetPutResolved(b *testing.B) {
	bk := startBackends(b, 3)
	p, err := connpool.New("tcp", bk.name(), connpool.WithResolver(newFakeResolver(bk.ips...)),
		connpool.WithMaxConns(3), connpool.WithMinIdle(3), connpool.WithLivenessCheck(false))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	for p.Stats().Idle < 3 {
		runtime.Gosched()
	}
	getPutLoop(b, p)
}

// TestResolveSoonAfterFailedDial: a failed dial brings the next lookup
// forward, to within a tenth of the interval: the address may have moved.
func TestResolveSoonAfterFailedDial(t *testing.T) {
	const interval = 3 * time.Second
	b := startBackends(t, 2)
	r := newFakeResolver(b.ips...)
	require.NoError(t, b.srvs[b.ips[0]].Close()) // dials to it are refused
	hooks, resolved := resolvedEvents()
	p := newPool(t, b.name(), connpool.WithResolver(r), connpool.WithResolveInterval(interval), connpool.WithHooks(hooks))
	awaitResolve(t, resolved, func(connpool.ResolveEvent) bool { return true })
	start := time.Now()
	c := getConn(t, p) // its first dial is refused; it is served by the other address
	assert.Equal(t, b.ips[1], remoteIP(t, c))
	require.NoError(t, c.Close())
	awaitResolve(t, resolved, func(connpool.ResolveEvent) bool { return true })
	assert.Less(t, time.Since(start), interval/2, "the lookup after the failed dial came early")
	assert.Equal(t, int64(2), r.calls.Load())
}

// TestResolveRotatedAnswersChangeNothing: a DNS server that rotates its
// records returns the same set in another order each time; the pool
// neither drains nor rebalances for it.
func TestResolveRotatedAnswersChangeNothing(t *testing.T) {
	b := startBackends(t, 3)
	var turn atomic.Int64
	r := connpool.ResolverFunc(func(context.Context, string, string) ([]netip.Addr, error) {
		n := int(turn.Add(1))
		ips := slices.Clone(b.ips)
		return append(ips[n%3:], ips[:n%3]...), nil
	})
	p := newPool(t, b.name(), connpool.WithResolver(r), connpool.WithResolveInterval(5*time.Millisecond), connpool.WithMaxConns(6))
	for _, c := range holdAll(t, p, 6) {
		require.NoError(t, c.Close())
	}
	require.Eventually(t, func() bool { return turn.Load() > 10 }, waitFor, tick)
	st := p.Stats()
	assert.Zero(t, st.AddressRemovedClosed)
	assert.Zero(t, st.RebalancedClosed)
	assert.Equal(t, int64(6), st.Dials)
	assert.Eventually(t, func() bool { return slices.Equal(b.open(), []int{2, 2, 2}) }, waitFor, tick)
}
