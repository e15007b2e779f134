// Package pooltest holds the helpers that the tests of connpool and of its
// exporter modules share: a pool and a loopback server, each closed at
// the end of the test. Only tests import it.
package pooltest

import (
	"errors"
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
