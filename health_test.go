package connpool_test

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/internal/testserver"
)

// TestLiveness runs the Liveness checker on conns in each state it must
// tell apart.
func TestLiveness(t *testing.T) {
	for _, tc := range []struct {
		name   string
		conn   func(t *testing.T) net.Conn
		passes bool
	}{
		{"open", func(t *testing.T) net.Conn { return dialServer(t) }, true},
		{"closed by the peer", func(t *testing.T) net.Conn {
			srv := startServer(t)
			c, err := net.Dial("tcp", srv.Addr())
			require.NoError(t, err)
			t.Cleanup(func() { c.Close() })
			require.Eventually(t, func() bool { return srv.Open() == 1 }, waitFor, tick)
			require.NoError(t, srv.CloseConns())
			require.Eventually(t, func() bool {
				return connpool.Liveness().Check(context.Background(), c) != nil
			}, waitFor, tick, "the FIN arrives")
			return c
		}, false},
		{"closed here", func(t *testing.T) net.Conn {
			c := dialServer(t)
			require.NoError(t, c.Close())
			return c
		}, false},
		{"no socket", func(t *testing.T) net.Conn {
			a, b := net.Pipe()
			t.Cleanup(func() { a.Close(); b.Close() })
			return a
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := connpool.Liveness().Check(context.Background(), tc.conn(t))
			if tc.passes {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, connpool.ErrHealthCheck)
			}
		})
	}
}

func dialServer(t *testing.T) net.Conn {
	t.Helper()
	srv := startServer(t)
	c, err := net.Dial("tcp", srv.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestDialerReturningNothing(t *testing.T) {
	p := newPool(t, "127.0.0.1:1", connpool.WithDialer(
		func(context.Context, string, string) (net.Conn, error) { return nil, nil }))
	_, err := p.Get(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "neither a conn nor an error")
}

func TestDialerErrorWithConnClosesIt(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr(), connpool.WithDialer(
		func(ctx context.Context, network, address string) (net.Conn, error) {
			var nd net.Dialer
			c, err := nd.DialContext(ctx, network, address)
			require.NoError(t, err)
			return c, errors.New("handshake failed")
		}))
	_, err := p.Get(context.Background())
	require.ErrorContains(t, err, "handshake failed")
	assert.Eventually(t, func() bool { return srv.Open() == 0 }, waitFor, tick)
}

func TestPingPongCatchesSilentServer(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr(), connpool.WithMinIdle(2),
		connpool.WithHealthCheck(connpool.PingPong([]byte("PING\r\n"), []byte("PING\r\n"))),
		connpool.WithHealthCheckInterval(30*time.Millisecond),
		connpool.WithHealthCheckTimeout(20*time.Millisecond))
	require.Eventually(t, func() bool { return p.Stats().Idle == 2 }, waitFor, tick)
	// Echo answers PING with PING: healthy. Let a few checks pass.
	dials := p.Stats().Dials
	require.Eventually(t, func() bool { return p.Stats().Idle == 2 }, waitFor, tick)

	srv.SetMode(testserver.Silent)
	require.Eventually(t, func() bool { return p.Stats().HealthFailures >= 2 }, waitFor, tick)
	assert.Eventually(t, func() bool { return p.Stats().Dials > dials }, waitFor, tick, "replacements dialed")

	srv.SetMode(testserver.Echo)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, err := p.Get(ctx)
	require.NoError(t, err)
	mustRoundTrip(t, c, "answering again")
	require.NoError(t, c.Close())
}

func TestPingPong(t *testing.T) {
	srv := startServer(t)
	nc, err := net.Dial("tcp", srv.Addr())
	require.NoError(t, err)
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()

	assert.NoError(t, connpool.PingPong([]byte("ping"), []byte("ping")).Check(ctx, nc))
	err = connpool.PingPong([]byte("ping"), []byte("pong")).Check(ctx, nc)
	assert.ErrorIs(t, err, connpool.ErrHealthCheck)
	assert.Contains(t, err.Error(), `got "ping", want "pong"`)

	ping := []byte("abcd")
	checker := connpool.PingPong(ping, ping)
	copy(ping, "zzzz") // PingPong copied its arguments
	buf := make([]byte, 4)
	assert.NoError(t, checker.Check(ctx, nc))
	require.NoError(t, nc.SetReadDeadline(time.Now().Add(20*time.Millisecond)))
	_, err = nc.Read(buf)
	assert.Error(t, err, "the checker read exactly its reply")

	srv.SetMode(testserver.Silent)
	short, cancelShort := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancelShort()
	require.NoError(t, nc.SetReadDeadline(time.Time{}))
	err = connpool.PingPong([]byte("x"), []byte("x")).Check(short, nc)
	assert.ErrorIs(t, err, connpool.ErrHealthCheck)
}

func TestHealthCheckFunc(t *testing.T) {
	srv := startServer(t)
	var checked atomic.Int32
	p := newPool(t, srv.Addr(), connpool.WithMinIdle(1),
		connpool.WithHealthCheckInterval(10*time.Millisecond),
		connpool.WithHealthCheck(connpool.HealthCheckFunc(func(ctx context.Context, c net.Conn) error {
			_, ok := ctx.Deadline()
			assert.True(t, ok, "each check has a deadline")
			if checked.Add(1) > 2 {
				return errors.New("reject")
			}
			return nil
		})))
	require.Eventually(t, func() bool { return p.Stats().HealthFailures >= 1 }, waitFor, tick)
	// A checker that rejects conns never makes Get fail.
	c, err := p.Get(context.Background())
	require.NoError(t, err)
	require.NoError(t, c.Close())
}

// TestDirtyConnsLeadToFreshDial: when the checkout peek keeps rejecting
// idle conns, a Get gives up on them after a few and dials a fresh one,
// rather than walking the whole idle set.
func TestDirtyConnsLeadToFreshDial(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(8))
	for _, c := range holdAll(t, p, 6) {
		mustRoundTrip(t, c, "used")
		require.NoError(t, c.Close())
	}
	// Loopback delivers within the server's write, so once Send returns
	// every idle conn has bytes nobody asked for.
	require.NoError(t, srv.Send([]byte("unasked")))
	c, err := p.Get(context.Background())
	require.NoError(t, err)
	mustRoundTrip(t, c, "fresh")
	require.NoError(t, c.Close())
	st := p.Stats()
	assert.Equal(t, int64(3), st.HealthFailures, "three rejections, then a fresh dial")
	assert.Equal(t, int64(7), st.Dials)
	assert.Equal(t, int64(1), st.Misses-6, "the Get was served by the fresh dial")
	checkBooks(t, st)
}
