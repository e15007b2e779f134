package connpool_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/internal/testcert"
)

// tlsEcho is a TLS echo server whose conns the test can close as a server
// that restarts does: with a close_notify alert before the FIN, or by
// dropping the socket.
type tlsEcho struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []*tls.Conn
}

func startTLSEcho(t *testing.T, config *tls.Config) *tlsEcho {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &tlsEcho{ln: ln}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := tls.Server(c, config)
			s.mu.Lock()
			s.conns = append(s.conns, tc)
			s.mu.Unlock()
			s.wg.Go(func() { _, _ = io.Copy(tc, tc) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		s.closeConns(false)
		s.wg.Wait()
	})
	return s
}

// closeConns closes every conn the server has, gracefully (tls.Conn.Close
// sends close_notify) or by closing the socket under the TLS.
func (s *tlsEcho) closeConns(graceful bool) {
	s.mu.Lock()
	conns := s.conns
	s.conns = nil
	s.mu.Unlock()
	for _, c := range conns {
		if graceful {
			c.Close()
		} else {
			c.NetConn().Close()
		}
	}
}

// TestTLSConnsThePeerClosedAreNotHandedOut: after a TLS server closes its
// conns, as one that restarts does, every Get hands out a working conn.
// The pool used to skip the checkout peek for a *tls.Conn and hand out
// each dead idle conn once.
func TestTLSConnsThePeerClosedAreNotHandedOut(t *testing.T) {
	certs, err := testcert.New()
	require.NoError(t, err)
	for _, graceful := range []bool{true, false} {
		name := "socket closed"
		if graceful {
			name = "close_notify"
		}
		t.Run(name, func(t *testing.T) {
			if graceful && !peerCloseBehindRecordsVisible {
				t.Skip("this platform cannot see a close behind unread records")
			}
			srv := startTLSEcho(t, certs.Server)
			dialer := &tls.Dialer{Config: certs.Client}
			p := newPool(t, srv.ln.Addr().String(), connpool.WithDialer(dialer.DialContext),
				connpool.WithMaxConns(3), connpool.WithMinIdle(0))
			ctx := context.Background()
			var conns []*connpool.Conn
			for range 3 {
				c, err := p.Get(ctx)
				require.NoError(t, err)
				mustRoundTrip(t, c, "before")
				conns = append(conns, c)
			}
			for _, c := range conns {
				require.NoError(t, c.Close())
			}
			srv.closeConns(graceful)
			// On loopback the close has reached the client once the
			// server's close returns.
			for i := range 3 {
				c, err := p.Get(ctx)
				require.NoError(t, err)
				got, err := roundTrip(c, "after")
				require.NoError(t, err, "Get %d handed out a conn the server had closed", i)
				assert.Equal(t, "after", got)
				require.NoError(t, c.Close())
			}
			// One dial replaced the first dead conn, and each later Get
			// reused it; the other two were swept.
			assert.EqualValues(t, 4, p.Stats().Dials)
			require.Eventually(t, func() bool { return closedTotal(p.Stats()) == 3 }, waitFor, tick)
			checkBooks(t, p.Stats())
		})
	}
}
