package connpool_test

import (
	"context"
	"fmt"
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
)

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
