package connpool

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool/internal/fakeconn"
	"github.com/connpool/connpool/internal/testserver"
)

// TestGroupEvictsOldestAcrossPoolEpochs gives two pools of a group idle
// conns whose return times, read on each pool's own clock, order the
// other way round from the truth: the pool created later has the smaller
// reading. Eviction must close the conn returned first.
func TestGroupEvictsOldestAcrossPoolEpochs(t *testing.T) {
	g, err := NewGroup(WithDialer(fakeconn.Dial), WithGroupIdleTimeout(0))
	require.NoError(t, err)
	t.Cleanup(func() { _ = g.Close() })
	idleOne := func(addr string) *Pool {
		c, err := g.Get(context.Background(), "tcp", addr)
		require.NoError(t, err)
		require.NoError(t, c.Close())
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.pools[Addr{"tcp", addr}].pool
	}
	early, late := idleOne("early:1"), idleOne("late:1")
	gap := late.epoch.Time(0).Sub(early.epoch.Time(0))
	require.Greater(t, gap, 2*time.Nanosecond)
	stamp := func(p *Pool, at time.Duration) {
		p.idleMu.Lock()
		p.idle.All()[0].lastUsed = int64(at)
		p.idleMu.Unlock()
	}
	stamp(early, gap/2)          // returned at early's epoch + gap/2
	stamp(late, time.Nanosecond) // returned at early's epoch + gap + 1ns

	require.True(t, g.evictIdle(nil))
	assert.Equal(t, int64(1), early.Stats().IdleClosed, "the conn returned first is evicted")
	assert.Equal(t, 1, late.Stats().Idle)
}

// TestGroupKeepsPoolInUse looks a pool up over several idle timeouts and
// checks the sweeper never forgot it: lookups only flag the pool as used,
// and the sweeper must take the flag for a use. A pool the test itself
// left unused for a whole idle timeout (this goroutine descheduled on a
// loaded machine) may rightly be forgotten: such an attempt proves
// nothing, and the test tries again, at most three times.
func TestGroupKeepsPoolInUse(t *testing.T) {
	const idle = 50 * time.Millisecond
	g, err := NewGroup(WithDialer(fakeconn.Dial), WithGroupIdleTimeout(idle))
	require.NoError(t, err)
	t.Cleanup(func() { _ = g.Close() })
	for attempt := 1; ; attempt++ {
		first, err := g.pool("tcp", "busy:1")
		require.NoError(t, err)
		var gap time.Duration // the longest the pool went without a lookup
		last := time.Now()
		for end := last.Add(8 * idle); time.Now().Before(end); {
			c, err := g.Get(context.Background(), "tcp", "busy:1")
			require.NoError(t, err)
			require.NoError(t, c.Close())
			now := time.Now()
			gap, last = max(gap, now.Sub(last)), now
		}
		now, err := g.pool("tcp", "busy:1")
		require.NoError(t, err)
		gap = max(gap, time.Since(last))
		if gap >= idle && attempt < 3 {
			t.Logf("attempt %d: the pool went %v without a lookup, past the idle timeout; trying again", attempt, gap)
			continue
		}
		require.Less(t, gap, idle, "the test never kept the pool in use for a whole run")
		assert.Same(t, first, now, "a pool in use was forgotten")
		assert.False(t, first.closed.Load())
		return
	}
}

// TestGroupGetAfterPoolSwept stalls a caller between the lookup of its
// pool and the Get, past the idle timeout, so that the sweeper closes and
// forgets the pool in between, as a descheduled goroutine can: Get and
// DialContext must go to the address's new pool, not fail with the old
// pool's ErrClosed. Regression: they returned ErrClosed on an open group.
func TestGroupGetAfterPoolSwept(t *testing.T) {
	const idle = 10 * time.Millisecond
	g, err := NewGroup(WithDialer(fakeconn.Dial), WithGroupIdleTimeout(idle))
	require.NoError(t, err)
	t.Cleanup(func() { _ = g.Close() })
	stale := func() *Pool {
		p, err := g.pool("tcp", "swept:1")
		require.NoError(t, err)
		require.Eventually(t, p.closed.Load, 10*time.Second, time.Millisecond, "the sweeper never closed the idle pool")
		return p
	}
	c, err := g.getFrom(context.Background(), stale(), "tcp", "swept:1")
	require.NoError(t, err, "Get")
	require.NoError(t, c.Close())
	nc, err := g.dialFrom(context.Background(), stale(), "tcp", "swept:1")
	require.NoError(t, err, "DialContext")
	require.NoError(t, nc.Close())

	// The pools of a closed group are not retried.
	held, err := g.pool("tcp", "swept:1")
	require.NoError(t, err)
	require.NoError(t, g.Close())
	_, err = g.getFrom(context.Background(), held, "tcp", "swept:1")
	assert.ErrorIs(t, err, ErrClosed)
	_, err = g.dialFrom(context.Background(), held, "tcp", "swept:1")
	assert.ErrorIs(t, err, ErrClosed)
}

// TestGroupKeepsPoolWhileDialing gives a group's pool a Get that waits
// for a dial longer than the group's idle timeout: the pool queues a Get
// and dials, so the sweeper must keep it. Regression: the sweeper asked
// only whether the pool lent a conn, closed it under the dial, and the
// Get failed with ErrClosed.
func TestGroupKeepsPoolWhileDialing(t *testing.T) {
	const idle = 10 * time.Millisecond
	dial := func(ctx context.Context, network, address string) (net.Conn, error) {
		select {
		case <-time.After(10 * idle): // several sweeps while the Get waits
			return fakeconn.Dial(ctx, network, address)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	g, err := NewGroup(WithDialer(dial), WithGroupIdleTimeout(idle))
	require.NoError(t, err)
	t.Cleanup(func() { _ = g.Close() })
	first, err := g.pool("tcp", "slow:1")
	require.NoError(t, err)
	c, err := g.getFrom(context.Background(), first, "tcp", "slow:1")
	require.NoError(t, err)
	assert.False(t, first.closed.Load(), "the pool was closed under its Get")
	require.NoError(t, c.Close())
}

// TestGroupSlotOfLateDialFreedAfterItsSocket pins the order in which a
// dial that finishes after its pool closed gives back its group slot:
// only once its socket is closed. Freed first, the slot let a dial of
// another pool open a socket while the late one was still open, one over
// the group's cap. Pool a's dial finishes when the pool's Close cancels
// it, with a conn whose Close waits (up to 200ms) for pool b's dial to
// start; pool b's dial waits for the only slot, and records whether a's
// socket was closed when it started.
func TestGroupSlotOfLateDialFreedAfterItsSocket(t *testing.T) {
	srv, err := testserver.Start()
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })
	aDialing, bStarted := make(chan struct{}), make(chan struct{})
	var aClosed, aClosedAtB atomic.Bool
	var bDials atomic.Int32
	dial := func(ctx context.Context, network, address string) (net.Conn, error) {
		if address == "b:1" && bDials.Add(1) == 1 {
			aClosedAtB.Store(aClosed.Load())
			close(bStarted)
		}
		var d net.Dialer
		nc, err := d.DialContext(ctx, network, srv.Addr())
		if err != nil || address != "a:1" {
			return nc, err
		}
		close(aDialing)
		<-ctx.Done() // a's Close cancels the dial; the conn is returned all the same
		return &slowClosingConn{Conn: nc, closed: &aClosed, wait: bStarted}, nil
	}
	g, err := NewGroup(WithGroupMaxConns(1), WithGroupIdleTimeout(0), WithDialer(dial))
	require.NoError(t, err)
	t.Cleanup(func() { _ = g.Close() })

	aDone := make(chan error, 1)
	go func() {
		_, err := g.Get(context.Background(), "tcp", "a:1")
		aDone <- err
	}()
	<-aDialing
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	bDone := make(chan error, 1)
	go func() {
		c, err := g.Get(ctx, "tcp", "b:1")
		if err == nil {
			err = c.Close()
		}
		bDone <- err
	}()
	pool := func(addr string) *Pool {
		g.mu.RLock()
		defer g.mu.RUnlock()
		if e, ok := g.pools[Addr{"tcp", addr}]; ok {
			return e.pool
		}
		return nil
	}
	require.Eventually(t, func() bool { return g.GroupStats().Waiting == 1 }, 5*time.Second, time.Millisecond)

	require.NoError(t, pool("a:1").Close())
	assert.ErrorIs(t, <-aDone, ErrClosed)
	require.NoError(t, <-bDone)
	assert.True(t, aClosed.Load())
	assert.True(t, aClosedAtB.Load(), "b dialed while a's socket was open: the group's cap was exceeded")
}

// slowClosingConn is a conn whose Close waits for wait (at most 200ms),
// then closes the socket and records it in closed.
type slowClosingConn struct {
	net.Conn
	closed *atomic.Bool
	wait   <-chan struct{}
}

func (c *slowClosingConn) Close() error {
	t := time.NewTimer(200 * time.Millisecond)
	defer t.Stop()
	select {
	case <-c.wait:
	case <-t.C:
	}
	err := c.Conn.Close()
	c.closed.Store(true)
	return err
}
