package connpoolotel_test

import (
	"context"
	"errors"
	"flag"
	"math/rand/v2"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"golang.org/x/sync/errgroup"

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/connpoolotel"
	"github.com/connpool/connpool/internal/pooltest"
)

var stressDuration = flag.Duration("connpoolotel.stress", time.Second,
	"how long TestObserveMatchesStatsUnderLoad runs its workers")

// TestObserveMatchesStatsUnderLoad runs many goroutines against a small
// pool (Gets with random short deadlines, some timing out, MarkUnusable,
// Detach, DialContext, Reset, while a collector collects), quiesces it,
// and checks that one collection says what Stats says: every gauge and
// counter, every close reason, and the histograms' counts, buckets and
// sums. It then closes the pool and checks the closes again.
func TestObserveMatchesStatsUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("stress test")
	}
	srv := startServer(t)
	h := newHarness(t)
	const minIdle = 1
	pool := newPool(t, srv.Addr(), connpool.WithName("stress"),
		connpool.WithMaxConns(4), connpool.WithMaxIdle(2), connpool.WithMinIdle(minIdle),
		connpool.WithUseTimeMetrics(true),
		// No background closes or checks: once the workers stop, the
		// pool is still, and Stats and a collection can be compared.
		connpool.WithIdleTimeout(0), connpool.WithMaxLifetime(0), connpool.WithHealthCheckInterval(0),
		// A queue policy that reacts within a millisecond, so that shed
		// Gets are observed too (shed_deadline, shed_overload).
		connpool.WithQueuePolicy(connpool.QueuePolicy{DeadlineAdmission: true, AdaptiveLIFO: true,
			Target: 50 * time.Microsecond, Interval: time.Millisecond, ShedAfter: 2 * time.Millisecond}),
		connpool.WithHooks(h.m.Hooks()))
	h.observe(t, pool)

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	var puts [16]int64 // by worker: conns returned by Put or Close, each a use_time point
	stop := make(chan struct{})
	time.AfterFunc(*stressDuration, func() { close(stop) })
	var g errgroup.Group
	for w := range len(puts) {
		rng := rand.New(rand.NewPCG(seed, uint64(w)))
		g.Go(func() error {
			for {
				select {
				case <-stop:
					return nil
				default:
				}
				n, err := borrowOnce(pool, srv.Addr(), rng)
				puts[w] += n
				if err != nil {
					return err
				}
			}
		})
	}
	g.Go(func() error { // collections race with the hooks and Stats
		for {
			select {
			case <-stop:
				return nil
			case <-time.After(time.Millisecond):
				var rm metricdata.ResourceMetrics
				if err := h.reader.Collect(context.Background(), &rm); err != nil {
					return err
				}
			}
		}
	})
	require.NoError(t, g.Wait())
	var total int64
	for _, n := range puts {
		total += n
	}

	// Quiet: nothing borrowed, waiting or dialing, and MinIdle met, so
	// that the warmer has nothing to dial. A DialDone hook runs before its
	// dial leaves Dialing, so every create_time point is in.
	require.Eventually(t, func() bool {
		s := pool.Stats()
		return s.InUse == 0 && s.Waiting == 0 && s.Dialing == 0 && s.Idle >= minIdle
	}, waitFor, tick)
	before := pool.Stats()
	got := h.collect(t)
	s := pool.Stats()
	require.Equal(t, before, s, "the pool moved during the collection")
	t.Log(s)
	require.Positive(t, s.Timeouts, "some Gets timed out")
	require.Positive(t, s.ShedDeadline+s.ShedOverload, "some Gets were shed")
	require.Positive(t, s.WaitCount, "some Gets queued")
	require.Positive(t, s.BrokenClosed, "some conns were closed")

	name := poolName("stress")
	checkGauges(t, got, name, s)
	checkCloses(t, got, name, s)

	create, ok := got.histPoint("db.client.connection.create_time", name)
	require.True(t, ok)
	assert.Equal(t, uint64(s.Dials), create.Count, "one point per successful dial")
	assert.Equal(t, s.DialTime.Buckets[:], create.BucketCounts, "the dial times Stats saw")
	assert.InDelta(t, s.DialTime.Sum.Seconds(), create.Sum, 1e-9)

	wait, ok := got.histPoint("db.client.connection.wait_time", name)
	require.True(t, ok)
	assert.Equal(t, uint64(s.WaitCount), wait.Count, "one point per Get that queued")
	assert.InDelta(t, s.WaitDuration.Seconds(), wait.Sum, 1e-9, "the sum is WaitDuration")
	assert.Equal(t, s.WaitTime.Sum, s.WaitDuration)

	use, ok := got.histPoint("db.client.connection.use_time", name)
	require.True(t, ok)
	assert.Equal(t, uint64(total), use.Count, "one point per Put")
	assert.Equal(t, s.UseTime.Buckets[:], use.BucketCounts, "the use times Stats saw")
	assert.InDelta(t, s.UseTime.Sum.Seconds(), use.Sum, 1e-9)

	require.NoError(t, pool.Close())
	got = h.collect(t)
	s = pool.Stats()
	assert.Equal(t, before.PoolClosed+int64(before.Idle), s.PoolClosed, "Close closed the idle conns")
	checkGauges(t, got, name, s)
	checkCloses(t, got, name, s)
}

// borrowOnce does one random thing with pool: a Get with a random short
// deadline (sometimes already past), then a hold, a round trip, and a
// return, a MarkUnusable or a Detach; or a DialContext; or a Reset. It
// returns how many conns it returned to the pool, and an error only for
// what the pool should not have done.
func borrowOnce(pool *connpool.Pool, addr string, rng *rand.Rand) (puts int64, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rng.IntN(2000))*time.Microsecond)
	defer cancel()
	switch n := rng.IntN(100); {
	case n == 0:
		return 0, pool.Reset()
	case n < 4:
		c, err := pool.DialContext(ctx, "tcp", addr)
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, connpool.ErrShed) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		return 1, c.Close()
	}
	c, err := pool.Get(ctx)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, connpool.ErrShed) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	time.Sleep(time.Duration(rng.IntN(500)) * time.Microsecond) // a borrower's work, not an ordering
	if rng.IntN(10) == 0 {
		if err := roundTrip(c); err != nil {
			return 0, err
		}
	}
	switch n := rng.IntN(100); {
	case n < 2:
		nc, err := c.Detach()
		if err != nil {
			return 0, err
		}
		return 0, nc.Close()
	case n < 15:
		c.MarkUnusable()
	}
	return 1, c.Close()
}

// roundTrip checks that c carries a few bytes to the echo server and back.
func roundTrip(c net.Conn) error {
	if err := c.SetDeadline(time.Now().Add(waitFor)); err != nil {
		return err
	}
	msg := []byte("ping")
	if _, err := c.Write(msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := c.Read(buf); err != nil {
		return err
	}
	if string(buf) != string(msg) {
		return errors.New("echo: got " + string(buf))
	}
	return nil
}

// checkGauges asserts that the collected gauges and counters are s's.
func checkGauges(t *testing.T, got collected, name attribute.KeyValue, s connpool.Stats) {
	t.Helper()
	for _, c := range []struct {
		metric string
		extra  []attribute.KeyValue
		want   int64
	}{
		{"db.client.connection.count", []attribute.KeyValue{state("idle")}, int64(s.Idle)},
		{"db.client.connection.count", []attribute.KeyValue{state("used")}, int64(s.InUse)},
		{"db.client.connection.max", nil, int64(s.MaxConns)},
		{"db.client.connection.idle.min", nil, int64(s.MinIdle)},
		{"db.client.connection.idle.max", nil, int64(s.MaxIdle)},
		{"db.client.connection.pending_requests", nil, int64(s.Waiting)},
		{"db.client.connection.timeouts", nil, s.Timeouts},
	} {
		v, ok := got.int64Point(c.metric, append(c.extra, name)...)
		if assert.True(t, ok, "%s %v", c.metric, c.extra) {
			assert.Equal(t, c.want, v, "%s %v", c.metric, c.extra)
		}
	}
	gets := map[string]int64{"hit": s.Hits, "miss": s.Misses}
	for _, f := range connpool.GetFailures() {
		gets[f.String()] = s.Failed(f)
	}
	for result, want := range gets {
		attrs := []attribute.KeyValue{name, attribute.String("connpool.get.result", result)}
		if result != "hit" && result != "miss" {
			attrs = append(attrs, attribute.String("error.type", result))
		}
		v, ok := got.int64Point("connpool.client.connection.gets", attrs...)
		if assert.True(t, ok, "gets %s", result) {
			assert.Equal(t, want, v, "gets %s", result)
		}
	}
}

// checkCloses asserts that the collected closes by reason are s's close
// counters, and that with the open conns they account for every dial.
func checkCloses(t *testing.T, got collected, name attribute.KeyValue, s connpool.Stats) {
	t.Helper()
	byReason := closeCountersByName(s)
	var sum int64
	for r, want := range byReason {
		v, ok := got.int64Point("connpool.client.connection.closed", name,
			reasonKey.String(r))
		if assert.True(t, ok, r) {
			assert.Equal(t, want, v, r)
		}
		sum += v
	}
	assert.Equal(t, s.Dials, int64(s.OpenConns)+sum, "dials = open + closed, by the metric")
}

// closeCountersByName returns s's close counters by reason, found by
// reflection: every int64 field named ...Closed, and HealthFailures (the
// unhealthy reason). The names are CloseReason.String()'s, in snake case.
func closeCountersByName(s connpool.Stats) map[string]int64 {
	out := make(map[string]int64)
	v := reflect.ValueOf(s)
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if f.Type.Kind() != reflect.Int64 {
			continue
		}
		switch {
		case f.Name == "HealthFailures":
			out[connpool.CloseUnhealthy.String()] = v.Field(i).Int()
		case strings.HasSuffix(f.Name, "Closed"):
			out[snake(strings.TrimSuffix(f.Name, "Closed"))] = v.Field(i).Int()
		}
	}
	return out
}

// snake turns "MaxIdle" into "max_idle" and "Pool" into "pool": the Stats
// field names become CloseReason names, but for Pool, whose reason is
// "pool_closed".
func snake(s string) string {
	if s == "Pool" {
		return connpool.ClosePool.String()
	}
	var b strings.Builder
	for i, r := range s {
		if 'A' <= r && r <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// closeReasonNames returns the names of the reasons Stats counts.
func closeReasonNames(t *testing.T) []string {
	t.Helper()
	var names []string
	for r := range closeCountersByName(connpool.Stats{}) {
		names = append(names, r)
	}
	return names
}

// TestCloseCountersCoverStats pins that the closed counter reports one
// series for each close counter of Stats, named as CloseReason.String()
// names it: a counter the core adds without a row in closeCounters fails
// here, not silently in a dashboard.
func TestCloseCountersCoverStats(t *testing.T) {
	var known []string
	for r := connpool.CloseReason(1); r < 255; r++ {
		if s := r.String(); !strings.HasPrefix(s, "CloseReason(") {
			known = append(known, s)
		}
	}
	for _, name := range closeReasonNames(t) {
		assert.Contains(t, known, name, "a Stats close counter whose name is no CloseReason")
	}

	srv := startServer(t)
	h := newHarness(t)
	pool := newPool(t, srv.Addr(), connpool.WithName("p"))
	h.observe(t, pool)
	got := h.collect(t)
	for _, name := range closeReasonNames(t) {
		_, ok := got.int64Point("connpool.client.connection.closed", poolName("p"),
			reasonKey.String(name))
		assert.True(t, ok, "no series for reason %s", name)
	}
}

// TestObserveNil checks that Observe and ObserveGroup refuse nil.
func TestObserveNil(t *testing.T) {
	m, err := connpoolotel.New(noop.NewMeterProvider())
	require.NoError(t, err)
	_, err = m.Observe(nil)
	assert.Error(t, err)
	_, err = m.ObserveGroup(nil)
	assert.Error(t, err)
}

// TestObserveFollowsResize checks that max, idle.max and idle.min are
// read at each collection: they follow SetMaxConns, SetMaxIdle and
// SetMinIdle.
func TestObserveFollowsResize(t *testing.T) {
	srv := startServer(t)
	h := newHarness(t)
	pool := newPool(t, srv.Addr(), connpool.WithName("p"), connpool.WithMaxConns(8),
		connpool.WithMaxIdle(4), connpool.WithMinIdle(1))
	h.observe(t, pool)
	check := func(maxConns, maxIdle, minIdle int64) {
		t.Helper()
		got := h.collect(t)
		for name, want := range map[string]int64{
			"db.client.connection.max":      maxConns,
			"db.client.connection.idle.max": maxIdle,
			"db.client.connection.idle.min": minIdle,
		} {
			v, ok := got.int64Point(name, poolName("p"))
			if assert.True(t, ok, name) {
				assert.Equal(t, want, v, name)
			}
		}
	}
	check(8, 4, 1)
	require.NoError(t, pool.SetMinIdle(0))
	require.NoError(t, pool.SetMaxIdle(2))
	require.NoError(t, pool.SetMaxConns(3))
	check(3, 2, 0)
}

// TestUnregisterStopsReporting checks that after Unregister the pool's
// gauges are gone from the next collection, while the histograms the
// hooks record stay.
func TestUnregisterStopsReporting(t *testing.T) {
	srv := startServer(t)
	h := newHarness(t)
	pool := newPool(t, srv.Addr(), connpool.WithName("p"), connpool.WithHooks(h.m.Hooks()))
	reg, err := h.m.Observe(pool)
	require.NoError(t, err)
	c, err := pool.Get(context.Background())
	require.NoError(t, err)
	require.NoError(t, c.Close())

	_, ok := h.collect(t).int64Point("db.client.connection.max", poolName("p"))
	require.True(t, ok)
	require.NoError(t, reg.Unregister())
	got := h.collect(t)
	_, ok = got.int64Point("db.client.connection.max", poolName("p"))
	assert.False(t, ok, "reported after Unregister")
	_, ok = got.histPoint("db.client.connection.use_time", poolName("p"))
	assert.True(t, ok)
}

// TestObserveGroup checks that a group's pools are reported each under
// its own name, and that a pool the group closed and forgot is not.
func TestObserveGroup(t *testing.T) {
	a, b := startServer(t), startServer(t)
	h := newHarness(t)
	g, err := connpool.NewGroup(connpool.WithName("api"), connpool.WithHooks(h.m.Hooks()),
		connpool.WithGroupIdleTimeout(20*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(func() { _ = g.Close() })
	reg, err := h.m.ObserveGroup(g)
	require.NoError(t, err)
	t.Cleanup(func() { _ = reg.Unregister() })

	held, err := g.Get(context.Background(), "tcp", a.Addr())
	require.NoError(t, err)
	other, err := g.Get(context.Background(), "tcp", b.Addr())
	require.NoError(t, err)
	require.NoError(t, other.Close())

	stats := g.Stats()
	nameA := stats[connpool.Addr{Network: "tcp", Address: a.Addr()}].Name
	nameB := stats[connpool.Addr{Network: "tcp", Address: b.Addr()}].Name
	require.NotEqual(t, nameA, nameB)
	got := h.collect(t)
	used, ok := got.int64Point("db.client.connection.count", poolName(nameA), state("used"))
	require.True(t, ok)
	assert.EqualValues(t, 1, used)
	idle, ok := got.int64Point("db.client.connection.count", poolName(nameB), state("idle"))
	require.True(t, ok)
	assert.EqualValues(t, 1, idle)

	// b's pool is unused with nothing borrowed: the group drops it, and
	// its series go with it. a's holds a conn, and stays.
	assert.Eventually(t, func() bool {
		_, ok := h.collect(t).int64Point("db.client.connection.max", poolName(nameB))
		return !ok
	}, waitFor, tick)
	_, ok = h.collect(t).int64Point("db.client.connection.max", poolName(nameA))
	assert.True(t, ok)
	require.NoError(t, held.Close())
}

// TestObserveTwoReaders pins that a pool's callback may run for two
// readers at once (each reader collects on its own), with hooks recording
// meanwhile: under -race, a callback that kept state would fail here.
func TestObserveTwoReaders(t *testing.T) {
	srv := startServer(t)
	r1, r2 := sdkmetric.NewManualReader(), sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r1), sdkmetric.WithReader(r2))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	m, err := connpoolotel.New(mp)
	require.NoError(t, err)
	pool := newPool(t, srv.Addr(), connpool.WithName("p"), connpool.WithHooks(m.Hooks()))
	reg, err := m.Observe(pool)
	require.NoError(t, err)
	t.Cleanup(func() { _ = reg.Unregister() })

	var g errgroup.Group
	for _, r := range []*sdkmetric.ManualReader{r1, r2} {
		g.Go(func() error {
			for range 50 {
				var rm metricdata.ResourceMetrics
				if err := r.Collect(context.Background(), &rm); err != nil {
					return err
				}
			}
			return nil
		})
	}
	g.Go(getsAndPuts(pool, 50))
	require.NoError(t, g.Wait())
	for _, r := range []*sdkmetric.ManualReader{r1, r2} {
		var rm metricdata.ResourceMetrics
		require.NoError(t, r.Collect(context.Background(), &rm))
		require.Len(t, rm.ScopeMetrics, 1)
		var names []string
		for _, m := range rm.ScopeMetrics[0].Metrics {
			names = append(names, m.Name)
		}
		assert.Contains(t, names, "db.client.connection.count")
		assert.Contains(t, names, "db.client.connection.use_time")
	}
}

// TestFailedGetsAreObserved pins that Gets failing during an outage are
// reported (issue 21): 20 Gets against an address that refuses reported
// no failed Get, as Stats counted none. They are in
// connpool.client.connection.gets with their result and error.type, and
// with the hits and misses they add up to the Gets.
func TestFailedGetsAreObserved(t *testing.T) {
	h := newHarness(t)
	pool := newPool(t, pooltest.RefusingAddr(t), connpool.WithName("outage"), connpool.WithHooks(h.m.Hooks()))
	h.observe(t, pool)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	for i := range 20 {
		_, err := pool.Get(ctx)
		require.Error(t, err, "Get %d", i)
		require.NotErrorIs(t, err, context.DeadlineExceeded, "Get %d fails fast", i)
	}

	got := h.collect(t)
	v, ok := got.int64Point("connpool.client.connection.gets", poolName("outage"),
		attribute.String("connpool.get.result", "dial_error"), attribute.String("error.type", "dial_error"))
	require.True(t, ok)
	assert.Equal(t, int64(20), v)
	var all int64
	for _, dp := range got["connpool.client.connection.gets"].Data.(metricdata.Sum[int64]).DataPoints {
		all += dp.Value
	}
	assert.Equal(t, int64(20), all, "the results add up to the Gets")
}
