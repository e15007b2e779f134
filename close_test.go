package connpool_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
)

// TestShutdownWithEndedContextAndNothingBorrowed pins a coin toss: with
// nothing borrowed and ctx already ended, both of Shutdown's select cases
// were ready, and it returned nil or a "still borrowed" error at random.
// Nothing borrowed means the drain is complete: nil, every time.
func TestShutdownWithEndedContextAndNothingBorrowed(t *testing.T) {
	srv := startServer(t)
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	for i := range 100 {
		p := newPool(t, srv.Addr())
		c := getConn(t, p)
		mustRoundTrip(t, c, "used")
		require.NoError(t, c.Close())
		require.NoError(t, p.Shutdown(ended), "run %d", i)
		require.Zero(t, p.Stats().OpenConns)
	}
}

func TestCloseClosesIdleNowAndBorrowedOnReturn(t *testing.T) {
	srv := startServer(t)
	p, err := connpool.New("tcp", srv.Addr(), connpool.WithMaxConns(2))
	require.NoError(t, err)
	held := holdAll(t, p, 2)
	require.NoError(t, held[1].Close()) // one idle, one borrowed

	require.NoError(t, p.Close())
	require.ErrorIs(t, p.Close(), connpool.ErrClosed)
	_, err = p.Get(context.Background())
	require.ErrorIs(t, err, connpool.ErrClosed)
	_, err = p.TryGet()
	require.ErrorIs(t, err, connpool.ErrClosed)
	assert.Eventually(t, func() bool { return srv.Open() == 1 }, waitFor, tick, "the idle conn is closed at once")

	mustRoundTrip(t, held[0], "borrowed conns keep working until returned")
	require.NoError(t, held[0].Close())
	st := p.Stats()
	assert.Zero(t, st.OpenConns)
	assert.Equal(t, int64(2), st.PoolClosed)
	assert.Eventually(t, func() bool { return srv.Open() == 0 }, waitFor, tick)
	checkBooks(t, st)
}

func TestCloseFailsQueuedWaiters(t *testing.T) {
	srv := startServer(t)
	p, err := connpool.New("tcp", srv.Addr(), connpool.WithMaxConns(1))
	require.NoError(t, err)
	held := holdAll(t, p, 1)[0]
	errs := make(chan error, 3)
	for range 3 {
		go func() {
			_, err := p.Get(context.Background())
			errs <- err
		}()
	}
	require.Eventually(t, waitersAre(p, 3), waitFor, tick)
	require.NoError(t, p.Close())
	for range 3 {
		assert.ErrorIs(t, <-errs, connpool.ErrClosed)
	}
	require.NoError(t, held.Close())
	assert.Zero(t, p.Stats().OpenConns)
}

func TestShutdownWaitsForBorrowedConns(t *testing.T) {
	srv := startServer(t)
	p, err := connpool.New("tcp", srv.Addr())
	require.NoError(t, err)
	c := holdAll(t, p, 1)[0]
	done := make(chan error, 1)
	go func() { done <- p.Shutdown(context.Background()) }()
	require.Eventually(t, func() bool {
		// A Get before Shutdown has begun gets a conn: give it back, or
		// Shutdown would wait for it forever (the test did, on a machine
		// so loaded that the Shutdown goroutine had not run yet).
		c, err := p.Get(context.Background())
		if err == nil {
			require.NoError(t, c.Close())
		}
		return errors.Is(err, connpool.ErrClosed)
	}, waitFor, tick)
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a conn still borrowed", err)
	default:
	}
	mustRoundTrip(t, c, "finishing up")
	require.NoError(t, c.Close())
	require.NoError(t, <-done)
	assert.Zero(t, p.Stats().OpenConns)
	assert.ErrorIs(t, p.Shutdown(context.Background()), connpool.ErrClosed)
}

func TestShutdownForcesAfterDeadline(t *testing.T) {
	srv := startServer(t)
	p, err := connpool.New("tcp", srv.Addr())
	require.NoError(t, err)
	c := holdAll(t, p, 1)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err = p.Shutdown(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	_, err = roundTrip(c, "too late")
	require.Error(t, err, "the borrowed socket was closed")
	require.NoError(t, c.Close())
	st := p.Stats()
	assert.Zero(t, st.OpenConns)
	checkBooks(t, st)
}
