package connpoolprom_test

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/connpoolprom"
	"github.com/connpool/connpool/internal/pooltest"
	"github.com/connpool/connpool/internal/testserver"
)

// startServer starts a loopback echo server, and newPool a pool, each
// closed at the end of the test.
var (
	startServer = pooltest.StartServer
	newPool     = pooltest.NewPool
)

// use gets a conn from p, sends a message through it and puts it back.
func use(t testing.TB, p *connpool.Pool) {
	t.Helper()
	c, err := p.Get(context.Background())
	require.NoError(t, err)
	got, err := testserver.RoundTrip(c, "ping")
	require.NoError(t, err)
	require.Equal(t, "ping", got)
	require.NoError(t, c.Close())
}

// quiesce waits until p has nothing in flight (no dial, no waiter, no
// borrowed or closing conn), so that its Stats stay put.
func quiesce(t testing.TB, p *connpool.Pool) {
	t.Helper()
	require.Eventually(t, func() bool {
		s := p.Stats()
		return s.Dialing == 0 && s.Waiting == 0 && s.InUse == 0 && s.OpenConns == s.Idle
	}, 5*time.Second, time.Millisecond, "the pool settles")
}

// fixedCollector is a collector of made-up Stats: one pool at addr whose
// snapshot is always stats.
type fixedCollector struct {
	addr  connpool.Addr
	stats connpool.Stats
}

func (c *fixedCollector) Describe(ch chan<- *prometheus.Desc) {
	connpoolprom.NewCollector().Describe(ch)
}

func (c *fixedCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats
	connpoolprom.Collect(ch, c.addr, &s)
}

// gather registers c with a pedantic registry, which checks every metric
// against its Desc, and gathers it once.
func gather(t testing.TB, c prometheus.Collector) []*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	return mfs
}

// samples flattens families into samples as the text format writes them,
// keyed by key: a histogram gives a _bucket per bound, +Inf included, a
// _sum and a _count.
func samples(t testing.TB, mfs []*dto.MetricFamily) map[string]float64 {
	t.Helper()
	out := make(map[string]float64)
	add := func(name string, v float64, labels []string) {
		k := key(name, labels...)
		_, dup := out[k]
		require.False(t, dup, "sample %s appears twice", k)
		out[k] = v
	}
	for _, mf := range mfs {
		name := mf.GetName()
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, lp := range m.GetLabel() {
				labels = append(labels, lp.GetName(), lp.GetValue())
			}
			switch mf.GetType() {
			case dto.MetricType_GAUGE:
				add(name, m.GetGauge().GetValue(), labels)
			case dto.MetricType_COUNTER:
				add(name, m.GetCounter().GetValue(), labels)
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				for _, b := range h.GetBucket() {
					add(name+"_bucket", float64(b.GetCumulativeCount()), append(slices.Clone(labels), "le", le(b.GetUpperBound())))
				}
				add(name+"_bucket", float64(h.GetSampleCount()), append(slices.Clone(labels), "le", "+Inf"))
				add(name+"_sum", h.GetSampleSum(), labels)
				add(name+"_count", float64(h.GetSampleCount()), labels)
			default:
				t.Fatalf("%s: unexpected type %v", name, mf.GetType())
			}
		}
	}
	return out
}

// key writes a sample's name and its label pairs, sorted by label name,
// as `name{a="1",b="2"}`.
func key(name string, labelPairs ...string) string {
	type pair struct{ name, value string }
	var ps []pair
	for i := 0; i+1 < len(labelPairs); i += 2 {
		ps = append(ps, pair{labelPairs[i], labelPairs[i+1]})
	}
	slices.SortFunc(ps, func(a, b pair) int { return strings.Compare(a.name, b.name) })
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('{')
	for i, p := range ps {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(p.name + "=" + strconv.Quote(p.value))
	}
	b.WriteByte('}')
	return b.String()
}

// le formats a bucket bound as the text format does.
func le(bound float64) string { return strconv.FormatFloat(bound, 'g', -1, 64) }

// want returns the samples the collector must export for the pool at a
// whose snapshot is s, written out field by field from the package doc.
func want(a connpool.Addr, s connpool.Stats) map[string]float64 {
	pool := []string{"pool", s.Name, "network", a.Network, "address", a.Address}
	m := make(map[string]float64)
	add := func(name string, v float64, extra ...string) {
		m[key(name, append(slices.Clone(pool), extra...)...)] = v
	}
	hist := func(name string, h connpool.Histogram) {
		var n uint64
		for i := range connpool.HistogramBuckets {
			n += h.Buckets[i]
			add(name+"_bucket", float64(n), "le", le(secs(connpool.HistogramBound(i))))
		}
		n += h.Buckets[connpool.HistogramBuckets]
		add(name+"_bucket", float64(n), "le", "+Inf")
		add(name+"_sum", secs(h.Sum))
		add(name+"_count", float64(n))
	}

	add("connpool_connections", float64(s.InUse), "state", "in_use")
	add("connpool_connections", float64(s.Idle), "state", "idle")
	add("connpool_connections", float64(s.Dialing), "state", "dialing")
	add("connpool_connections", float64(s.Closing), "state", "closing")
	add("connpool_max_connections", float64(s.MaxConns))
	add("connpool_min_idle_connections", float64(s.MinIdle))
	add("connpool_max_idle_connections", float64(s.MaxIdle))
	add("connpool_waiting_requests", float64(s.Waiting))
	add("connpool_oldest_wait_seconds", secs(s.OldestWait))

	add("connpool_gets_total", float64(s.Hits), "result", "hit")
	add("connpool_gets_total", float64(s.Misses), "result", "miss")
	add("connpool_gets_total", float64(s.Timeouts), "result", "timeout")
	add("connpool_gets_total", float64(s.GetDialErrors), "result", "dial_error")
	add("connpool_gets_total", float64(s.ClosedPoolGets), "result", "pool_closed")
	add("connpool_gets_total", float64(s.TooManyWaiters), "result", "too_many_waiters")
	add("connpool_gets_total", float64(s.NoIdleConn), "result", "no_idle_conn")
	add("connpool_gets_total", float64(s.InvalidGets), "result", "invalid")
	add("connpool_gets_total", float64(s.ShedDeadline), "result", "shed_deadline")
	add("connpool_gets_total", float64(s.ShedOverload), "result", "shed_overload")
	add("connpool_gets_total", float64(s.ClientsOverCap), "result", "clients_over_cap")
	add("connpool_waits_total", float64(s.WaitCount))
	add("connpool_timeouts_total", float64(s.Timeouts))
	add("connpool_rejected_total", float64(s.TooManyWaiters))
	hist("connpool_wait_seconds", s.WaitTime)

	add("connpool_dials_total", float64(s.Dials))
	add("connpool_dial_errors_total", float64(s.DialErrors))
	hist("connpool_dial_seconds", s.DialTime)
	hist("connpool_use_seconds", s.UseTime)

	for reason, n := range map[string]int64{
		"idle":            s.IdleClosed,
		"lifetime":        s.LifetimeClosed,
		"unhealthy":       s.HealthFailures,
		"broken":          s.BrokenClosed,
		"max_idle":        s.MaxIdleClosed,
		"released":        s.ReleasedClosed,
		"pool_closed":     s.PoolClosed,
		"reset":           s.ResetClosed,
		"detached":        s.DetachedClosed,
		"leaked":          s.LeakedClosed,
		"resized":         s.ResizedClosed,
		"address_removed": s.AddressRemovedClosed,
		"rebalanced":      s.RebalancedClosed,
		"ejected":         s.EjectedClosed,
	} {
		add("connpool_closed_total", float64(n), "reason", reason)
	}
	add("connpool_leaks_total", float64(s.Leaks))
	add("connpool_resolves_total", float64(s.Resolves), "result", "ok")
	add("connpool_resolves_total", float64(s.ResolveErrors), "result", "error")
	add("connpool_ejections_total", float64(s.Ejections))

	flag := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	for _, a := range s.Addresses {
		b := []string{"backend", a.Address}
		add("connpool_backend_connections", float64(a.InUse), append(b, "state", "in_use")...)
		add("connpool_backend_connections", float64(a.Idle), append(b, "state", "idle")...)
		add("connpool_backend_connections", float64(a.Dialing), append(b, "state", "dialing")...)
		add("connpool_backend_connections", float64(a.Open-a.InUse-a.Idle), append(b, "state", "closing")...)
		add("connpool_backend_dials_total", float64(a.Dials), b...)
		add("connpool_backend_dial_errors_total", float64(a.DialErrors), b...)
		add("connpool_backend_backing_off", flag(a.BackingOff), b...)
		add("connpool_backend_draining", flag(a.Draining), b...)
		add("connpool_backend_ejected", flag(a.Ejected), b...)
		add("connpool_backend_ejections_total", float64(a.Ejections), b...)
	}
	return m
}

// assertSamplesMatch checks that got holds exactly the samples of want.
func assertSamplesMatch(t testing.TB, want, got map[string]float64) {
	t.Helper()
	for k, v := range want {
		g, ok := got[k]
		if assert.True(t, ok, "missing sample %s", k) {
			assert.Equal(t, v, g, "sample %s", k)
		}
	}
	for k := range got {
		_, ok := want[k]
		assert.True(t, ok, "unexpected sample %s", k)
	}
}

// secs returns d in seconds, correctly rounded.
func secs(d time.Duration) float64 { return float64(d) / 1e9 }
