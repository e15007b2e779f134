package connpool_test

import (
	"context"
	"os"
	"runtime"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/connpool/connpool"
)

// TestMain fails the package if any test leaves a goroutine behind: a
// pool's maintainer, a dial, a health check, a waiter, a test server.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// openFDs counts this process's open file descriptors, or -1 where
// /proc is not available.
func openFDs(t *testing.T) int {
	t.Helper()
	if runtime.GOOS != "linux" {
		return -1
	}
	entries, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(entries)
}

// TestNoFDLeak runs a busy workload with faults and checks that closing
// the pool and the server gives back every file descriptor.
func TestNoFDLeak(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counts fds through /proc")
	}
	before := openFDs(t)
	func() {
		srv := startServer(t)
		p := newPool(t, srv.Addr(), connpool.WithMaxConns(8), connpool.WithMinIdle(2))
		var wg sync.WaitGroup
		for g := range 16 {
			wg.Go(func() {
				for i := range 50 {
					c, err := p.Get(context.Background())
					if err != nil {
						continue
					}
					if _, err := roundTrip(c, "leak"); err != nil || (g+i)%7 == 0 {
						c.MarkUnusable()
					}
					_ = c.Close()
				}
			})
		}
		wg.Wait()
		require.NoError(t, srv.ResetConns())
		require.NoError(t, p.Close())
		require.NoError(t, srv.Close())
		st := p.Stats()
		assert.Zero(t, st.OpenConns)
		assert.Equal(t, st.Dials, closedTotal(st))
	}()
	// Sockets of earlier tests may still be closing when before is taken,
	// so after may be lower; it must never be higher.
	assert.Eventually(t, func() bool { return openFDs(t) <= before }, waitFor, tick, "fds leaked")
}
