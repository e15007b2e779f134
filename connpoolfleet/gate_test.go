package connpoolfleet_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/connpoolfleet"
)

// TestGateClosedUntilGranted: a new gate refuses dials with ErrFenced, the
// pool's Get says so, and after Join's lease is granted dials go through;
// after Leave they are refused again.
func TestGateClosedUntilGranted(t *testing.T) {
	gate := connpoolfleet.NewGate()
	assert.False(t, gate.Open())
	_, err := gate.Dialer(nil)(context.Background(), "tcp", "127.0.0.1:1")
	require.ErrorIs(t, err, connpoolfleet.ErrFenced)

	r := startRedis(t)
	srv := startCountServer(t)
	pool, err := connpool.New("tcp", srv.addr(), connpool.WithDialer(gate.Dialer(helloDial("g"))),
		connpool.WithDialBackoff(time.Millisecond, 5*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(func() { _ = pool.Close() })
	_, err = pool.Get(context.Background())
	require.ErrorIs(t, err, connpoolfleet.ErrFenced, "a Get says why it cannot dial")

	m, err := connpoolfleet.Join(context.Background(), r.client(t), "gate", 4,
		[]connpoolfleet.Target{connpoolfleet.PoolTarget(pool)}, connpoolfleet.WithTTL(600*time.Millisecond), connpoolfleet.WithGate(gate))
	require.NoError(t, err)
	eventually(t, func() bool {
		c, err := pool.Get(context.Background())
		if err != nil {
			return false
		}
		return c.Close() == nil
	}, "no dial after the lease was granted")
	assert.True(t, gate.Open())
	require.NoError(t, m.Leave(context.Background()))
	assert.False(t, gate.Open())
	assert.Equal(t, connpoolfleet.StateLeft, m.Stats().State)
	assert.True(t, errors.Is(m.Leave(context.Background()), connpoolfleet.ErrLeft))
}
