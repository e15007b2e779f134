package connpool

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool/internal/fakeconn"
)

// TestLoweredCapCountsTheIdleConnsItCloses pins a race the CPU-hog runs of
// issue 22 found (TestAdaptiveCapFindsServerConcurrency): a lowered cap
// whose idle conns, once closed, bring the pool within it did not mark
// the pool over the cap while those conns were still closing, outside the
// lock, so the ledger saw "open 19 exceeds MaxConns 15". The pool is over
// the cap until the last of them has closed.
func TestLoweredCapCountsTheIdleConnsItCloses(t *testing.T) {
	p, err := New("fake", "fake:0", WithMaxConns(4), WithDialer(fakeconn.Dial))
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	var conns []*Conn
	for range 4 {
		c, err := p.Get(context.Background())
		require.NoError(t, err)
		conns = append(conns, c)
	}
	for _, c := range conns[:2] {
		require.NoError(t, c.Close()) // 2 idle, 2 lent
	}

	// SetMaxConns(2), stopped where it has unlocked but not yet closed
	// the idle conns it took.
	p.mu.Lock()
	closing := p.resizeTo(2)
	p.mu.Unlock()
	require.Len(t, closing, 2)
	assert.NoError(t, p.CheckInvariants(), "open 4 with a cap of 2, while 2 of them close")
	assert.True(t, p.overCap.Load(), "over the cap until they have closed")

	p.closeConns(closing, CloseResized)
	assert.False(t, p.overCap.Load(), "within the cap once they have")
	require.NoError(t, p.CheckInvariants())
	for _, c := range conns[2:] {
		require.NoError(t, c.Close())
	}
	st := p.Stats()
	assert.Equal(t, 2, st.OpenConns)
	assert.Equal(t, 2, st.Idle)
	require.NoError(t, p.CheckInvariants())
}
