package connpoolfleet_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool/connpoolfleet"
)

// BenchmarkLedgerRenew renews simulated members round robin against one
// local redis-server: ns/op is a renew's round trip as the client sees it,
// redis-µs/renew the time Redis spent in the script (INFO commandstats).
// With a 3s TTL the water level over every member is recomputed once a
// second, so its cost is in the figure, spread over the renews.
func BenchmarkLedgerRenew(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			r := startRedis(b)
			rdb := r.client(b)
			ctx := context.Background()
			const ttl = 3 * time.Second
			rng := rand.New(rand.NewPCG(1, uint64(n)))
			demand := make([]float64, n)
			for i := range demand {
				demand[i] = float64(rng.IntN(8))
			}
			seq := time.Now().UnixMicro()
			for i := range n {
				seq++
				_, err := connpoolfleet.RenewOnce(ctx, rdb, "bench", fmt.Sprint("m", i), 2*n, ttl, demand[i], 0, 0, seq, fmt.Sprint("c", i))
				require.NoError(b, err)
			}
			before := commandStats(b, rdb)["evalsha"]
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				seq++
				if _, err := connpoolfleet.RenewOnce(ctx, rdb, "bench", fmt.Sprint("m", i%n), 2*n, ttl, demand[i%n], 1, 1, seq, fmt.Sprint("c", i%n)); err != nil {
					b.Fatal(err)
				}
				i++
			}
			after := commandStats(b, rdb)["evalsha"]
			if calls := after.calls - before.calls; calls > 0 {
				b.ReportMetric(float64(after.usec-before.usec)/float64(calls), "redis-µs/renew")
			}
		})
	}
}

// TestThousandMembersOneRoundTrip runs 1,000 members (with fake targets)
// against one redis-server and counts the round trips: one EVALSHA per
// member per renew interval, never more.
func TestThousandMembersOneRoundTrip(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 members: skipped in -short")
	}
	r := startRedis(t)
	const n, ttl = 1000, 1500 * time.Millisecond
	// Each member renews over a connection of its own, taken from the
	// client's pool: one process of a real fleet has one or a few members,
	// this one has 1,000.
	rdb := redis.NewClient(&redis.Options{Addr: r.addr, PoolSize: n + 10})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	members := make([]*connpoolfleet.Member, 0, n)
	t.Cleanup(func() {
		for _, m := range members {
			_ = m.Leave(ctx)
		}
	})
	for i := range n {
		d := i % 5
		// d callers each want a conn: as many are open as the cap allows,
		// the rest wait.
		target := connpoolfleet.FakeTarget(func(c int) (int, int, int) { return min(d, c), min(d, c), max(0, d-c) })
		m, err := connpoolfleet.Join(ctx, rdb, "thousand", 2*n, []connpoolfleet.Target{target},
			connpoolfleet.WithTTL(ttl), connpoolfleet.WithID(fmt.Sprint("m", i)))
		require.NoError(t, err)
		members = append(members, m)
	}
	before := commandStats(t, rdb)
	start := time.Now()
	waitUntil(t, start.Add(4*ttl/3)) // four intervals
	after := commandStats(t, rdb)
	elapsed := time.Since(start)
	calls := after["evalsha"].calls - before["evalsha"].calls
	intervals := float64(elapsed) / float64(ttl/3)
	perMember := float64(calls) / n / intervals
	assert.LessOrEqual(t, perMember, 1.1, "more than one round trip per member per interval")
	// commandstats counts the commands the script runs inside Redis too:
	// they are its work per renew, not round trips. CLIENT SETNAME rides in
	// the renew's pipeline; CLIENT LIST runs only when a lease ended.
	var inner int64
	for cmd, st := range after {
		switch cmd {
		case "evalsha", "info", "client|setname", "client|list":
		default:
			inner += st.calls - before[cmd].calls
		}
	}
	usec := float64(after["evalsha"].usec-before["evalsha"].usec) / float64(calls)
	setName := after["client|setname"]
	setName.calls -= before["client|setname"].calls
	setName.usec -= before["client|setname"].usec
	assert.Equal(t, calls, setName.calls, "one CLIENT SETNAME per renew, in its pipeline")
	lists := after["client|list"].calls - before["client|list"].calls
	states := map[connpoolfleet.State]int{}
	grants := 0
	for _, m := range members {
		s := m.Stats()
		states[s.State]++
		grants += s.Grant
	}
	t.Logf("FIGURES %s: %d renews in %v (%.1f intervals): %.2f round trips per member per interval, %.1f µs of Redis time and %.1f commands inside the script per renew, %.1f µs of CLIENT SETNAME, %d CLIENT LIST; states %v, grants %d of %d",
		t.Name(), calls, elapsed.Round(time.Millisecond), intervals, perMember, usec, float64(inner)/float64(calls),
		float64(setName.usec)/float64(max(setName.calls, 1)), lists, states, grants, 2*n)
}
