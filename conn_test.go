package connpool_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/internal/testserver"
)

func getConn(t *testing.T, p *connpool.Pool) *connpool.Conn {
	t.Helper()
	c, err := p.Get(context.Background())
	require.NoError(t, err)
	return c
}

// TestReturnedConnIsDeadToItsHolder: after Put, the old holder's *Conn
// fails with net.ErrClosed and never reaches the socket that the next
// borrower now holds.
func TestReturnedConnIsDeadToItsHolder(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(1))
	stale := getConn(t, p)
	rc, err := stale.SyscallConn()
	require.NoError(t, err)
	require.NoError(t, p.Put(stale))

	next := getConn(t, p)
	defer next.Close()

	_, err = stale.Write([]byte("intrude"))
	assert.ErrorIs(t, err, net.ErrClosed)
	_, err = stale.Read(make([]byte, 1))
	assert.ErrorIs(t, err, net.ErrClosed)
	assert.ErrorIs(t, stale.SetDeadline(time.Now()), net.ErrClosed)
	assert.ErrorIs(t, stale.SetReadDeadline(time.Now()), net.ErrClosed)
	assert.ErrorIs(t, stale.SetWriteDeadline(time.Now()), net.ErrClosed)
	_, err = stale.ReadFrom(strings.NewReader("intrude"))
	assert.ErrorIs(t, err, net.ErrClosed)
	_, err = stale.WriteTo(io.Discard)
	assert.ErrorIs(t, err, net.ErrClosed)
	_, err = stale.SyscallConn()
	assert.ErrorIs(t, err, net.ErrClosed)
	assert.ErrorIs(t, rc.Control(func(uintptr) {}), net.ErrClosed, "a RawConn kept past return is dead too")
	assert.ErrorIs(t, rc.Read(func(uintptr) bool { return true }), net.ErrClosed)
	assert.ErrorIs(t, rc.Write(func(uintptr) bool { return true }), net.ErrClosed)
	assert.Nil(t, stale.Unwrap())

	// Returning it again is harmless and reported.
	assert.ErrorIs(t, p.Put(stale), connpool.ErrConnReturned)
	assert.ErrorIs(t, stale.Close(), connpool.ErrConnReturned)

	// The new borrower's conn is untouched by all of that.
	mustRoundTrip(t, next, "mine alone")
	checkBooks(t, p.Stats())
}

func TestPutRefusesForeignConns(t *testing.T) {
	srv := startServer(t)
	a := newPool(t, srv.Addr())
	b := newPool(t, srv.Addr())
	c := getConn(t, a)
	assert.ErrorIs(t, b.Put(c), connpool.ErrForeignConn)
	assert.ErrorIs(t, b.Put(nil), connpool.ErrForeignConn)
	assert.ErrorIs(t, b.Put(&connpool.Conn{}), connpool.ErrForeignConn)
	mustRoundTrip(t, c, "still a's")
	require.NoError(t, a.Put(c))
	assert.Equal(t, 1, a.Stats().Idle)
	assert.Zero(t, b.Stats().Idle)
}

func TestZeroConnDoesNotPanic(t *testing.T) {
	var c connpool.Conn
	_, err := c.Read(nil)
	assert.ErrorIs(t, err, net.ErrClosed)
	_, err = c.Write(nil)
	assert.ErrorIs(t, err, net.ErrClosed)
	assert.ErrorIs(t, c.Close(), connpool.ErrForeignConn)
	assert.Nil(t, c.LocalAddr())
	assert.Nil(t, c.RemoteAddr())
	assert.Nil(t, c.Unwrap())
	c.MarkUnusable()
	var nilConn *connpool.Conn
	assert.ErrorIs(t, nilConn.Close(), connpool.ErrForeignConn)
	nilConn.MarkUnusable()
}

func TestFailedIOPoisonsConn(t *testing.T) {
	for _, tc := range []struct {
		name    string
		breakIt func(t *testing.T, c *connpool.Conn)
	}{
		{"read timeout", func(t *testing.T, c *connpool.Conn) {
			require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Millisecond)))
			_, err := c.Read(make([]byte, 1))
			var ne net.Error
			require.ErrorAs(t, err, &ne)
			require.True(t, ne.Timeout())
		}},
		{"write deadline passed", func(t *testing.T, c *connpool.Conn) {
			require.NoError(t, c.SetWriteDeadline(time.Now().Add(-time.Second)))
			_, err := c.Write([]byte("x"))
			require.ErrorIs(t, err, os.ErrDeadlineExceeded)
		}},
		{"read EOF", func(t *testing.T, c *connpool.Conn) {
			require.NoError(t, c.Unwrap().(*net.TCPConn).CloseWrite())
			// The echo server sees EOF and closes its side.
			_, err := io.ReadAll(c)
			require.NoError(t, err)
			_, err = c.Read(make([]byte, 1))
			require.ErrorIs(t, err, io.EOF)
		}},
		{"mark unusable", func(t *testing.T, c *connpool.Conn) { c.MarkUnusable() }},
		{"readfrom a failing reader", func(t *testing.T, c *connpool.Conn) {
			boom := errors.New("boom")
			_, err := io.Copy(c, io.MultiReader(strings.NewReader("half a request"), iotest.ErrReader(boom)))
			require.ErrorIs(t, err, boom)
		}},
		{"writeto the end of the stream", func(t *testing.T, c *connpool.Conn) {
			mustRoundTrip(t, c, "last words")
			require.NoError(t, c.Unwrap().(*net.TCPConn).CloseWrite())
			var got bytes.Buffer
			_, err := io.Copy(&got, c) // through c.WriteTo, until the server closes
			require.NoError(t, err)
			assert.Empty(t, got.String())
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t)
			p := newPool(t, srv.Addr())
			c := getConn(t, p)
			port := localPort(c)
			tc.breakIt(t, c)
			require.NoError(t, c.Close())
			st := p.Stats()
			assert.Equal(t, int64(1), st.BrokenClosed)
			assert.Zero(t, st.OpenConns)
			next := getConn(t, p)
			assert.NotEqual(t, port, localPort(next))
			mustRoundTrip(t, next, "fresh")
			require.NoError(t, next.Close())
		})
	}
}

// TestCopyToConnPassesThrough sends a large body with io.Copy, which
// reaches the inner conn's ReadFrom through Conn.ReadFrom, and checks the
// echo comes back intact and the conn stays reusable.
func TestCopyToConnPassesThrough(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(1))
	c := getConn(t, p)
	port := localPort(c)
	body := bytes.Repeat([]byte("0123456789abcdef"), 64<<10/16)
	echoed := make(chan []byte, 1)
	go func() {
		got := make([]byte, len(body))
		_, err := io.ReadFull(c, got)
		assert.NoError(t, err)
		echoed <- got
	}()
	n, err := io.Copy(c, bytes.NewReader(body))
	require.NoError(t, err)
	assert.Equal(t, int64(len(body)), n)
	assert.Equal(t, body, <-echoed)
	require.NoError(t, c.Close())

	again := getConn(t, p)
	assert.Equal(t, port, localPort(again), "the conn was kept")
	mustRoundTrip(t, again, "after the copy")
	require.NoError(t, again.Close())
	assert.Zero(t, p.Stats().BrokenClosed)
}

func TestWriteAfterPeerResetPoisons(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr())
	c := getConn(t, p)
	mustRoundTrip(t, c, "x")
	require.NoError(t, srv.ResetConns())
	assert.Eventually(t, func() bool {
		_, err := c.Write([]byte("y"))
		return err != nil
	}, waitFor, tick)
	require.NoError(t, c.Close())
	assert.Equal(t, int64(1), p.Stats().BrokenClosed)
}

func TestDeadlinesClearedForNextBorrower(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(1))
	c := getConn(t, p)
	// A deadline already in the past, never hit by I/O: no poisoning.
	require.NoError(t, c.SetDeadline(time.Now().Add(-time.Second)))
	require.NoError(t, c.Close())

	next := getConn(t, p)
	mustRoundTrip(t, next, "no inherited deadline")
	require.NoError(t, next.Close())
	assert.Equal(t, int64(1), p.Stats().Dials)
}

func TestConnIsTransparent(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr())
	c := getConn(t, p)
	defer c.Close()
	inner, ok := c.Unwrap().(*net.TCPConn)
	require.True(t, ok)
	assert.Equal(t, inner.LocalAddr(), c.LocalAddr())
	assert.Equal(t, inner.RemoteAddr(), c.RemoteAddr())
	assert.Equal(t, srv.Addr(), c.RemoteAddr().String())

	var sc syscall.Conn = c
	rc, err := sc.SyscallConn()
	require.NoError(t, err)
	var fd uintptr
	require.NoError(t, rc.Control(func(f uintptr) { fd = f }))
	assert.NotZero(t, fd)
	require.NoError(t, rc.Read(func(uintptr) bool { return true }))
	require.NoError(t, rc.Write(func(uintptr) bool { return true }))

	require.NoError(t, c.SetDeadline(time.Now().Add(time.Minute)))
	mustRoundTrip(t, c, "through the wrapper")
}

func TestSyscallConnOfConnWithoutSocket(t *testing.T) {
	p := newPool(t, "pipe:0", connpool.WithDialer(func(context.Context, string, string) (net.Conn, error) {
		a, b := net.Pipe()
		go func() { _, _ = io.Copy(b, b); b.Close() }()
		return a, nil
	}))
	c := getConn(t, p)
	_, err := c.SyscallConn()
	assert.ErrorIs(t, err, errors.ErrUnsupported)
	mustRoundTrip(t, c, "a pipe is pooled too")
	c.MarkUnusable()
	require.NoError(t, c.Close())
}

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
