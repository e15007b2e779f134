package connpool_test

import (
	"context"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
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
