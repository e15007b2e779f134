package pooltest

import (
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

// RefusingAddr returns a loopback "127.0.0.1:port" where nothing listens,
// so that a dial to it is refused at once: a backend in an outage. It
// listens on a free port and closes the listener.
func RefusingAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}
