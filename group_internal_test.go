package connpool

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool/internal/fakeconn"
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
	gap := late.epoch.Sub(early.epoch)
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
// and the sweeper must take the flag for a use.
func TestGroupKeepsPoolInUse(t *testing.T) {
	const idle = 50 * time.Millisecond
	g, err := NewGroup(WithDialer(fakeconn.Dial), WithGroupIdleTimeout(idle))
	require.NoError(t, err)
	t.Cleanup(func() { _ = g.Close() })
	first, err := g.pool("tcp", "busy:1")
	require.NoError(t, err)
	for end := time.Now().Add(8 * idle); time.Now().Before(end); {
		c, err := g.Get(context.Background(), "tcp", "busy:1")
		require.NoError(t, err)
		require.NoError(t, c.Close())
	}
	now, err := g.pool("tcp", "busy:1")
	require.NoError(t, err)
	assert.Same(t, first, now, "a pool in use was forgotten")
	assert.False(t, first.closed.Load())
}
