//go:build unix

package sockcheck

import (
	"errors"
	"io"
	"net"
	"runtime"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pair returns both ends of a loopback TCP connection.
func pair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	s := <-accepted
	require.NotNil(t, s)
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

func skipIfUnsupported(t *testing.T) {
	if !supported {
		t.Skipf("no socket peek on %s", runtime.GOOS)
	}
}

func readOne(t *testing.T, c net.Conn) {
	t.Helper()
	var b [1]byte
	_, err := io.ReadFull(c, b[:])
	require.NoError(t, err)
}

func TestStates(t *testing.T) {
	skipIfUnsupported(t)
	for _, tc := range []struct {
		name        string
		fault       func(t *testing.T, server *net.TCPConn)
		wantPending bool
		wantErr     error
	}{
		{"alive", func(*testing.T, *net.TCPConn) {}, false, nil},
		{"unread bytes", func(t *testing.T, s *net.TCPConn) {
			_, err := s.Write([]byte("x"))
			require.NoError(t, err)
		}, true, nil},
		{"peer closed", func(t *testing.T, s *net.TCPConn) { require.NoError(t, s.Close()) }, false, io.EOF},
		{"peer reset", func(t *testing.T, s *net.TCPConn) {
			require.NoError(t, s.SetLinger(0))
			require.NoError(t, s.Close())
		}, false, syscall.ECONNRESET},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, s := pair(t)
			ck := New(c)
			require.NotNil(t, ck)
			tc.fault(t, s)
			// The fault travels over loopback; a round trip through the
			// peer would be the usual way to wait, but the peer may be
			// gone, so poll briefly for the state to settle.
			assert.Eventually(t, func() bool {
				pending, err := ck.Check()
				return pending == tc.wantPending && errors.Is(err, tc.wantErr) && (err == nil) == (tc.wantErr == nil)
			}, 2e9, 1e6)
		})
	}
}

func TestPeekDoesNotConsume(t *testing.T) {
	skipIfUnsupported(t)
	c, s := pair(t)
	_, err := s.Write([]byte("hi"))
	require.NoError(t, err)
	ck := New(c)
	require.Eventually(t, func() bool { p, _ := ck.Check(); return p }, 2e9, 1e6)
	buf := make([]byte, 2)
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	assert.Equal(t, "hi", string(buf))
	pending, err := ck.Check()
	assert.False(t, pending)
	assert.NoError(t, err)
}

// TestClosedLocally checks a conn closed before its Checker was made: the
// Checker cannot read a descriptor, and says so on every check rather
// than pass a closed conn.
func TestClosedLocally(t *testing.T) {
	skipIfUnsupported(t)
	c, _ := pair(t)
	require.NoError(t, c.Close())
	ck := New(c)
	require.NotNil(t, ck)
	_, err := ck.Check()
	assert.ErrorIs(t, err, net.ErrClosed)
}

func TestNoSocket(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	assert.Nil(t, New(a), "net.Pipe has no socket to peek at")
}

func TestCheckDoesNotAllocate(t *testing.T) {
	skipIfUnsupported(t)
	c, s := pair(t)
	ck := New(c)
	_, err := s.Write([]byte("x"))
	require.NoError(t, err)
	readOne(t, c)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := ck.Check(); err != nil {
			t.Fatal(err)
		}
	})
	assert.Zero(t, allocs)
}

func BenchmarkCheck(b *testing.B) {
	if !supported {
		b.Skip("no peek")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b, err)
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_, _ = io.Copy(io.Discard, c)
			c.Close()
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(b, err)
	defer c.Close()
	ck := New(c)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ck.Check(); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSharedCheckerNeverPeeksAClosedConn: once shared, a Checker whose
// conn was closed by someone else reports the close, even when the
// descriptor number already names a new socket, which an unshared
// Checker would peek at and judge instead.
func TestSharedCheckerNeverPeeksAClosedConn(t *testing.T) {
	skipIfUnsupported(t)
	c, _ := pair(t)
	ck := New(c)
	ck.Share()
	_, err := ck.Check()
	require.NoError(t, err)
	require.NoError(t, c.Close())
	pair(t) // likely takes the number c had
	_, err = ck.Check()
	assert.ErrorIs(t, err, net.ErrClosed)
}
