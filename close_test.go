package connpool_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestShutdownWithEndedContextAndNothingBorrowed pins a coin toss: with
// nothing borrowed and ctx already ended, both of Shutdown's select cases
// were ready, and it returned nil or a "still borrowed" error at random.
// Nothing borrowed means the drain is complete: nil, every time.
func TestShutdownWithEndedContextAndNothingBorrowed(t *testing.T) {
	srv := startServer(t)
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	for i := range 100 {
		p := newPool(t, srv.Addr())
		c := getConn(t, p)
		mustRoundTrip(t, c, "used")
		require.NoError(t, c.Close())
		require.NoError(t, p.Shutdown(ended), "run %d", i)
		require.Zero(t, p.Stats().OpenConns)
	}
}
