package connpoolotel_test

import (
	"context"
	"net"
	"slices"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"golang.org/x/sync/errgroup"

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/internal/pooltest"
)

const (
	poolNameKey = attribute.Key("db.client.connection.pool.name")
	stateKey    = attribute.Key("db.client.connection.state")
	reasonKey   = attribute.Key("connpool.close.reason")
	resultKey   = attribute.Key("connpool.get.result")
	errorKey    = attribute.Key("error.type")
)

// conventions is the table of connection-pool metrics of the OpenTelemetry
// semantic conventions v1.43.0 (model/db/metrics.yaml; docs/db/
// database-metrics.md, unchanged in v1.44.0), copied by hand from the
// spec, not from the code, plus connpool's own closed and gets counters. kind is
// the spec's instrument in its asynchronous form where Observe reports
// it.
var conventions = []struct {
	name        string
	kind        sdkmetric.InstrumentKind
	unit        string
	description string
	attrs       []attribute.Key // every point carries exactly these
	failed      []attribute.Key // and a point of a failure these too
}{
	{"db.client.connection.count", sdkmetric.InstrumentKindObservableUpDownCounter, "{connection}",
		"The number of connections that are currently in state described by the `state` attribute.",
		[]attribute.Key{poolNameKey, stateKey}, nil},
	{"db.client.connection.idle.max", sdkmetric.InstrumentKindObservableUpDownCounter, "{connection}",
		"The maximum number of idle open connections allowed.", []attribute.Key{poolNameKey}, nil},
	{"db.client.connection.idle.min", sdkmetric.InstrumentKindObservableUpDownCounter, "{connection}",
		"The minimum number of idle open connections allowed.", []attribute.Key{poolNameKey}, nil},
	{"db.client.connection.max", sdkmetric.InstrumentKindObservableUpDownCounter, "{connection}",
		"The maximum number of open connections allowed.", []attribute.Key{poolNameKey}, nil},
	{"db.client.connection.pending_requests", sdkmetric.InstrumentKindObservableUpDownCounter, "{request}",
		"The number of current pending requests for an open connection.", []attribute.Key{poolNameKey}, nil},
	{"db.client.connection.timeouts", sdkmetric.InstrumentKindObservableCounter, "{timeout}",
		"The number of connection timeouts that have occurred trying to obtain a connection from the pool.",
		[]attribute.Key{poolNameKey}, nil},
	{"db.client.connection.create_time", sdkmetric.InstrumentKindHistogram, "s",
		"The time it took to create a new connection.", []attribute.Key{poolNameKey}, nil},
	{"db.client.connection.wait_time", sdkmetric.InstrumentKindHistogram, "s",
		"The time it took to obtain an open connection from the pool.", []attribute.Key{poolNameKey}, nil},
	{"db.client.connection.use_time", sdkmetric.InstrumentKindHistogram, "s",
		"The time between borrowing a connection and returning it to the pool.", []attribute.Key{poolNameKey}, nil},
	{"connpool.client.connection.closed", sdkmetric.InstrumentKindObservableCounter, "{connection}",
		"", []attribute.Key{poolNameKey, reasonKey}, nil},
	{"connpool.client.connection.gets", sdkmetric.InstrumentKindObservableCounter, "{request}",
		"", []attribute.Key{poolNameKey, resultKey}, []attribute.Key{errorKey}},
	{"connpool.client.connection.ejections", sdkmetric.InstrumentKindObservableCounter, "{ejection}",
		"", []attribute.Key{poolNameKey}, nil},
}

// TestInstrumentsFollowConventions checks each instrument's name, kind,
// unit, description, temporality, monotonicity and attribute keys against
// the conventions' table, after a pool has had one of each event.
func TestInstrumentsFollowConventions(t *testing.T) {
	h, _ := queuedGetPool(t)

	got := h.collect(t)
	names := make([]string, 0, len(conventions))
	for _, want := range conventions {
		names = append(names, want.name)
		t.Run(want.name, func(t *testing.T) {
			kind, ok := h.kind(want.name)
			require.True(t, ok, "the SDK saw no instrument %s", want.name)
			assert.Equal(t, want.kind, kind)
			m, ok := got[want.name]
			require.True(t, ok, "not collected")
			assert.Equal(t, want.unit, m.Unit)
			if want.description != "" {
				assert.Equal(t, want.description, m.Description)
			} else {
				assert.NotEmpty(t, m.Description)
			}

			var sets []attribute.Set
			switch data := m.Data.(type) {
			case metricdata.Sum[int64]:
				require.NotEqual(t, sdkmetric.InstrumentKindHistogram, want.kind)
				assert.Equal(t, want.kind == sdkmetric.InstrumentKindObservableCounter, data.IsMonotonic,
					"a Counter is monotonic, an UpDownCounter is not")
				assert.Equal(t, metricdata.CumulativeTemporality, data.Temporality)
				for _, dp := range data.DataPoints {
					sets = append(sets, dp.Attributes)
				}
			case metricdata.Histogram[float64]:
				require.Equal(t, sdkmetric.InstrumentKindHistogram, want.kind)
				assert.Equal(t, metricdata.CumulativeTemporality, data.Temporality)
				for _, dp := range data.DataPoints {
					sets = append(sets, dp.Attributes)
					assert.Equal(t, poolBounds(), dp.Bounds, "the pool's own buckets")
				}
			default:
				t.Fatalf("data of type %T", m.Data)
			}
			require.NotEmpty(t, sets)
			for _, set := range sets {
				var keys []attribute.Key
				for _, kv := range set.ToSlice() {
					keys = append(keys, kv.Key)
				}
				if set.HasValue(errorKey) {
					assert.ElementsMatch(t, slices.Concat(want.attrs, want.failed), keys)
				} else {
					assert.ElementsMatch(t, want.attrs, keys)
				}
				v, _ := set.Value(poolNameKey)
				assert.Equal(t, "orders", v.AsString(), "the pool's name, from WithName")
			}
		})
	}
	assert.ElementsMatch(t, names, keysOf(got), "no instrument beyond the table")

	// The values the spec constrains: the two states, and the reasons.
	var states, reasons []string
	for _, dp := range got["db.client.connection.count"].Data.(metricdata.Sum[int64]).DataPoints {
		v, _ := dp.Attributes.Value(stateKey)
		states = append(states, v.AsString())
	}
	assert.ElementsMatch(t, []string{"idle", "used"}, states)
	for _, dp := range got["connpool.client.connection.closed"].Data.(metricdata.Sum[int64]).DataPoints {
		v, _ := dp.Attributes.Value(reasonKey)
		reasons = append(reasons, v.AsString())
	}
	assert.ElementsMatch(t, closeReasonNames(t), reasons, "every reason, zeros included")

	// The results of a Get: hit, miss and every failure, zeros included;
	// a failure's point has it as error.type too, a success's none.
	var results []string
	for _, dp := range got["connpool.client.connection.gets"].Data.(metricdata.Sum[int64]).DataPoints {
		r, _ := dp.Attributes.Value(resultKey)
		results = append(results, r.AsString())
		e, failed := dp.Attributes.Value(errorKey)
		if r.AsString() == "hit" || r.AsString() == "miss" {
			assert.False(t, failed, "%s: no error.type", r.AsString())
		} else {
			assert.Equal(t, r.AsString(), e.AsString(), "error.type is the failure")
		}
	}
	wantResults := []string{"hit", "miss"}
	for _, f := range connpool.GetFailures() {
		wantResults = append(wantResults, f.String())
	}
	assert.ElementsMatch(t, wantResults, results)
}

// TestQueuedGetValues pins the values of one dial, one queued Get and two
// Puts on a pool of one conn.
func TestQueuedGetValues(t *testing.T) {
	h, pool := queuedGetPool(t)

	got := h.collect(t)
	s := pool.Stats()
	name := poolName("orders")
	for _, c := range []struct {
		metric string
		attrs  []attribute.KeyValue
		want   int64
	}{
		{"db.client.connection.count", []attribute.KeyValue{name, state("idle")}, 1},
		{"db.client.connection.count", []attribute.KeyValue{name, state("used")}, 0},
		{"db.client.connection.idle.min", []attribute.KeyValue{name}, 0},
		{"db.client.connection.idle.max", []attribute.KeyValue{name}, 1}, // MaxIdle follows MaxConns
		{"db.client.connection.max", []attribute.KeyValue{name}, 1},
		{"db.client.connection.pending_requests", []attribute.KeyValue{name}, 0},
		{"db.client.connection.timeouts", []attribute.KeyValue{name}, 0},
		{"connpool.client.connection.closed", []attribute.KeyValue{name, reason(connpool.CloseBroken)}, 0},
	} {
		v, ok := got.int64Point(c.metric, c.attrs...)
		if assert.True(t, ok, "%s %v", c.metric, c.attrs) {
			assert.Equal(t, c.want, v, "%s %v", c.metric, c.attrs)
		}
	}
	for _, c := range []struct {
		metric string
		want   connpool.Histogram // the Stats histogram it must match
		count  uint64
	}{
		{"db.client.connection.create_time", s.DialTime, 1},
		{"db.client.connection.wait_time", s.WaitTime, 1},
		{"db.client.connection.use_time", connpool.Histogram{}, 2},
	} {
		dp, ok := got.histPoint(c.metric, name)
		require.True(t, ok, c.metric)
		assert.Equal(t, c.count, dp.Count, c.metric)
		if c.want.Count() > 0 {
			assert.Equal(t, c.want.Buckets[:], dp.BucketCounts, c.metric)
			assert.InDelta(t, c.want.Sum.Seconds(), dp.Sum, 1e-9, c.metric)
		}
	}
}

// queuedGetPool returns a harness observing a pool of one conn named
// orders, with its hooks, after queuedGet.
func queuedGetPool(t *testing.T) (*harness, *connpool.Pool) {
	t.Helper()
	srv := startServer(t)
	h := newHarness(t)
	pool := newPool(t, srv.Addr(), connpool.WithName("orders"), connpool.WithMaxConns(1),
		connpool.WithHooks(h.m.Hooks()))
	h.observe(t, pool)
	queuedGet(t, pool)
	return h, pool
}

// queuedGet makes pool, of one conn, dial once, queue one Get behind the
// conn's holder, hand the conn over and take it back: one create_time,
// one wait_time and two use_time points.
func queuedGet(t *testing.T, pool *connpool.Pool) {
	t.Helper()
	ctx := context.Background()
	first, err := pool.Get(ctx)
	require.NoError(t, err)
	got := make(chan error, 1)
	go func() {
		c, err := pool.Get(ctx)
		if err == nil {
			err = c.Close()
		}
		got <- err
	}()
	require.Eventually(t, func() bool { return pool.Stats().Waiting == 1 }, waitFor, tick)
	require.NoError(t, first.Close())
	require.NoError(t, <-got)
}

// poolBounds returns the bounds of connpool's Histogram, in seconds.
func poolBounds() []float64 {
	b := make([]float64, connpool.HistogramBuckets)
	for i := range b {
		b[i] = connpool.HistogramBound(i).Seconds()
	}
	return b
}

func keysOf(c collected) []string {
	var names []string
	for name := range c {
		names = append(names, name)
	}
	return names
}

// TestBackendInstruments checks the instruments of the addresses of a
// pool of a host name (WithResolver): their kinds, units and attributes,
// and that their values are Stats.Addresses after concurrent use. A pool
// of an address as given has no such points (TestInstrumentsFollowConventions).
func TestBackendInstruments(t *testing.T) {
	srv := startServer(t)
	_, port, err := net.SplitHostPort(srv.Addr())
	require.NoError(t, err)
	h := newHarness(t)
	pool, _ := pooltest.NewHostNamePool(t, srv.Addr(), "orders.test", connpool.WithName("orders"), connpool.WithMaxConns(2))
	h.observe(t, pool)
	var g errgroup.Group
	for range 6 {
		g.Go(getsAndPuts(pool, 10))
	}
	require.NoError(t, g.Wait())
	require.Eventually(t, func() bool {
		s := pool.Stats()
		return s.Dialing == 0 && s.InUse == 0 && s.OpenConns == s.Idle
	}, waitFor, tick)

	s := pool.Stats()
	require.Len(t, s.Addresses, 1)
	a := s.Addresses[0]
	got := h.collect(t)
	peer := []attribute.KeyValue{poolName("orders"),
		attribute.String("network.peer.address", "127.0.0.1"), attribute.Int("network.peer.port", mustAtoi(t, port))}
	with := func(extra ...attribute.KeyValue) []attribute.KeyValue { return append(slices.Clone(peer), extra...) }
	for _, c := range []struct {
		name  string
		kind  sdkmetric.InstrumentKind
		unit  string
		attrs []attribute.KeyValue
		want  int64
	}{
		{"connpool.client.connection.backend.count", sdkmetric.InstrumentKindObservableUpDownCounter, "{connection}", with(state("idle")), int64(a.Idle)},
		{"connpool.client.connection.backend.count", sdkmetric.InstrumentKindObservableUpDownCounter, "{connection}", with(state("used")), int64(a.InUse)},
		{"connpool.client.connection.backend.dials", sdkmetric.InstrumentKindObservableCounter, "{connection}", with(), a.Dials},
		{"connpool.client.connection.backend.dial_errors", sdkmetric.InstrumentKindObservableCounter, "{error}", with(), a.DialErrors},
		{"connpool.client.connection.backend.backing_off", sdkmetric.InstrumentKindObservableGauge, "1", with(), 0},
		{"connpool.client.connection.backend.draining", sdkmetric.InstrumentKindObservableGauge, "1", with(), 0},
		{"connpool.client.connection.backend.ejected", sdkmetric.InstrumentKindObservableGauge, "1", with(), 0},
		{"connpool.client.connection.backend.ejections", sdkmetric.InstrumentKindObservableCounter, "{ejection}", with(), 0},
		{"connpool.client.connection.ejections", sdkmetric.InstrumentKindObservableCounter, "{ejection}", []attribute.KeyValue{poolName("orders")}, 0},
	} {
		kind, ok := h.kind(c.name)
		require.True(t, ok, c.name)
		assert.Equal(t, c.kind, kind, c.name)
		assert.Equal(t, c.unit, got[c.name].Unit, c.name)
		assert.NotEmpty(t, got[c.name].Description, c.name)
		v, ok := got.int64Point(c.name, c.attrs...)
		if assert.True(t, ok, "%s %v", c.name, c.attrs) {
			assert.Equal(t, c.want, v, "%s %v", c.name, c.attrs)
		}
	}
	assert.Equal(t, s.Dials, a.Dials, "one address: the pool's dials")
	assert.Positive(t, a.Idle)
}

func mustAtoi(t testing.TB, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	require.NoError(t, err)
	return n
}
