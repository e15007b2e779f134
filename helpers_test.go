package connpool_test

import (
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/internal/pooltest"
	"github.com/connpool/connpool/internal/testserver"
)

// waitFor bounds every Eventually in these tests: generous, because the
// machines are shared, and never reached when the code is right.
const waitFor = 5 * time.Second

const tick = time.Millisecond

// startServer starts a loopback echo server, and newPool a pool, each
// closed at the end of the test.
var (
	startServer = pooltest.StartServer
	newPool     = pooltest.NewPool
)

// roundTrip sends msg over c and returns what the echo server sent back.
var roundTrip = testserver.RoundTrip

// mustRoundTrip checks that c carries msg and back intact.
func mustRoundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	got, err := roundTrip(c, msg)
	require.NoError(t, err)
	require.Equal(t, msg, got)
}

// localPort identifies the socket behind a conn, to tell reuse from a
// fresh dial.
func localPort(c net.Conn) int { return c.LocalAddr().(*net.TCPAddr).Port }

// closedTotal adds up the conns closed for every reason.
func closedTotal(s connpool.Stats) int64 {
	return s.IdleClosed + s.LifetimeClosed + s.HealthFailures + s.BrokenClosed +
		s.MaxIdleClosed + s.ReleasedClosed + s.PoolClosed + s.ResetClosed + s.DetachedClosed + s.LeakedClosed + s.ResizedClosed +
		s.AddressRemovedClosed + s.RebalancedClosed + s.EjectedClosed
}

// checkBooks asserts the invariants that must hold whenever the pool is
// quiet: gauges within the cap, and every dialed conn open or closed for
// exactly one reason.
func checkBooks(t *testing.T, s connpool.Stats) {
	t.Helper()
	require.LessOrEqual(t, s.OpenConns+s.Dialing, s.MaxConns)
	require.Equal(t, s.OpenConns, s.InUse+s.Idle+s.Closing, "open conns are in use, idle or closing")
	require.Equal(t, s.Dials, int64(s.OpenConns)+closedTotal(s), "dials = open + closed")
}

// watchLedger checks p's custody ledger over and over, from a goroutine
// of its own, until the returned function is called; that function then
// checks it once more and fails the test with the first imbalance seen.
func watchLedger(t testing.TB, p *connpool.Pool) (stop func()) {
	t.Helper()
	done := make(chan struct{})
	found := make(chan error, 1)
	go func() {
		var first error
		for first == nil {
			select {
			case <-done:
				found <- nil
				return
			default:
			}
			first = p.CheckInvariants()
			runtime.Gosched()
		}
		<-done
		found <- first
	}()
	return func() {
		t.Helper()
		close(done)
		require.NoError(t, <-found, "the ledger while the test ran")
		require.NoError(t, p.CheckInvariants(), "the ledger at the end")
	}
}
