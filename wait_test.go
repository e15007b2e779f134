package connpool_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
)

// TestMaxWaitersRefusesTheNextWaiter: with MaxWaiters Gets queued, Get
// and DialContext fail at once with ErrTooManyWaiters, counted in Stats,
// while the queued ones are served as usual.
func TestMaxWaitersRefusesTheNextWaiter(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(1), connpool.WithMaxWaiters(2))
	held := holdAll(t, p, 1)[0]
	served := make(chan error, 2)
	for range 2 {
		go func() {
			c, err := p.Get(context.Background())
			if err == nil {
				err = c.Close()
			}
			served <- err
		}()
	}
	require.Eventually(t, waitersAre(p, 2), waitFor, tick)

	_, err := p.Get(context.Background())
	require.ErrorIs(t, err, connpool.ErrTooManyWaiters)
	_, err = p.DialContext(context.Background(), "tcp", srv.Addr())
	require.ErrorIs(t, err, connpool.ErrTooManyWaiters)
	c, err := p.TryGet()
	assert.Nil(t, c)
	assert.ErrorIs(t, err, connpool.ErrNoIdleConn, "TryGet never waits, so never counts as a waiter")
	assert.Equal(t, int64(2), p.Stats().TooManyWaiters)

	require.NoError(t, held.Close())
	for range 2 {
		require.NoError(t, <-served)
	}
	require.NoError(t, p.CheckInvariants())
	checkBooks(t, p.Stats())
}

// TestWithNameNamesThePool: the name is in Stats, events and log lines,
// and defaults to the network and address.
func TestWithNameNamesThePool(t *testing.T) {
	srv := startServer(t)
	assert.Equal(t, "tcp "+srv.Addr(), newPool(t, srv.Addr()).Stats().Name)

	var logs lockedBuffer
	log := newEventLog()
	p := newPool(t, srv.Addr(), connpool.WithName("orders-db"), connpool.WithHooks(log.hooks()),
		connpool.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))),
		connpool.WithDialer(func(context.Context, string, string) (net.Conn, error) { return nil, errFlaky }))
	assert.Equal(t, "orders-db", p.Stats().Name)
	_, err := p.Get(context.Background())
	require.ErrorIs(t, err, errFlaky)
	assert.Eventually(t, func() bool { return strings.Contains(logs.String(), "pool=orders-db") }, waitFor, tick)
	log.mu.Lock()
	defer log.mu.Unlock()
	assert.Equal(t, map[string]bool{"orders-db": true}, log.names)
}

// lockedBuffer is a bytes.Buffer safe for a logger on another goroutine.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestPoolSaysWhatItDials(t *testing.T) {
	p := newPool(t, "127.0.0.1:1", connpool.WithMinIdle(0), connpool.WithMaxConns(3), connpool.WithMaxIdle(2))
	assert.Equal(t, "tcp", p.Network())
	assert.Equal(t, "127.0.0.1:1", p.Address())
	st := p.Stats()
	assert.Equal(t, 3, st.MaxConns)
	assert.Equal(t, 2, st.MaxIdle)
	assert.Zero(t, st.MinIdle)
}
