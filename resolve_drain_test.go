package connpool_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
)

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
	// The resolve logs after it released mu, which Stats waits for.
	require.Eventually(t, func() bool { return logs.count(slog.LevelInfo, "connpool: resolve recovered") == 1 }, waitFor, tick)
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
