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
