// Package pooltest holds the helpers that the tests of connpool and of its
// exporter modules share: a pool and a loopback server, each closed at
// the end of the test. Only tests import it.
package pooltest

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/internal/testserver"
)

// NewPool returns a pool of addr on tcp, closed at the end of the test; a
// Close that fails for another reason than an earlier Close fails it.
func NewPool(t testing.TB, addr string, opts ...connpool.Option) *connpool.Pool {
	t.Helper()
	p, err := connpool.New("tcp", addr, opts...)
	require.NoError(t, err)
	t.Cleanup(func() {
		if err := p.Close(); err != nil && !errors.Is(err, connpool.ErrClosed) {
			t.Error(err)
		}
	})
	return p
}

// StartServer starts a loopback echo server closed at the end of the
// test.
func StartServer(t testing.TB, opts ...testserver.Option) *testserver.Server {
	t.Helper()
	srv, err := testserver.Start(opts...)
	require.NoError(t, err)
	t.Cleanup(func() { srv.Close() })
	return srv
}

// NewHostNamePool returns a pool, closed at the end of the test, of host
// at the port of srvAddr, a loopback server's "127.0.0.1:port", with a
// resolver that answers 127.0.0.1 for every name: a pool of a host name
// (connpool.WithResolver) whose one address is the server. It returns the
// address the pool was made with too.
func NewHostNamePool(t testing.TB, srvAddr, host string, opts ...connpool.Option) (*connpool.Pool, string) {
	t.Helper()
	_, port, err := net.SplitHostPort(srvAddr)
	require.NoError(t, err)
	resolver := connpool.ResolverFunc(func(context.Context, string, string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	})
	addr := net.JoinHostPort(host, port)
	return NewPool(t, addr, append([]connpool.Option{connpool.WithResolver(resolver)}, opts...)...), addr
}
