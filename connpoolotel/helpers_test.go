package connpoolotel_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/connpoolotel"
	"github.com/connpool/connpool/internal/pooltest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitFor bounds every Eventually: generous, because the machines are
// shared, and never reached when the code is right.
const waitFor = 5 * time.Second

const tick = time.Millisecond

// startServer starts an echo server closed at the end of the test.
func startServer(t testing.TB) *echoServer {
	t.Helper()
	s, err := startEcho()
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// newPool returns a pool closed at the end of the test.
var newPool = pooltest.NewPool

// harness is a Metrics on an SDK meter provider with a manual reader,
// and the instrument kinds the SDK saw as New made them.
type harness struct {
	m      *connpoolotel.Metrics
	reader *sdkmetric.ManualReader

	mu    sync.Mutex // guards kinds
	kinds map[string]sdkmetric.InstrumentKind
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	h := &harness{reader: sdkmetric.NewManualReader(), kinds: make(map[string]sdkmetric.InstrumentKind)}
	record := func(inst sdkmetric.Instrument) (sdkmetric.Stream, bool) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.kinds[inst.Name] = inst.Kind
		return sdkmetric.Stream{}, false // no match: the default stream
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(h.reader), sdkmetric.WithView(record))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	m, err := connpoolotel.New(mp)
	require.NoError(t, err)
	h.m = m
	return h
}

// kind returns the kind of the instrument named name, as the SDK saw it.
func (h *harness) kind(name string) (sdkmetric.InstrumentKind, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	k, ok := h.kinds[name]
	return k, ok
}

// observe registers p, unregistered at the end of the test.
func (h *harness) observe(t testing.TB, p *connpool.Pool) {
	t.Helper()
	reg, err := h.m.Observe(p)
	require.NoError(t, err)
	t.Cleanup(func() { _ = reg.Unregister() })
}

// collected is one collection, by metric name.
type collected map[string]metricdata.Metrics

// collect collects the reader, and checks the scope New named.
func (h *harness) collect(t testing.TB) collected {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, h.reader.Collect(context.Background(), &rm))
	out := make(collected)
	for _, sm := range rm.ScopeMetrics {
		require.Equal(t, connpoolotel.ScopeName, sm.Scope.Name)
		require.Equal(t, "https://opentelemetry.io/schemas/1.43.0", sm.Scope.SchemaURL)
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

// int64Point returns the value of the int64 sum or gauge name at attrs,
// and whether there is one.
func (c collected) int64Point(name string, attrs ...attribute.KeyValue) (int64, bool) {
	var points []metricdata.DataPoint[int64]
	switch data := c[name].Data.(type) {
	case metricdata.Sum[int64]:
		points = data.DataPoints
	case metricdata.Gauge[int64]:
		points = data.DataPoints
	default:
		return 0, false
	}
	want := attribute.NewSet(attrs...)
	for _, dp := range points {
		if dp.Attributes.Equals(&want) {
			return dp.Value, true
		}
	}
	return 0, false
}

// histPoint returns the point of the histogram name at attrs.
func (c collected) histPoint(name string, attrs ...attribute.KeyValue) (metricdata.HistogramDataPoint[float64], bool) {
	h, ok := c[name].Data.(metricdata.Histogram[float64])
	if !ok {
		return metricdata.HistogramDataPoint[float64]{}, false
	}
	want := attribute.NewSet(attrs...)
	for _, dp := range h.DataPoints {
		if dp.Attributes.Equals(&want) {
			return dp, true
		}
	}
	return metricdata.HistogramDataPoint[float64]{}, false
}

// The attributes of the conventions and connpool's own.
func poolName(name string) attribute.KeyValue {
	return attribute.String("db.client.connection.pool.name", name)
}

func state(s string) attribute.KeyValue { return attribute.String("db.client.connection.state", s) }

func reason(r connpool.CloseReason) attribute.KeyValue {
	return attribute.String("connpool.close.reason", r.String())
}

// getsAndPuts returns a func for an errgroup that takes a conn from pool
// and puts it back n times.
func getsAndPuts(pool *connpool.Pool, n int) func() error {
	return func() error {
		for range n {
			c, err := pool.Get(context.Background())
			if err != nil {
				return err
			}
			if err := c.Close(); err != nil {
				return err
			}
		}
		return nil
	}
}
