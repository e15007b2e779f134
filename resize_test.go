package connpool_test

import (
	"context"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
)

// getInBackground starts a Get and waits until n Gets are queued; the
// channel yields the conn, or nil on error.
func getInBackground(t *testing.T, p *connpool.Pool, ctx context.Context, n int) <-chan *connpool.Conn {
	t.Helper()
	got := make(chan *connpool.Conn, 1)
	go func() {
		c, err := p.Get(ctx)
		if err != nil {
			c = nil
		}
		got <- c
	}()
	require.Eventually(t, waitersAre(p, n), waitFor, tick)
	return got
}

// TestSetMaxConnsGrowServesTheQueueInOrder: raising the cap serves the
// queued Gets at once, first come first served, before a later one.
func TestSetMaxConnsGrowServesTheQueueInOrder(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(1))
	held := holdAll(t, p, 1)[0]
	ctx := context.Background()
	a := getInBackground(t, p, ctx, 1)
	b := getInBackground(t, p, ctx, 2)
	c := getInBackground(t, p, ctx, 3)

	require.NoError(t, p.SetMaxConns(3))
	ca, cb := <-a, <-b
	require.NotNil(t, ca)
	require.NotNil(t, cb)
	assert.Equal(t, 1, p.Stats().Waiting, "the third still waits: the cap is full")
	d := getInBackground(t, p, ctx, 2) // a later Get queues behind the third

	require.NoError(t, held.Close())
	cc := <-c
	require.NotNil(t, cc, "the returned conn goes to the first in the queue")
	require.NoError(t, ca.Close())
	cd := <-d
	require.NotNil(t, cd)
	for _, conn := range []*connpool.Conn{cb, cc, cd} {
		require.NoError(t, conn.Close())
	}
	st := p.Stats()
	assert.Equal(t, 3, st.MaxConns)
	assert.LessOrEqual(t, srv.MaxOpen(), 3)
	checkBooks(t, st)
}

// TestSetMaxConnsShrink: lowering the cap closes idle conns at once,
// leaves borrowed ones working, and closes them as they come back until
// the pool is within the cap.
func TestSetMaxConnsShrink(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(4))
	conns := holdAll(t, p, 4)
	require.NoError(t, conns[0].Close())
	require.NoError(t, conns[1].Close())

	require.NoError(t, p.SetMaxConns(1))
	st := p.Stats()
	assert.Equal(t, int64(2), st.ResizedClosed, "the idle conns closed at once")
	assert.Equal(t, 2, st.OpenConns)
	require.NoError(t, p.CheckInvariants())

	mustRoundTrip(t, conns[2], "a borrowed conn is never interrupted")
	require.NoError(t, conns[2].Close())
	assert.Equal(t, int64(3), p.Stats().ResizedClosed, "closed on return while over the cap")
	require.NoError(t, conns[3].Close())
	st = p.Stats()
	assert.Equal(t, int64(3), st.ResizedClosed, "within the cap again: kept")
	assert.Equal(t, 1, st.Idle)
	assert.Equal(t, 1, st.MaxIdle, "a default MaxIdle follows the cap")
	checkBooks(t, st)
	require.NoError(t, p.CheckInvariants())
}

// TestSetMaxConnsShrinkWithDialsInFlight: a dial that finishes while the
// pool is over a lowered cap serves its waiter, or, with no waiter left,
// is closed.
func TestSetMaxConnsShrinkWithDialsInFlight(t *testing.T) {
	srv := startServer(t)
	gate := newGatedDialer()
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(3), connpool.WithDialer(gate.dial))
	close(gate.release)
	held := holdAll(t, p, 1)[0]
	gate.release = make(chan struct{}) // the next dials wait

	served := getInBackground(t, p, context.Background(), 1)
	gone, leave := context.WithCancel(context.Background())
	left := getInBackground(t, p, gone, 2)
	require.Eventually(t, func() bool { return gate.inFlight.Load() == 2 }, waitFor, tick)
	leave()
	require.Nil(t, <-left)

	require.NoError(t, p.SetMaxConns(1)) // 3 open or dialing, cap 1
	close(gate.release)
	c := <-served
	require.NotNil(t, c, "the dial for a waiter serves it, over the cap or not")
	require.Eventually(t, func() bool { s := p.Stats(); return s.Dialing == 0 && s.ResizedClosed > 0 }, waitFor, tick,
		"the dial nobody waits for is closed")
	st := p.Stats()
	assert.Equal(t, int64(1), st.ResizedClosed)
	require.NoError(t, p.CheckInvariants())
	require.NoError(t, c.Close())
	require.NoError(t, held.Close())
	st = p.Stats()
	assert.Equal(t, 1, st.OpenConns)
	checkBooks(t, st)
}

// TestSetMaxConnsBoundsASetMaxIdle pins issue 22: after one SetMaxIdle,
// MaxIdle no longer followed MaxConns and a later SetMaxConns below it
// failed. Now a MaxIdle that was set acts as MaxConns while MaxConns is
// lower, and is back in force when MaxConns is raised above it; one left
// to its default follows MaxConns.
func TestSetMaxConnsBoundsASetMaxIdle(t *testing.T) {
	p := newPool(t, "127.0.0.1:1", connpool.WithMaxConns(4))
	require.NoError(t, p.SetMaxConns(6))
	assert.Equal(t, 6, p.Stats().MaxIdle, "a default MaxIdle follows MaxConns")
	require.NoError(t, p.SetMaxIdle(3))
	require.NoError(t, p.SetMaxConns(2), "a lower MaxConns bounds MaxIdle instead of failing")
	st := p.Stats()
	assert.Equal(t, []int{2, 2}, []int{st.MaxConns, st.MaxIdle})
	require.NoError(t, p.CheckInvariants())
	require.NoError(t, p.SetMaxConns(8))
	st = p.Stats()
	assert.Equal(t, []int{8, 3}, []int{st.MaxConns, st.MaxIdle}, "the MaxIdle that was set is back")

	q := newPool(t, "127.0.0.1:1", connpool.WithMaxConns(4), connpool.WithMaxIdle(3))
	require.NoError(t, q.SetMaxConns(1), "WithMaxIdle composes the same way")
	assert.Equal(t, 1, q.Stats().MaxIdle)
	require.NoError(t, q.SetMaxConns(5))
	assert.Equal(t, 3, q.Stats().MaxIdle)
}

func TestResizeValidates(t *testing.T) {
	p := newPool(t, "127.0.0.1:1", connpool.WithMaxConns(4), connpool.WithMinIdle(0))
	require.NoError(t, p.SetMinIdle(2))
	require.NoError(t, p.SetMaxIdle(3))
	for _, tc := range []struct {
		err  error
		want string
	}{
		{p.SetMaxConns(0), "SetMaxConns(0)"},
		{p.SetMaxConns(1), "SetMaxConns(1) is below MinIdle (2): lower it first with SetMinIdle"},
		{p.SetMinIdle(-1), "SetMinIdle(-1)"},
		{p.SetMinIdle(4), "SetMinIdle(4)"},
		{p.SetMaxIdle(1), "SetMaxIdle(1)"},
		{p.SetMaxIdle(5), "SetMaxIdle(5)"},
	} {
		require.ErrorIs(t, tc.err, connpool.ErrInvalidOption)
		assert.ErrorContains(t, tc.err, tc.want)
	}
	st := p.Stats()
	assert.Equal(t, []int{4, 2, 3}, []int{st.MaxConns, st.MinIdle, st.MaxIdle}, "bad values change nothing")
	require.NoError(t, p.Close())
	assert.ErrorIs(t, p.SetMaxConns(8), connpool.ErrClosed)
	assert.ErrorIs(t, p.SetMinIdle(1), connpool.ErrClosed)
	assert.ErrorIs(t, p.SetMaxIdle(1), connpool.ErrClosed)
}

// TestSetMinIdleAndMaxIdle: a larger MinIdle warms at once; a smaller
// MaxIdle closes the idle conns beyond it.
func TestSetMinIdleAndMaxIdle(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(4))
	require.NoError(t, p.SetMinIdle(3))
	require.NoError(t, p.WaitReady(context.Background()))
	assert.Equal(t, 3, p.Stats().Idle)
	require.NoError(t, p.SetMinIdle(1))
	require.NoError(t, p.SetMaxIdle(1))
	st := p.Stats()
	assert.Equal(t, 1, st.Idle)
	assert.Equal(t, int64(2), st.MaxIdleClosed)
	checkBooks(t, st)
}

// TestResizeStress resizes a busy pool at random, with faults, and holds
// it to the ledger throughout and to the largest cap at the server.
func TestResizeStress(t *testing.T) {
	if testing.Short() {
		t.Skip("stress")
	}
	srv := startServer(t)
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(4), connpool.WithDialBackoff(time.Millisecond, 2*time.Millisecond))
	stopWatch := watchLedger(t, p)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 3))
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rng.IntN(4000))*time.Microsecond)
				c, err := p.Get(ctx)
				cancel()
				if err != nil {
					continue
				}
				if _, err := roundTrip(c, "resize"); err != nil || rng.IntN(20) == 0 {
					c.MarkUnusable()
				}
				_ = c.Close()
			}
		})
	}
	rng := rand.New(rand.NewPCG(42, 42))
	for i, start := 0, time.Now(); time.Since(start) < 500*time.Millisecond; i++ {
		n := 1 + rng.IntN(6)
		idle := rng.IntN(n + 1)
		require.NoError(t, p.SetMinIdle(0), "step %d", i)
		require.NoError(t, p.SetMaxIdle(0), "step %d", i)
		require.NoError(t, p.SetMaxConns(n), "step %d", i)
		require.NoError(t, p.SetMaxIdle(idle), "step %d", i)
		require.NoError(t, p.SetMinIdle(min(idle, rng.IntN(2))), "step %d", i)
		if i%50 == 0 {
			_ = srv.ResetConns()
		}
		runtime.Gosched()
	}
	close(stop)
	wg.Wait()
	stopWatch()
	assert.LessOrEqual(t, srv.MaxOpen(), 6, "never above the largest cap at the server")
	require.NoError(t, p.SetMinIdle(0))
	require.NoError(t, p.SetMaxIdle(0))
	require.NoError(t, p.SetMaxConns(2))
	// Dials in flight when it was lowered close as they finish.
	require.Eventually(t, func() bool { s := p.Stats(); return s.OpenConns+s.Dialing <= 2 }, waitFor, tick)
	checkBooks(t, p.Stats())
	require.NoError(t, p.CheckInvariants())
}

// TestSetGroupMaxConns: raising a group's cap lets a waiting dial go;
// lowering it closes idle conns of the pools down to the new cap.
func TestSetGroupMaxConns(t *testing.T) {
	a, b := startServer(t), startServer(t)
	g := newGroup(t, connpool.WithGroupMaxConns(1))
	ctx := context.Background()
	ca, err := g.Get(ctx, "tcp", a.Addr())
	require.NoError(t, err)
	got := make(chan error, 1)
	go func() {
		c, err := g.Get(ctx, "tcp", b.Addr())
		if err == nil {
			err = c.Close()
		}
		got <- err
	}()
	require.Eventually(t, func() bool { return g.GroupStats().Waiting == 1 }, waitFor, tick)
	require.NoError(t, g.SetGroupMaxConns(2))
	require.NoError(t, <-got, "the dial waiting for a slot went")
	require.NoError(t, ca.Close())

	require.NoError(t, g.SetGroupMaxConns(1))
	open := 0
	for _, st := range g.Stats() {
		open += st.OpenConns
	}
	assert.Equal(t, 1, open, "idle conns closed down to the new cap")
	assert.ErrorContains(t, g.SetGroupMaxConns(0), "SetGroupMaxConns(0)")
	assert.ErrorContains(t, newGroup(t).SetGroupMaxConns(3), "no cap")
	require.NoError(t, g.Close())
	assert.ErrorIs(t, g.SetGroupMaxConns(3), connpool.ErrClosed)
}

// slowCloseConn is a net.Conn whose Close, for the first conns closed,
// reports that it began and then waits for release.
type slowCloseConn struct {
	net.Conn
	gate *closeGate
}

type closeGate struct {
	mu      sync.Mutex
	blocks  int           // how many Closes still block
	entered chan struct{} // one value per blocked Close
	release chan struct{}
}

func (c *slowCloseConn) Close() error {
	c.gate.mu.Lock()
	block := c.gate.blocks > 0
	c.gate.blocks--
	c.gate.mu.Unlock()
	if block {
		c.gate.entered <- struct{}{}
		<-c.gate.release
	}
	return c.Conn.Close()
}

// TestSetMaxConnsShrinkKeepsConnsOnceWithinTheCap pins that the conns
// coming back to a pool whose cap was lowered count those already being
// closed as gone: lowered from 5 to 2 with 5 borrowed, the first 3 back
// close and the last 2 stay idle, even when the first 3 are still closing
// as the last come back. Before, each saw the pool over its cap while the
// earlier closes were in flight, so all 5 closed and 2 new dials followed.
func TestSetMaxConnsShrinkKeepsConnsOnceWithinTheCap(t *testing.T) {
	srv := startServer(t)
	gate := &closeGate{blocks: 3, entered: make(chan struct{}, 5), release: make(chan struct{})}
	var d net.Dialer
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(5),
		connpool.WithDialer(func(ctx context.Context, network, address string) (net.Conn, error) {
			nc, err := d.DialContext(ctx, network, address)
			if err != nil {
				return nil, err
			}
			return &slowCloseConn{Conn: nc, gate: gate}, nil
		}))
	conns := holdAll(t, p, 5)
	require.NoError(t, p.SetMaxConns(2))

	var wg sync.WaitGroup
	for _, c := range conns[:3] {
		wg.Go(func() { assert.NoError(t, c.Close()) })
		<-gate.entered // its socket is closing, its permit not yet free
	}
	require.NoError(t, conns[3].Close())
	require.NoError(t, conns[4].Close())
	close(gate.release)
	wg.Wait()

	st := p.Stats()
	assert.Equal(t, int64(3), st.ResizedClosed, "only the conns beyond the cap close")
	assert.Equal(t, 2, st.Idle, "the last two back are kept")
	assert.Equal(t, int64(5), st.Dials, "no new dial replaces a conn that could have been kept")
	require.NoError(t, p.CheckInvariants())
	checkBooks(t, st)
}
