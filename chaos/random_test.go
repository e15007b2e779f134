package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/connpool/connpool"
)

// chaosConfig reads the run's seed and duration from the environment:
// CONNPOOL_CHAOS_SEED to replay a run, CONNPOOL_CHAOS_DURATION (a Go
// duration) for a longer one. The default is a few seconds, for CI.
func chaosConfig(t *testing.T) (seed uint64, d time.Duration) {
	seed, d = uint64(time.Now().UnixNano()), 3*time.Second
	if s := os.Getenv("CONNPOOL_CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, "CONNPOOL_CHAOS_SEED")
		seed = v
	}
	if s := os.Getenv("CONNPOOL_CHAOS_DURATION"); s != "" {
		v, err := time.ParseDuration(s)
		require.NoError(t, err, "CONNPOOL_CHAOS_DURATION")
		d = v
	}
	if testing.Short() {
		d = min(d, time.Second)
	}
	return seed, d
}

// fault is one kind of trouble the chaos goroutine switches on and off.
type fault struct {
	name string
	on   func(e *env) (off func())
}

var faults = []fault{
	{"latency", func(e *env) func() { return e.toxic("latency", "downstream", `{"latency":20,"jitter":15}`) }},
	{"reset", func(e *env) func() { return e.toxic("reset_peer", "downstream", `{"timeout":5}`) }},
	{"cut replies", func(e *env) func() { return e.toxic("limit_data", "downstream", `{"bytes":200}`) }},
	{"blackhole", func(e *env) func() { return e.toxic("timeout", "upstream", `{"timeout":0}`) }},
	{"slow close", func(e *env) func() { return e.toxic("slow_close", "downstream", `{"delay":50}`) }},
	{"backend down", func(e *env) func() {
		e.proxy.Stop()
		return func() { require.NoError(e.t, e.proxy.Start()) }
	}},
	{"server closes conns", func(e *env) func() {
		_ = e.upstream.CloseConns()
		return func() {}
	}},
	{"server resets conns", func(e *env) func() {
		_ = e.upstream.ResetConns()
		return func() {}
	}},
}

// TestRandomizedChaos runs many goroutines doing Get / request / Put or
// MarkUnusable, with random deadlines and cancellations, while faults are
// switched on and off at random; then it closes the pool and checks every
// invariant. It is seeded and reproducible: the seed is printed, and a
// failure says how to replay it.
func TestRandomizedChaos(t *testing.T) {
	seed, duration := chaosConfig(t)
	t.Logf("chaos: seed %d, duration %v", seed, duration)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("chaos run failed; replay with CONNPOOL_CHAOS_SEED=%d CONNPOOL_CHAOS_DURATION=%v go test -race -run TestRandomizedChaos ./chaos", seed, duration)
		}
	})
	goroutinesBefore := goleak.IgnoreCurrent()
	e := newEnv(t)
	const maxConns = 8
	p := e.pool(connpool.WithMaxConns(maxConns), connpool.WithMinIdle(2), connpool.WithMaxConnecting(4),
		connpool.WithDialTimeout(300*time.Millisecond), connpool.WithDialBackoff(20*time.Millisecond, 200*time.Millisecond),
		connpool.WithHealthCheck(connpool.PingPong([]byte("health-check-ping"), []byte("health-check-ping"))),
		connpool.WithHealthCheckInterval(100*time.Millisecond), connpool.WithHealthCheckTimeout(50*time.Millisecond),
		connpool.WithIdleTimeout(400*time.Millisecond), connpool.WithMaxLifetime(1500*time.Millisecond))

	stop := time.Now().Add(duration)
	var gets, getErrors, ioErrors, injected atomic.Int64
	var wg sync.WaitGroup
	for g := range 16 {
		rng := rand.New(rand.NewPCG(seed, uint64(g)))
		wg.Go(func() {
			for i := 0; time.Now().Before(stop); i++ {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(1+rng.IntN(200))*time.Millisecond)
				if rng.IntN(10) == 0 { // cancelled while it may be waiting
					go func(d time.Duration) { time.Sleep(d); cancel() }(time.Duration(rng.IntN(5)) * time.Millisecond)
				}
				c, err := p.Get(ctx)
				if err != nil {
					getErrors.Add(1)
					cancel()
					continue
				}
				gets.Add(1)
				if err := e.holdRandomly(ctx, c, int64(g+1), fmt.Sprintf("g%d-%d", g, i), rng); err != nil {
					ioErrors.Add(1)
				}
				cancel()
			}
		})
	}
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(seed, 1<<32))
		for time.Now().Before(stop) {
			f := faults[rng.IntN(len(faults))]
			off := f.on(e)
			injected.Add(1)
			time.Sleep(time.Duration(50+rng.IntN(250)) * time.Millisecond)
			off()
			time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
		}
	})
	wg.Wait()

	st := e.finish(p, maxConns, gets.Load())
	e.proxy.Stop()
	e.upstream.Close()
	goroutinesLeaked := 0 // goleak.Find retries for a while before it reports
	if err := goleak.Find(goroutinesBefore, toxiproxyOwn); err != nil {
		goroutinesLeaked = strings.Count(err.Error(), "Goroutine ")
	}
	fdsLeaked := settle(func() int { return openFDs() - e.fdBefore })

	report := fmt.Sprintf(`chaos run: seed %d, %v, MaxConns %d
  requests              %d
  successful gets       %d
  faults injected       %d
  errors returned       %d (Get %d, I/O %d)
  wrong bytes delivered %d
  double borrows        %d
  permits leaked        %d
  goroutines leaked     %d
  fds leaked            %d
  peak sockets open     %d
  pool: dials %d, dial errors %d, hits %d, misses %d, timeouts %d, health failures %d, broken %d, idle closed %d, lifetime closed %d
`, seed, duration, maxConns, e.requests.Load(), gets.Load(), injected.Load(),
		getErrors.Load()+ioErrors.Load(), getErrors.Load(), ioErrors.Load(), e.wrong.Load(), e.doubleBorrow.Load(),
		st.InUse+st.OpenConns, goroutinesLeaked, fdsLeaked, e.peak.Load(),
		st.Dials, st.DialErrors, st.Hits, st.Misses, st.Timeouts, st.HealthFailures, st.BrokenClosed, st.IdleClosed, st.LifetimeClosed)
	t.Log("\n" + report)
	if path := os.Getenv("CONNPOOL_CHAOS_REPORT"); path != "" {
		require.NoError(t, os.WriteFile(path, []byte(report), 0o644))
	}
	assert.Zero(t, goroutinesLeaked, "goroutines leaked")
	assert.Zero(t, fdsLeaked, "fds leaked")
	assert.Positive(t, gets.Load())
	assert.Positive(t, injected.Load())
}

// settle polls f until it is at most 0 or a few seconds pass, and returns
// its last value floored at 0: what is still leaked then.
func settle(f func() int) int {
	deadline := time.After(5 * time.Second)
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for {
		n := f()
		if n <= 0 {
			return 0
		}
		select {
		case <-deadline:
			return n
		case <-poll.C:
		}
	}
}
