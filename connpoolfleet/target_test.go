package connpoolfleet_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/connpoolfleet"
)

// hold runs n callers that borrow a conn from get for 5ms in a loop until
// the test ends.
func hold(t *testing.T, n int, get func(ctx context.Context) (*connpool.Conn, error)) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for range n {
		wg.Go(func() {
			for ctx.Err() == nil {
				gctx, gcancel := context.WithTimeout(ctx, 100*time.Millisecond)
				c, err := get(gctx)
				gcancel()
				if err != nil {
					continue
				}
				time.Sleep(5 * time.Millisecond)
				_ = c.Close()
			}
		})
	}
}

// TestTwoPoolsOneMember: a member with two pools spreads its grant by their
// demand, one conn at least each, and never opens more than its grant.
func TestTwoPoolsOneMember(t *testing.T) {
	r := startRedis(t)
	srv := startCountServer(t)
	rdb := r.client(t)
	gate := connpoolfleet.NewGate()
	mk := func(id string) *connpool.Pool {
		p, err := connpool.New("tcp", srv.addr(), connpool.WithDialer(gate.Dialer(helloDial(id))),
			connpool.WithDialBackoff(5*time.Millisecond, 20*time.Millisecond))
		require.NoError(t, err)
		t.Cleanup(func() { _ = p.Close() })
		return p
	}
	busy, idle := mk("busy"), mk("idle")
	m, err := connpoolfleet.Join(context.Background(), rdb, "two", 6,
		[]connpoolfleet.Target{connpoolfleet.PoolTarget(busy), connpoolfleet.PoolTarget(idle)},
		connpoolfleet.WithTTL(600*time.Millisecond), connpoolfleet.WithGate(gate))
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Leave(context.Background()) })
	hold(t, 8, busy.Get)
	hold(t, 1, idle.Get)
	eventually(t, func() bool { return busy.Stats().MaxConns >= 4 && m.Stats().Caps == 6 }, "the busy pool did not get most of the grant")
	assert.GreaterOrEqual(t, idle.Stats().MaxConns, 1)
	assert.Equal(t, 6, busy.Stats().MaxConns+idle.Stats().MaxConns)
	_, peak, _ := srv.snapshot()
	assert.LessOrEqual(t, peak, 6)
}

// TestGroupTarget: a Group's cap across its pools follows the grant.
// Regression: the group's dials waiting for a slot counted as open conns
// and held its cap at 1 to 3 of a grant of 4.
func TestGroupTarget(t *testing.T) {
	r := startRedis(t)
	srv := startCountServer(t)
	rdb := r.client(t)
	gate := connpoolfleet.NewGate()
	g, err := connpool.NewGroup(connpool.WithGroupMaxConns(1), connpool.WithDialer(gate.Dialer(helloDial("group"))),
		connpool.WithDialBackoff(5*time.Millisecond, 20*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(func() { _ = g.Close() })
	m, err := connpoolfleet.Join(context.Background(), rdb, "group", 4,
		[]connpoolfleet.Target{connpoolfleet.GroupTarget(g)},
		connpoolfleet.WithTTL(600*time.Millisecond), connpoolfleet.WithGate(gate))
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Leave(context.Background()) })
	hold(t, 8, func(ctx context.Context) (*connpool.Conn, error) { return g.Get(ctx, "tcp", srv.addr()) })
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("member %+v", m.Stats())
			for _, s := range g.Stats() {
				t.Logf("pool %s", s)
			}
		}
	})
	eventually(t, func() bool { return m.Stats().Caps == 4 && srv.total() >= 3 }, "the group's cap did not follow the grant")
	_, peak, _ := srv.snapshot()
	assert.LessOrEqual(t, peak, 4)
}

// TestMemberCountsConnsOverACap: a member of two pools, one holding
// borrowed conns above its lowered cap and the other with room under its
// own, may use the sum of each pool's larger of the two, and the ledger
// counts that much for it: the server never sees more than B. Regression:
// the member reported the sum of its caps and the sum of its open conns
// apart, the ledger counted the larger, and one Get on the pool with room
// took the server to 7 of 6.
func TestMemberCountsConnsOverACap(t *testing.T) {
	r := startRedis(t)
	srv := startCountServer(t)
	rdb := r.client(t)
	const b = 6
	mk := func(gate *connpoolfleet.Gate, id string) *connpool.Pool {
		p, err := connpool.New("tcp", srv.addr(), connpool.WithDialer(gate.Dialer(helloDial(id))),
			connpool.WithDialBackoff(5*time.Millisecond, 20*time.Millisecond))
		require.NoError(t, err)
		t.Cleanup(func() { _ = p.Close() })
		return p
	}
	xGate, yGate := connpoolfleet.NewGate(), connpoolfleet.NewGate()
	roomy, crowded, other := mk(xGate, "roomy"), mk(xGate, "crowded"), mk(yGate, "other")
	x, err := connpoolfleet.Join(context.Background(), rdb, "over", b,
		[]connpoolfleet.Target{connpoolfleet.PoolTarget(roomy), connpoolfleet.PoolTarget(crowded)},
		connpoolfleet.WithTTL(600*time.Millisecond), connpoolfleet.WithGate(xGate))
	require.NoError(t, err)
	t.Cleanup(func() { _ = x.Leave(context.Background()) })
	y, err := connpoolfleet.Join(context.Background(), rdb, "over", b,
		[]connpoolfleet.Target{connpoolfleet.PoolTarget(other)},
		connpoolfleet.WithTTL(600*time.Millisecond), connpoolfleet.WithGate(yGate))
	require.NoError(t, err)
	t.Cleanup(func() { _ = y.Leave(context.Background()) })

	// The crowded pool borrows every conn it may, and keeps them.
	kept := make(chan *connpool.Conn, 16)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		close(kept)
		for c := range kept {
			_ = c.Close()
		}
	})
	for range 10 {
		wg.Go(func() {
			for ctx.Err() == nil {
				gctx, gcancel := context.WithTimeout(ctx, 100*time.Millisecond)
				c, err := crowded.Get(gctx)
				gcancel()
				if err == nil {
					kept <- c
					return
				}
			}
		})
	}
	eventually(t, func() bool { return crowded.Stats().InUse >= 4 }, "the crowded pool did not grow")
	hold(t, 10, other.Get) // the other member gets busy: the crowded pool's cap comes down below its borrowed conns
	eventually(t, func() bool { return x.Stats().Target <= b/2 && crowded.Stats().MaxConns < crowded.Stats().InUse },
		"the crowded pool's cap did not come down")
	renews := y.Stats().Renews
	eventually(t, func() bool { return y.Stats().Renews >= renews+5 }, "the other member did not renew")
	mayUse := func(p *connpool.Pool) int { s := p.Stats(); return max(s.MaxConns, s.OpenConns+s.Dialing) }
	assert.LessOrEqual(t, y.Stats().Grant+mayUse(roomy)+mayUse(crowded), b,
		"the other member's grant and what this one may use exceed B: x %+v, y %+v", x.Stats(), y.Stats())
	c, err := roomy.Get(context.Background()) // the room under the roomy pool's cap
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	assert.Never(t, func() bool { _, peak, _ := srv.snapshot(); return peak > b }, 2*time.Second, 10*time.Millisecond,
		"the server saw more than B: x %+v, y %+v", x.Stats(), y.Stats())
}
