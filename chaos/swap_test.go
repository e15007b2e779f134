package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/collectors"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
)

// The address swap: a pool of a host name whose records move between two
// replicas, as a DNS failover or a Kubernetes rollout moves them, while
// the randomized load of TestRandomizedChaos runs. The replicas are two
// Toxiproxy proxies on one port, at 127.0.0.1 and 127.0.0.2, in front of
// the same echo server; the faults act on the first one.

// swapRecords answers for the pool's name with the set it holds.
type swapRecords struct {
	mu  sync.Mutex
	ips []netip.Addr
}

func (r *swapRecords) set(ips ...netip.Addr) {
	r.mu.Lock()
	r.ips = ips
	r.mu.Unlock()
}

func (r *swapRecords) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ips), nil
}

// secondReplica starts a proxy to e's upstream on 127.0.0.2, on the port
// of e's proxy, and returns the port.
func (e *env) secondReplica() string {
	e.t.Helper()
	_, port, err := net.SplitHostPort(e.addr())
	require.NoError(e.t, err)
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	srv.Metrics.ProxyMetrics = collectors.NewProxyMetricCollectors()
	second := toxiproxy.NewProxy(srv, e.t.Name()+"-2", net.JoinHostPort("127.0.0.2", port), e.upstream.Addr())
	require.NoError(e.t, second.Start(), "the second replica on the first one's port")
	e.t.Cleanup(second.Stop)
	return port
}

var (
	replicaA = netip.MustParseAddr("127.0.0.1")
	replicaB = netip.MustParseAddr("127.0.0.2")
	// swaps are the record sets the run moves between.
	swaps = [][]netip.Addr{{replicaA}, {replicaB}, {replicaA, replicaB}, {replicaB, replicaA}}
)

// swapRun drives a pool of a name over the two replicas with the
// randomized load of TestRandomizedChaos while the records swap at
// random, with the faults of the chaos run on the first replica or none.
func swapRun(t *testing.T, withFaults bool) (st connpool.Stats, gets, getErrors, ioErrors, swapped int64, e *env) {
	seed, duration := chaosConfig(t)
	t.Logf("address swap: seed %d, duration %v, faults %v", seed, duration, withFaults)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("replay with CONNPOOL_CHAOS_SEED=%d CONNPOOL_CHAOS_DURATION=%v go test -race -run %s ./chaos", seed, duration, t.Name())
		}
	})
	e = newEnv(t)
	port := e.secondReplica()
	records := &swapRecords{}
	records.set(replicaA)
	const maxConns = 8
	opts := []connpool.Option{
		connpool.WithDialer(e.dial), connpool.WithResolver(records), connpool.WithResolveInterval(25 * time.Millisecond),
		connpool.WithRebalanceRate(2),
		connpool.WithMaxConns(maxConns), connpool.WithMinIdle(2), connpool.WithMaxConnecting(4),
		connpool.WithDialTimeout(300 * time.Millisecond), connpool.WithDialBackoff(20*time.Millisecond, 200*time.Millisecond),
		connpool.WithHealthCheck(connpool.PingPong([]byte("health-check-ping"), []byte("health-check-ping"))),
		connpool.WithHealthCheckInterval(100 * time.Millisecond), connpool.WithHealthCheckTimeout(50 * time.Millisecond),
		connpool.WithIdleTimeout(400 * time.Millisecond), connpool.WithMaxLifetime(1500 * time.Millisecond),
	}
	p, err := connpool.New("tcp", net.JoinHostPort("replicas.chaos", port), opts...)
	require.NoError(t, err)

	stop := time.Now().Add(duration)
	var nGets, nGetErrors, nIOErrors, nSwaps atomic.Int64
	var wg sync.WaitGroup
	for g := range 16 {
		rng := rand.New(rand.NewPCG(seed, uint64(g)))
		wg.Go(func() {
			for i := 0; time.Now().Before(stop); i++ {
				wait := time.Second // without faults, no Get has cause to time out
				if withFaults {
					wait = time.Duration(1+rng.IntN(200)) * time.Millisecond
				}
				ctx, cancel := context.WithTimeout(context.Background(), wait)
				c, err := p.Get(ctx)
				if err != nil {
					nGetErrors.Add(1)
					cancel()
					continue
				}
				nGets.Add(1)
				if err := e.holdRandomly(ctx, c, int64(g+1), fmt.Sprintf("g%d-%d", g, i), rng); err != nil {
					nIOErrors.Add(1)
				}
				cancel()
			}
		})
	}
	wg.Go(func() { // the swaps
		rng := rand.New(rand.NewPCG(seed, 1<<33))
		for time.Now().Before(stop) {
			records.set(swaps[rng.IntN(len(swaps))]...)
			nSwaps.Add(1)
			time.Sleep(time.Duration(20+rng.IntN(150)) * time.Millisecond)
		}
	})
	if withFaults {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, 1<<32))
			for time.Now().Before(stop) {
				off := faults[rng.IntN(len(faults))].on(e)
				time.Sleep(time.Duration(50+rng.IntN(250)) * time.Millisecond)
				off()
				time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
			}
		})
	}
	wg.Wait()
	st = e.finish(p, maxConns, nGets.Load())
	t.Logf("address swap: %d swaps, %d requests, %d gets, %d Get errors, %d I/O errors, wrong %d; removed-closed %d, rebalanced %d, dials %d",
		nSwaps.Load(), e.requests.Load(), nGets.Load(), nGetErrors.Load(), nIOErrors.Load(), e.wrong.Load(),
		st.AddressRemovedClosed, st.RebalancedClosed, st.Dials)
	return st, nGets.Load(), nGetErrors.Load(), nIOErrors.Load(), nSwaps.Load(), e
}

// TestAddressSwapAddsNoFailures: with no fault injected, swapping the
// records during the randomized run fails no Get and no request, and
// delivers no wrong reply: drained conns are closed by the pool, never
// under a borrower.
func TestAddressSwapAddsNoFailures(t *testing.T) {
	st, gets, getErrors, ioErrors, swapped, e := swapRun(t, false)
	assert.Zero(t, getErrors, "Gets that failed")
	assert.Zero(t, ioErrors, "requests that failed")
	assert.Zero(t, e.wrong.Load(), "wrong replies")
	assert.Positive(t, gets)
	assert.Positive(t, swapped)
	assert.Positive(t, st.AddressRemovedClosed, "the swaps drained conns")
}

// TestRandomizedChaosWithAddressSwaps: the faults of the chaos run and
// the swaps together; the invariants of every scenario hold (finish),
// and no reply is another request's.
func TestRandomizedChaosWithAddressSwaps(t *testing.T) {
	_, gets, _, _, swapped, e := swapRun(t, true)
	assert.Zero(t, e.wrong.Load(), "wrong replies")
	assert.Positive(t, gets)
	assert.Positive(t, swapped)
}
