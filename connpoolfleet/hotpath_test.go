package connpoolfleet_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/connpoolfleet"
)

// TestNoRedisCallOnGetPut counts the commands Redis runs (INFO
// commandstats) during 10,000 Gets and Puts of a member's pool: none, but
// for the renews due in that time (one per interval).
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

	before := commandCalls(t, rdb)
	start := time.Now()
	ctx := context.Background()
	for range 10_000 {
		c, err := pool.Get(ctx)
		require.NoError(t, err)
		require.NoError(t, c.Close())
	}
	elapsed := time.Since(start)
	after := commandCalls(t, rdb)
	renewsDue := int64(elapsed/(ttl/3)) + 1 // and one that may straddle the start
	var others int64
	for cmd, n := range after {
		switch cmd {
		case "info":
		case "evalsha", "eval", "client|setname": // a renew, and the name in its pipeline
			assert.LessOrEqual(t, n-before[cmd], renewsDue, "%s calls beyond the renews due", cmd)
		default:
			others += n - before[cmd]
		}
	}
	assert.Zero(t, others, "Redis commands during Gets and Puts: %v then %v", before, after)
	t.Logf("FIGURES %s: 10000 Get+Put in %v; Redis commands in that time: evalsha %d (renews due %d), other %d",
		t.Name(), elapsed.Round(time.Millisecond), after["evalsha"]-before["evalsha"], renewsDue, others)
}
