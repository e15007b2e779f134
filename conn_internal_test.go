package connpool

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool/internal/testserver"
)

// TestCloseEndsTheHoldersBlockedRead: a holder that closes its Conn to end
// its own blocked Read, as one does a net.Conn, ends that Read with the
// socket, and the next borrower gets a fresh conn whose replies are its
// own. Regression: Close kept the socket and handed it to the next Get
// while the Read still ran, and the old holder's Read returned the new
// borrower's reply (10 of 10 in the audit).
func TestCloseEndsTheHoldersBlockedRead(t *testing.T) {
	srv, err := testserver.Start()
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })
	p, err := New("tcp", srv.Addr(), WithMaxConns(1))
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := p.Get(ctx)
	require.NoError(t, err)
	type result struct {
		got string
		err error
	}
	read := make(chan result, 1)
	go func() {
		b := make([]byte, 16)
		n, err := c.Read(b)
		read <- result{string(b[:n]), err}
	}()
	require.Eventually(t, func() bool { return c.state.Load()&ioRunning != 0 }, 5*time.Second, time.Millisecond, "the Read is running")
	require.NoError(t, c.Close())
	r := <-read
	assert.Error(t, r.err, "the blocked Read ends with the socket, it read %q", r.got)

	next, err := p.Get(ctx)
	require.NoError(t, err)
	reply, err := testserver.RoundTrip(next, "mine")
	require.NoError(t, err)
	assert.Equal(t, "mine", reply)
	require.NoError(t, next.Close())
	assert.Equal(t, int64(1), p.Stats().BrokenClosed, "the socket of the running Read was closed, not kept")
}
