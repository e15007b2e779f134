//go:build unix

package sockcheck

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool/internal/testcert"
)

// tlsPair returns both ends of a TLS conn over loopback, handshaken.
func tlsPair(t *testing.T) (client, server *tls.Conn) {
	t.Helper()
	certs, err := testcert.New()
	require.NoError(t, err)
	c, s := pair(t)
	client = tls.Client(c, certs.Client)
	server = tls.Server(s, certs.Server)
	done := make(chan error, 1)
	go func() { done <- server.Handshake() }()
	require.NoError(t, client.Handshake())
	require.NoError(t, <-done)
	return client, server
}

// TestFramedStates checks a *tls.Conn through the socket it wraps: records
// waiting (a session ticket, data, the close_notify alert) are the
// protocol's and do not count as pending, but a close or reset behind them
// is found.
func TestFramedStates(t *testing.T) {
	skipIfUnsupported(t)
	hidesClose := runtime.GOOS != "linux" || runtime.GOARCH == "386" // no POLLRDHUP check: a close behind records waits for a read
	for _, tc := range []struct {
		name    string
		fault   func(t *testing.T, server *tls.Conn)
		wantErr bool
		behind  bool // the close waits behind unread records
	}{
		{"alive", func(*testing.T, *tls.Conn) {}, false, false},
		{"unread record", func(t *testing.T, s *tls.Conn) {
			_, err := s.Write([]byte("x"))
			require.NoError(t, err)
		}, false, false},
		{"peer closed with close_notify", func(t *testing.T, s *tls.Conn) { require.NoError(t, s.Close()) }, true, true},
		{"peer closed the socket", func(t *testing.T, s *tls.Conn) { require.NoError(t, s.NetConn().Close()) }, true, false},
		{"peer reset", func(t *testing.T, s *tls.Conn) {
			require.NoError(t, s.NetConn().(*net.TCPConn).SetLinger(0))
			require.NoError(t, s.NetConn().Close())
		}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.behind && hidesClose {
				t.Skipf("%s cannot see a close behind unread bytes", runtime.GOOS)
			}
			c, s := tlsPair(t)
			ck := New(c)
			require.NotNil(t, ck, "a *tls.Conn is checked through its NetConn")
			raw := New(c.NetConn())
			tc.fault(t, s)
			if !tc.wantErr {
				// Wait for what the fault sent (and the tickets) to arrive,
				// as the raw socket sees it, then judge once.
				if tc.name != "alive" {
					require.Eventually(t, func() bool { p, _ := raw.Check(); return p }, 2*time.Second, time.Millisecond)
				}
				pending, err := ck.Check()
				assert.False(t, pending, "records are not pending bytes")
				assert.NoError(t, err)
				return
			}
			assert.Eventually(t, func() bool {
				pending, err := ck.Check()
				return !pending && err != nil
			}, 2*time.Second, time.Millisecond)
		})
	}
}

// TestFramedCloseIsEOFOrReset names what a framed check reports for a
// close behind records: io.EOF, as for a plain socket.
func TestFramedCloseIsEOFOrReset(t *testing.T) {
	skipIfUnsupported(t)
	if runtime.GOOS != "linux" || runtime.GOARCH == "386" {
		t.Skip("needs POLLRDHUP")
	}
	c, s := tlsPair(t)
	ck := New(c)
	require.NoError(t, s.Close())
	var err error
	require.Eventually(t, func() bool { _, err = ck.Check(); return err != nil }, 2*time.Second, time.Millisecond)
	assert.True(t, errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET), "got %v", err)
}

// TestFramedCheckDoesNotAllocate: the poll behind records allocates
// nothing either.
func TestFramedCheckDoesNotAllocate(t *testing.T) {
	skipIfUnsupported(t)
	c, s := tlsPair(t)
	_, err := s.Write([]byte("x"))
	require.NoError(t, err)
	raw := New(c.NetConn())
	require.Eventually(t, func() bool { p, _ := raw.Check(); return p }, 2*time.Second, time.Millisecond)
	ck := New(c)
	assert.Zero(t, testing.AllocsPerRun(100, func() {
		if _, err := ck.Check(); err != nil {
			t.Fatal(err)
		}
	}))
}
