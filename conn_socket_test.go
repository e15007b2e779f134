package connpool_test

import (
	"net"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/internal/testserver"
)

// TestCheckoutPeekDropsDeadAndDirtyConns covers the faults the checkout
// peek exists for. Each leaves an idle conn that must not be handed out.
func TestCheckoutPeekDropsDeadAndDirtyConns(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault func(t *testing.T, srv *testserver.Server, c *connpool.Conn)
	}{
		{"peer closed (FIN)", func(t *testing.T, srv *testserver.Server, _ *connpool.Conn) {
			require.NoError(t, srv.CloseConns())
		}},
		{"peer reset (RST)", func(t *testing.T, srv *testserver.Server, _ *connpool.Conn) {
			require.NoError(t, srv.ResetConns())
		}},
		{"bytes sent unasked", func(t *testing.T, srv *testserver.Server, _ *connpool.Conn) {
			require.NoError(t, srv.Send([]byte("+PUSH\r\n")))
		}},
		{"reply left unread by the last borrower", func(t *testing.T, _ *testserver.Server, c *connpool.Conn) {
			_, err := c.Write([]byte("never read"))
			require.NoError(t, err)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t)
			p := newPool(t, srv.Addr(), connpool.WithHealthCheckInterval(0))
			c := getConn(t, p)
			mustRoundTrip(t, c, "used")
			port := localPort(c)
			tc.fault(t, srv, c)
			require.NoError(t, c.Close())
			require.Eventually(t, func() bool {
				// The fault crosses loopback; until it lands the old conn
				// is still fine, and a Get may rightly return it.
				next := getConn(t, p)
				defer next.Close()
				if localPort(next) == port {
					return false
				}
				mustRoundTrip(t, next, "clean")
				return true
			}, waitFor, tick)
			assert.Equal(t, int64(1), p.Stats().HealthFailures)
		})
	}
}

// fdOf returns the descriptor behind c.
func fdOf(t *testing.T, c syscall.Conn) uintptr {
	t.Helper()
	rc, err := c.SyscallConn()
	require.NoError(t, err)
	var fd uintptr
	require.NoError(t, rc.Control(func(x uintptr) { fd = x }))
	return fd
}

// reuseFD opens sockets to addr until one gets descriptor fd, the number
// of a socket just closed, so that a stale peek at fd would judge a live
// socket. It skips the test if the system hands out other numbers.
func reuseFD(t *testing.T, addr string, fd uintptr) {
	t.Helper()
	for range 8 {
		nc, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { nc.Close() })
		if fdOf(t, nc.(*net.TCPConn)) == fd {
			return
		}
	}
	t.Skipf("descriptor %d was not reused", fd)
}

// TestConnClosedThroughUnwrapIsNotHandedOut pins two faults found from
// outside. A conn whose inner conn the borrower closed through Unwrap was
// put back and handed out again: the checkout peek read the descriptor
// number cached at dial time, which by then named another, live socket.
// And a holder who kept the inner conn and closed it after the return
// left the same stale number to the next peek. The pool must never hand
// out such a conn, and never peek at a descriptor after its socket closed.
func TestConnClosedThroughUnwrapIsNotHandedOut(t *testing.T) {
	for _, tc := range []struct {
		name        string
		closeBefore bool // close the inner conn before the Put, or after it
	}{
		{"closed before the return", true},
		{"closed after the return", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t)
			p := newPool(t, srv.Addr(), connpool.WithMaxConns(2), connpool.WithHealthCheckInterval(0))
			c := getConn(t, p)
			mustRoundTrip(t, c, "used")
			port := localPort(c)
			inner := c.Unwrap()
			fd := fdOf(t, inner.(*net.TCPConn))
			if tc.closeBefore {
				require.NoError(t, inner.Close())
			}
			require.NoError(t, c.Close())
			if !tc.closeBefore {
				require.NoError(t, inner.Close())
			}
			reuseFD(t, srv.Addr(), fd)

			for range 2 {
				next := getConn(t, p)
				assert.NotEqual(t, port, localPort(next), "the dead conn was handed out")
				mustRoundTrip(t, next, "live")
				defer next.Close()
			}
			checkBooks(t, p.Stats())
		})
	}
}

// TestDetachTakesTheSocketOut: a detached conn frees its slot at once,
// counts under its own reason, keeps working for its new owner, and the
// pool never touches it again, not even at Close.
func TestDetachTakesTheSocketOut(t *testing.T) {
	srv := startServer(t)
	log := newEventLog()
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(1), connpool.WithHooks(log.hooks()))
	c := getConn(t, p)
	nc, err := c.Detach()
	require.NoError(t, err)
	_, err = c.Detach()
	assert.ErrorIs(t, err, connpool.ErrConnReturned)
	assert.ErrorIs(t, c.Close(), connpool.ErrConnReturned, "detached is returned")
	_, err = c.Write([]byte("x"))
	assert.ErrorIs(t, err, net.ErrClosed, "the wrapper is dead to its holder")

	next := getConn(t, p) // the slot is free: a new dial
	assert.NotEqual(t, localPort(next), nc.LocalAddr().(*net.TCPAddr).Port)
	require.NoError(t, next.Close())
	st := p.Stats()
	assert.Equal(t, int64(1), st.DetachedClosed)
	assert.Equal(t, 1, st.OpenConns)
	checkBooks(t, st)

	require.NoError(t, p.Close())
	mustRoundTrip(t, nc, "still mine after the pool closed")
	require.NoError(t, nc.Close())
	log.mu.Lock()
	defer log.mu.Unlock()
	assert.Equal(t, connpool.CloseDetached, log.connClosed[1][0].Reason)

	var zero *connpool.Conn
	_, err = zero.Detach()
	assert.ErrorIs(t, err, connpool.ErrForeignConn)
}

// TestDetachRacingClose: a Detach and a pool Close at once leave the
// detached socket open and the pool with nothing open.
func TestDetachRacingClose(t *testing.T) {
	srv := startServer(t)
	for range 50 {
		p := newPool(t, srv.Addr(), connpool.WithMaxConns(2))
		c := getConn(t, p)
		detached := make(chan net.Conn, 1)
		go func() {
			nc, err := c.Detach()
			assert.NoError(t, err)
			detached <- nc
		}()
		require.NoError(t, p.Close())
		nc := <-detached
		mustRoundTrip(t, nc, "untouched")
		require.NoError(t, nc.Close())
		require.NoError(t, p.CheckInvariants())
		assert.Zero(t, p.Stats().OpenConns)
	}
}
