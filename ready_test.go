package connpool_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
)

func TestWaitReady(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr(), connpool.WithMinIdle(3))
	require.NoError(t, p.WaitReady(context.Background()))
	assert.GreaterOrEqual(t, p.Stats().Idle, 3)

	noWarming := newPool(t, srv.Addr())
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	assert.NoError(t, noWarming.WaitReady(ended), "MinIdle 0 is ready at once")

	require.NoError(t, p.Close())
	assert.ErrorIs(t, p.WaitReady(context.Background()), connpool.ErrClosed)
}

// TestWaitReadyReportsTheDialError: a pool that cannot dial is not ready,
// and says why when its caller gives up.
func TestWaitReadyReportsTheDialError(t *testing.T) {
	refused := errors.New("backend refuses")
	p := newPool(t, "127.0.0.1:1", connpool.WithMinIdle(1),
		connpool.WithDialer(func(context.Context, string, string) (net.Conn, error) { return nil, refused }))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := p.WaitReady(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorIs(t, err, refused)
	assert.Contains(t, err.Error(), "0 of 1 idle")
}

// TestWaitReadyRacingClose: a WaitReady that is waiting when the pool
// closes returns ErrClosed.
func TestWaitReadyRacingClose(t *testing.T) {
	gate := newGatedDialer() // dials never finish until released
	p := newPool(t, "127.0.0.1:1", connpool.WithMinIdle(1), connpool.WithDialer(gate.dial))
	done := make(chan error, 1)
	go func() { done <- p.WaitReady(context.Background()) }()
	require.Eventually(t, func() bool { return gate.inFlight.Load() == 1 }, waitFor, tick)
	require.NoError(t, p.Close())
	assert.ErrorIs(t, <-done, connpool.ErrClosed)
}
