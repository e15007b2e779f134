package connpoolprom

import (
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/connpool/connpool"
)

// poolLabels are the labels of every metric: the pool's name
// ([connpool.WithName]) and the network and address it dials.
var poolLabels = []string{"pool", "network", "address"}

// newDesc returns the Desc of a metric with poolLabels and then extra.
func newDesc(name, help string, extra ...string) *prometheus.Desc {
	labels := append(append([]string(nil), poolLabels...), extra...)
	return prometheus.NewDesc(name, help, labels, nil)
}

// The metrics, one Desc each: the fixed set that Describe sends.
var (
	connectionsDesc = newDesc("connpool_connections",
		"Conns the pool counts against its max now, by state: in_use (borrowed), idle (including those under a background check), dialing, closing.",
		"state")
	maxConnectionsDesc = newDesc("connpool_max_connections",
		"The cap on the conns the pool has open or dialing (WithMaxConns).")
	minIdleDesc = newDesc("connpool_min_idle_connections",
		"The idle conns the pool keeps ready (WithMinIdle).")
	maxIdleDesc = newDesc("connpool_max_idle_connections",
		"The cap on idle conns (WithMaxIdle).")
	waitingDesc = newDesc("connpool_waiting_requests",
		"Gets queued for a conn now.")
	oldestWaitDesc = newDesc("connpool_oldest_wait_seconds",
		"How long the Get that has waited longest has been queued; 0 when none waits.")

	getsDesc = newDesc("connpool_gets_total",
		"Successful Gets, by result: hit (served an existing conn, idle or handed off) or miss (served a freshly dialed conn).",
		"result")
	waitsDesc = newDesc("connpool_waits_total",
		"Gets that queued because the pool was at its max conns or its dial limit.")
	timeoutsDesc = newDesc("connpool_timeouts_total",
		"Gets whose context ended before a conn was ready.")
	rejectedDesc = newDesc("connpool_rejected_total",
		"Gets refused at once because WithMaxWaiters Gets were queued.")
	waitSecondsDesc = newDesc("connpool_wait_seconds",
		"How long Gets that queued waited, one observation per Get however many times it queued: the count is connpool_waits_total.")

	dialsDesc = newDesc("connpool_dials_total",
		"Conns dialed successfully.")
	dialErrorsDesc = newDesc("connpool_dial_errors_total",
		"Dials that failed, including those cut short by Close.")
	dialSecondsDesc = newDesc("connpool_dial_seconds",
		"How long successful dials took.")
	useSecondsDesc = newDesc("connpool_use_seconds",
		"How long conns were held from Get to Put; empty unless WithUseTimeMetrics is on.")

	closedDesc = newDesc("connpool_closed_total",
		"Conns the pool closed or gave up, by reason: idle, lifetime, unhealthy, broken, max_idle, released, pool_closed, reset, detached, leaked, resized (CloseReason).",
		"reason")
	leaksDesc = newDesc("connpool_leaks_total",
		"Conns reported as held past the leak threshold (WithLeakDetection).")
)

// descs is every Desc, in the order Describe sends them.
var descs = []*prometheus.Desc{
	connectionsDesc, maxConnectionsDesc, minIdleDesc, maxIdleDesc, waitingDesc, oldestWaitDesc,
	getsDesc, waitsDesc, timeoutsDesc, rejectedDesc, waitSecondsDesc,
	dialsDesc, dialErrorsDesc, dialSecondsDesc, useSecondsDesc,
	closedDesc, leaksDesc,
}

// closeReasons are the reasons of connpool_closed_total, and
// closeReasonNames their labels, computed once.
var (
	closeReasons     = connpool.CloseReasons()
	closeReasonNames = func() []string {
		names := make([]string, len(closeReasons))
		for i, r := range closeReasons {
			names[i] = r.String()
		}
		return names
	}()
)

// emitter sends the metrics of one pool to a Collect channel.
type emitter struct {
	ch     chan<- prometheus.Metric
	labels [3]string // the values of poolLabels
}

// collect sends the metrics of the pool at a, whose snapshot is s, to ch:
// one metric per Desc and label value, each from a field of s.
func collect(ch chan<- prometheus.Metric, a connpool.Addr, s *connpool.Stats) {
	e := emitter{ch: ch, labels: [3]string{validUTF8(s.Name), validUTF8(a.Network), validUTF8(a.Address)}}
	gauge, counter := prometheus.GaugeValue, prometheus.CounterValue

	e.with(connectionsDesc, gauge, float64(s.InUse), "in_use")
	e.with(connectionsDesc, gauge, float64(s.Idle), "idle")
	e.with(connectionsDesc, gauge, float64(s.Dialing), "dialing")
	e.with(connectionsDesc, gauge, float64(s.Closing), "closing")
	e.send(maxConnectionsDesc, gauge, float64(s.MaxConns))
	e.send(minIdleDesc, gauge, float64(s.MinIdle))
	e.send(maxIdleDesc, gauge, float64(s.MaxIdle))
	e.send(waitingDesc, gauge, float64(s.Waiting))
	e.send(oldestWaitDesc, gauge, seconds(s.OldestWait))

	e.with(getsDesc, counter, float64(s.Hits), "hit")
	e.with(getsDesc, counter, float64(s.Misses), "miss")
	e.send(waitsDesc, counter, float64(s.WaitCount))
	e.send(timeoutsDesc, counter, float64(s.Timeouts))
	e.send(rejectedDesc, counter, float64(s.TooManyWaiters))
	e.histogram(waitSecondsDesc, &s.WaitTime)

	e.send(dialsDesc, counter, float64(s.Dials))
	e.send(dialErrorsDesc, counter, float64(s.DialErrors))
	e.histogram(dialSecondsDesc, &s.DialTime)
	e.histogram(useSecondsDesc, &s.UseTime)

	for i, r := range closeReasons {
		e.with(closedDesc, counter, float64(s.Closed(r)), closeReasonNames[i])
	}
	e.send(leaksDesc, counter, float64(s.Leaks))
}

// send sends a metric with the pool's labels only.
func (e *emitter) send(d *prometheus.Desc, t prometheus.ValueType, v float64) {
	m, err := prometheus.NewConstMetric(d, t, v, e.labels[:]...)
	e.out(d, m, err)
}

// with sends a metric with the pool's labels and one more label value.
func (e *emitter) with(d *prometheus.Desc, t prometheus.ValueType, v float64, extra string) {
	m, err := prometheus.NewConstMetric(d, t, v, e.labels[0], e.labels[1], e.labels[2], extra)
	e.out(d, m, err)
}

// histogram sends h as a Prometheus histogram.
func (e *emitter) histogram(d *prometheus.Desc, h *connpool.Histogram) {
	count, sum, buckets := promHistogram(h)
	m, err := prometheus.NewConstHistogram(d, count, sum, buckets, e.labels[:]...)
	e.out(d, m, err)
}

// out sends m, or, if it could not be made, an invalid metric that makes
// the registry's Gather report err.
func (e *emitter) out(d *prometheus.Desc, m prometheus.Metric, err error) {
	if err != nil {
		m = prometheus.NewInvalidMetric(d, err)
	}
	e.ch <- m
}

// promHistogram converts h to Prometheus' form: the total count (the
// overflow bucket included), the sum in seconds, and the cumulative count
// of each bounded bucket keyed by its upper bound in seconds. Prometheus
// adds the +Inf bucket, which is the count.
func promHistogram(h *connpool.Histogram) (count uint64, sum float64, buckets map[float64]uint64) {
	buckets = make(map[float64]uint64, connpool.HistogramBuckets)
	for i := range connpool.HistogramBuckets {
		count += h.Buckets[i]
		buckets[seconds(connpool.HistogramBound(i))] = count
	}
	count += h.Buckets[connpool.HistogramBuckets]
	return count, seconds(h.Sum), buckets
}

// seconds returns d in seconds as the float64 nearest to its decimal
// value, so that le labels read "1.6384", where d.Seconds(), which adds
// the fraction to the whole seconds, gives 1.6383999999999999.
func seconds(d time.Duration) float64 { return float64(d) / float64(time.Second) }

// validUTF8 returns s with invalid UTF-8 replaced, as label values must be
// valid: a pool name of arbitrary bytes must not fail the scrape.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
