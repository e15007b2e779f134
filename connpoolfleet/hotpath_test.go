package connpoolfleet_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/connpoolfleet"
)

// TestNoRedisCallOnGetPut counts the commands Redis runs (INFO
// commandstats) during 10,000 Gets and Puts of a member's pool: none. The
// Gets and Puts run in batches of 1,000, and a batch during which a renew
// ran (one is due every interval) is run again: INFO commandstats also
// counts the commands a renew's script runs, which cannot be told from
// others. Regression: on a loaded machine the renews due during one long
// run of 10,000 brought their script's commands into the count.
func TestNoRedisCallOnGetPut(t *testing.T) {
	r := startRedis(t)
	srv := startCountServer(t)
	rdb := r.client(t)
	gate := connpoolfleet.NewGate()
	pool, err := connpool.New("tcp", srv.addr(), connpool.WithMaxConns(1), connpool.WithDialer(gate.Dialer(helloDial("hot"))))
	require.NoError(t, err)
	t.Cleanup(func() { _ = pool.Close() })
	const ttl = 3 * time.Second
	m, err := connpoolfleet.Join(context.Background(), rdb, "hot", 20,
		[]connpoolfleet.Target{connpoolfleet.PoolTarget(pool)}, connpoolfleet.WithTTL(ttl), connpoolfleet.WithGate(gate))
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Leave(context.Background()) })
	// A new ledger starts with a learning period of one TTL.
	require.Eventually(t, func() bool { return m.Stats().State == connpoolfleet.StateGranted }, settle, tick)

	ctx := context.Background()
	clean, renewed := 0, 0
	var elapsed time.Duration
	for clean < 10 {
		require.Less(t, renewed, 20, "a renew ran during %d batches of 1,000 Gets and Puts", renewed)
		before := commandCalls(t, rdb)
		start := time.Now()
		for range 1000 {
			c, err := pool.Get(ctx)
			require.NoError(t, err)
			require.NoError(t, c.Close())
		}
		took := time.Since(start)
		after := commandCalls(t, rdb)
		if after["evalsha"]+after["eval"] != before["evalsha"]+before["eval"] {
			renewed++
			continue
		}
		delta := map[string]int64{}
		for cmd, n := range after {
			if d := n - before[cmd]; d > 0 && cmd != "info" {
				delta[cmd] = d
			}
		}
		require.Empty(t, delta, "Redis commands during 1,000 Gets and Puts")
		clean++
		elapsed += took
	}
	t.Logf("FIGURES %s: 10000 Get+Put in %v with no Redis command; %d batches of 1,000 run again for a renew during them",
		t.Name(), elapsed.Round(time.Millisecond), renewed)
}
