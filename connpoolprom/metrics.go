package connpoolprom

import (
	"cmp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

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
		"Conns the pool closed or gave up, by reason: idle, lifetime, unhealthy, broken, max_idle, released, pool_closed, reset, detached, leaked, resized, address_removed, rebalanced (CloseReason).",
		"reason")
	leaksDesc = newDesc("connpool_leaks_total",
		"Conns reported as held past the leak threshold (WithLeakDetection).")
	resolvesDesc = newDesc("connpool_resolves_total",
		"Lookups of the pool's host name (WithResolver), by result: ok or error.",
		"result")

	// The metrics of each address a pool of a host name dials
	// (Stats.Addresses), labelled backend with its ip:port.
	backendConnectionsDesc = newDesc("connpool_backend_connections",
		"Conns to one address of the pool's host name now, by state: in_use, idle (including those under a background check), dialing, closing.",
		"backend", "state")
	backendDialsDesc = newDesc("connpool_backend_dials_total",
		"Conns dialed successfully to one address of the pool's host name.",
		"backend")
	backendDialErrorsDesc = newDesc("connpool_backend_dial_errors_total",
		"Dials to one address of the pool's host name that failed.",
		"backend")
	backendBackingOffDesc = newDesc("connpool_backend_backing_off",
		"1 while dials to one address of the pool's host name are paused after failures (WithDialBackoff), else 0.",
		"backend")
	backendDrainingDesc = newDesc("connpool_backend_draining",
		"1 while one address that left the pool's resolved set still has conns open, closed as they come back, else 0.",
		"backend")
)

// descs is every Desc, in the order Describe sends them.
var descs = []*prometheus.Desc{
	connectionsDesc, maxConnectionsDesc, minIdleDesc, maxIdleDesc, waitingDesc, oldestWaitDesc,
	getsDesc, waitsDesc, timeoutsDesc, rejectedDesc, waitSecondsDesc,
	dialsDesc, dialErrorsDesc, dialSecondsDesc, useSecondsDesc,
	closedDesc, leaksDesc, resolvesDesc,
	backendConnectionsDesc, backendDialsDesc, backendDialErrorsDesc, backendBackingOffDesc, backendDrainingDesc,
}

// kind is the type of a metric: which dto field its value goes in.
type kind uint8

const (
	gauge kind = iota
	counter
	histogram
)

// metricSpec says how one metric of a pool is made from its Stats: its
// Desc, its type, the label pair after the pool's (nil for none), and the
// field it comes from: value for a gauge or a counter, hist for a
// histogram.
type metricSpec struct {
	desc  *prometheus.Desc
	kind  kind
	extra *dto.LabelPair
	value func(*connpool.Stats) float64
	hist  func(*connpool.Stats) *connpool.Histogram
}

// specs are the metrics of a pool, in the order collect sends them. The
// metrics of one family come in the order of their extra label's value,
// so that a scrape of pools sent in label order (sortSnapshots) reaches
// the registry already sorted.
var specs = func() []metricSpec {
	g := func(d *prometheus.Desc, extra *dto.LabelPair, v func(*connpool.Stats) float64) metricSpec {
		return metricSpec{desc: d, kind: gauge, extra: extra, value: v}
	}
	c := func(d *prometheus.Desc, extra *dto.LabelPair, v func(*connpool.Stats) int64) metricSpec {
		return metricSpec{desc: d, kind: counter, extra: extra, value: func(s *connpool.Stats) float64 { return float64(v(s)) }}
	}
	h := func(d *prometheus.Desc, h func(*connpool.Stats) *connpool.Histogram) metricSpec {
		return metricSpec{desc: d, kind: histogram, hist: h}
	}
	state := func(v string) *dto.LabelPair { return labelPair("state", v) }
	result := func(v string) *dto.LabelPair { return labelPair("result", v) }
	s := []metricSpec{
		g(connectionsDesc, state("closing"), func(s *connpool.Stats) float64 { return float64(s.Closing) }),
		g(connectionsDesc, state("dialing"), func(s *connpool.Stats) float64 { return float64(s.Dialing) }),
		g(connectionsDesc, state("idle"), func(s *connpool.Stats) float64 { return float64(s.Idle) }),
		g(connectionsDesc, state("in_use"), func(s *connpool.Stats) float64 { return float64(s.InUse) }),
		g(maxConnectionsDesc, nil, func(s *connpool.Stats) float64 { return float64(s.MaxConns) }),
		g(minIdleDesc, nil, func(s *connpool.Stats) float64 { return float64(s.MinIdle) }),
		g(maxIdleDesc, nil, func(s *connpool.Stats) float64 { return float64(s.MaxIdle) }),
		g(waitingDesc, nil, func(s *connpool.Stats) float64 { return float64(s.Waiting) }),
		g(oldestWaitDesc, nil, func(s *connpool.Stats) float64 { return seconds(s.OldestWait) }),

		c(getsDesc, result("hit"), func(s *connpool.Stats) int64 { return s.Hits }),
		c(getsDesc, result("miss"), func(s *connpool.Stats) int64 { return s.Misses }),
		c(waitsDesc, nil, func(s *connpool.Stats) int64 { return s.WaitCount }),
		c(timeoutsDesc, nil, func(s *connpool.Stats) int64 { return s.Timeouts }),
		c(rejectedDesc, nil, func(s *connpool.Stats) int64 { return s.TooManyWaiters }),
		h(waitSecondsDesc, func(s *connpool.Stats) *connpool.Histogram { return &s.WaitTime }),

		c(dialsDesc, nil, func(s *connpool.Stats) int64 { return s.Dials }),
		c(dialErrorsDesc, nil, func(s *connpool.Stats) int64 { return s.DialErrors }),
		h(dialSecondsDesc, func(s *connpool.Stats) *connpool.Histogram { return &s.DialTime }),
		h(useSecondsDesc, func(s *connpool.Stats) *connpool.Histogram { return &s.UseTime }),

		c(leaksDesc, nil, func(s *connpool.Stats) int64 { return s.Leaks }),
		c(resolvesDesc, result("error"), func(s *connpool.Stats) int64 { return s.ResolveErrors }),
		c(resolvesDesc, result("ok"), func(s *connpool.Stats) int64 { return s.Resolves }),
	}
	reasons := connpool.CloseReasons()
	slices.SortFunc(reasons, func(a, b connpool.CloseReason) int { return strings.Compare(a.String(), b.String()) })
	for _, r := range reasons {
		s = append(s, c(closedDesc, labelPair("reason", r.String()), func(s *connpool.Stats) int64 { return s.Closed(r) }))
	}
	return s
}()

// backendSpec is one metric of an address of a pool: its Desc, its type,
// its state label pair (nil for none) and its value.
type backendSpec struct {
	desc  *prometheus.Desc
	kind  kind
	state *dto.LabelPair
	value func(*connpool.AddressStats) float64
}

// backendSpecs are the metrics of each address of a pool, in the order
// collect sends them.
var backendSpecs = func() []backendSpec {
	state := func(v string) *dto.LabelPair { return labelPair("state", v) }
	flag := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	return []backendSpec{
		{backendConnectionsDesc, gauge, state("closing"), func(a *connpool.AddressStats) float64 { return float64(a.Open - a.InUse - a.Idle) }},
		{backendConnectionsDesc, gauge, state("dialing"), func(a *connpool.AddressStats) float64 { return float64(a.Dialing) }},
		{backendConnectionsDesc, gauge, state("idle"), func(a *connpool.AddressStats) float64 { return float64(a.Idle) }},
		{backendConnectionsDesc, gauge, state("in_use"), func(a *connpool.AddressStats) float64 { return float64(a.InUse) }},
		{backendDialsDesc, counter, nil, func(a *connpool.AddressStats) float64 { return float64(a.Dials) }},
		{backendDialErrorsDesc, counter, nil, func(a *connpool.AddressStats) float64 { return float64(a.DialErrors) }},
		{backendBackingOffDesc, gauge, nil, func(a *connpool.AddressStats) float64 { return flag(a.BackingOff) }},
		{backendDrainingDesc, gauge, nil, func(a *connpool.AddressStats) float64 { return flag(a.Draining) }},
	}
}()

// backendLabelName is the name of the label of an address's ip:port.
var backendLabelName = "backend"

// perPool counts the specs of each kind, and labelsPerPool the label
// pairs of all a pool's metrics together.
var perPool, labelsPerPool = func() (n [3]int, labels int) {
	for _, s := range specs {
		n[s.kind]++
		labels += len(poolLabels)
		if s.extra != nil {
			labels++
		}
	}
	return n, labels
}()

// perBackend counts the backendSpecs of each kind, and labelsPerBackend
// the label pairs of all an address's metrics together.
var perBackend, labelsPerBackend = func() (n [3]int, labels int) {
	for _, s := range backendSpecs {
		n[s.kind]++
		labels += len(poolLabels) + 1 // the pool's and backend
		if s.state != nil {
			labels++
		}
	}
	return n, labels
}()

// labelPair returns a label pair that the metrics of every scrape share:
// the registry and the encoders only read the pairs of a metric, as
// they do those of client_golang's own metrics, which are shared too.
func labelPair(name, value string) *dto.LabelPair {
	return &dto.LabelPair{Name: &name, Value: &value}
}

// poolLabelNames are poolLabels in the order of a metric's label pairs,
// sorted by name, and snapshot.labels holds their values in that order.
var poolLabelNames = [3]string{"address", "network", "pool"}

// bounds are the upper bounds of the histograms' buckets in seconds,
// shared by every scrape's buckets.
var bounds = func() (b [connpool.HistogramBuckets]float64) {
	for i := range b {
		b[i] = seconds(connpool.HistogramBound(i))
	}
	return b
}()

// emptyHistogram is the histogram of a pool that observed nothing, shared
// by every scrape: all buckets, the count and the sum 0.
var emptyHistogram = func() *dto.Histogram {
	var zero uint64
	var zeroSum float64
	h := &dto.Histogram{SampleCount: &zero, SampleSum: &zeroSum}
	for i := range bounds {
		h.Bucket = append(h.Bucket, &dto.Bucket{CumulativeCount: &zero, UpperBound: &bounds[i]})
	}
	return h
}()

// smallBuckets[i][n] is bucket i with a cumulative count of n, for n
// below smallCounts, shared by every scrape: most buckets of most pools
// count few observations, and take no storage of their own.
const smallCounts = 64

// bucketChunk is how many buckets of their own a scrape allocates at a
// time.
const bucketChunk = 256

var smallBuckets = func() *[connpool.HistogramBuckets][smallCounts]dto.Bucket {
	b := new([connpool.HistogramBuckets][smallCounts]dto.Bucket)
	counts := new([smallCounts]uint64)
	for n := range counts {
		counts[n] = uint64(n)
	}
	for i := range b {
		for n := range b[i] {
			b[i][n].CumulativeCount, b[i][n].UpperBound = &counts[n], &bounds[i]
		}
	}
	return b
}()

// snapshot is the Stats of one pool and the values of its labels, in the
// order of poolLabelNames.
type snapshot struct {
	labels [3]string
	stats  connpool.Stats
}

// newSnapshot returns the snapshot of the pool at a whose Stats are s,
// with label values made valid UTF-8, as they must be.
func newSnapshot(a connpool.Addr, s *connpool.Stats) snapshot {
	return snapshot{labels: [3]string{validUTF8(a.Address), validUTF8(a.Network), validUTF8(s.Name)}, stats: *s}
}

// sortSnapshots orders snaps by their label values, as the registry sorts
// the metrics of a family: sent in this order, they are sorted already,
// and the registry's sort only checks it.
func sortSnapshots(snaps []*snapshot) {
	slices.SortFunc(snaps, func(a, b *snapshot) int {
		return cmp.Or(strings.Compare(a.labels[0], b.labels[0]),
			strings.Compare(a.labels[1], b.labels[1]),
			strings.Compare(a.labels[2], b.labels[2]))
	})
}

// constMetric is a metric of a pool, ready to be written: its Desc, its
// label pairs and its value, one of gauge, counter and histogram. It
// stands for client_golang's const metrics, which build their label pairs
// and values one allocation at a time, and, for a histogram, from a map
// sorted at each Write: a scrape of a thousand pools made half a million
// allocations that way. Here a scrape allocates each kind of dto value
// in one slice (scrapeBuffers).
type constMetric struct {
	desc      *prometheus.Desc
	labels    []*dto.LabelPair
	gauge     *dto.Gauge
	counter   *dto.Counter
	histogram *dto.Histogram
}

// Desc returns the metric's Desc.
func (m *constMetric) Desc() *prometheus.Desc { return m.desc }

// Write sets out's labels and value. The label pairs and values it
// points to are the metric's: the registry and the encoders read them and
// write none.
func (m *constMetric) Write(out *dto.Metric) error {
	out.Label = m.labels
	out.Gauge = m.gauge
	out.Counter = m.counter
	out.Histogram = m.histogram
	return nil
}

// scrapeBuffers holds the storage of the metrics of n pools, each slice
// allocated once per scrape and cut up by take.
type scrapeBuffers struct {
	metrics    []constMetric
	poolPairs  []dto.LabelPair
	labels     []*dto.LabelPair
	values     []float64
	gauges     []dto.Gauge
	counters   []dto.Counter
	histograms []dto.Histogram
	buckets    []dto.Bucket // allocated bucketChunk at a time, when a count is not small
	bucketPtrs []*dto.Bucket
	counts     []uint64
	addrPairs  []dto.LabelPair // the backend label of each address
	addrs      []string        // each address's ip:port, made valid UTF-8
}

// newScrapeBuffers returns the storage of the metrics of the pools of
// snaps and of their addresses.
func newScrapeBuffers(snaps []*snapshot) *scrapeBuffers {
	const nb = connpool.HistogramBuckets
	n, na := len(snaps), 0
	for _, sn := range snaps {
		na += len(sn.stats.Addresses)
	}
	nh := n * perPool[histogram]
	return &scrapeBuffers{
		metrics:    make([]constMetric, n*len(specs)+na*len(backendSpecs)),
		poolPairs:  make([]dto.LabelPair, n*len(poolLabelNames)),
		labels:     make([]*dto.LabelPair, n*labelsPerPool+na*labelsPerBackend),
		values:     make([]float64, n*(perPool[gauge]+perPool[counter])+nh+na*len(backendSpecs)),
		gauges:     make([]dto.Gauge, n*perPool[gauge]+na*perBackend[gauge]),
		counters:   make([]dto.Counter, n*perPool[counter]+na*perBackend[counter]),
		histograms: make([]dto.Histogram, nh),
		bucketPtrs: make([]*dto.Bucket, nh*nb),
		counts:     make([]uint64, nh*(nb+1)),
		addrPairs:  make([]dto.LabelPair, na),
		addrs:      make([]string, na),
	}
}

// take returns the first n elements of *s and cuts them off it, with no
// room to append: a wrapping registerer appends label pairs to a
// metric's, and must not write over the next metric's.
func take[T any](s *[]T, n int) []T {
	out := (*s)[:n:n]
	*s = (*s)[n:]
	return out
}

// collect sends the metrics of the pools of snaps, in the order of snaps,
// to ch.
func collect(ch chan<- prometheus.Metric, snaps []*snapshot) {
	b := newScrapeBuffers(snaps)
	for _, sn := range snaps {
		pairs := take(&b.poolPairs, len(poolLabelNames))
		for i := range pairs {
			pairs[i].Name, pairs[i].Value = &poolLabelNames[i], &sn.labels[i]
		}
		for i := range specs {
			sp := &specs[i]
			m := &b.metrics[0]
			b.metrics = b.metrics[1:]
			m.desc = sp.desc
			n := len(pairs)
			if sp.extra != nil {
				n++
			}
			m.labels = take(&b.labels, n)
			for j := range pairs {
				m.labels[j] = &pairs[j]
			}
			if sp.extra != nil {
				m.labels[len(pairs)] = sp.extra
			}
			switch sp.kind {
			case gauge:
				m.gauge = &take(&b.gauges, 1)[0]
				m.gauge.Value = b.value(sp.value(&sn.stats))
			case counter:
				m.counter = &take(&b.counters, 1)[0]
				m.counter.Value = b.value(sp.value(&sn.stats))
			case histogram:
				m.histogram = b.histogram(sp.hist(&sn.stats))
			}
			ch <- m
		}
		for i := range sn.stats.Addresses {
			b.backend(ch, pairs, &sn.stats.Addresses[i])
		}
	}
}

// backend sends the metrics of address a of the pool whose label pairs
// are pool (poolLabelNames' order), stored in b.
func (b *scrapeBuffers) backend(ch chan<- prometheus.Metric, pool []dto.LabelPair, a *connpool.AddressStats) {
	addr := &take(&b.addrs, 1)[0]
	*addr = validUTF8(a.Address)
	backend := &take(&b.addrPairs, 1)[0]
	backend.Name, backend.Value = &backendLabelName, addr
	for i := range backendSpecs {
		sp := &backendSpecs[i]
		m := &take(&b.metrics, 1)[0]
		m.desc = sp.desc
		// Sorted by name: address, backend, network, pool, state.
		n := len(pool) + 1
		if sp.state != nil {
			n++
		}
		m.labels = take(&b.labels, n)
		m.labels[0], m.labels[1], m.labels[2], m.labels[3] = &pool[0], backend, &pool[1], &pool[2]
		if sp.state != nil {
			m.labels[4] = sp.state
		}
		if sp.kind == counter {
			m.counter = &take(&b.counters, 1)[0]
			m.counter.Value = b.value(sp.value(a))
		} else {
			m.gauge = &take(&b.gauges, 1)[0]
			m.gauge.Value = b.value(sp.value(a))
		}
		ch <- m
	}
}

// value returns a pointer to v, stored in b.
func (b *scrapeBuffers) value(v float64) *float64 {
	p := &take(&b.values, 1)[0]
	*p = v
	return p
}

// histogram returns h in Prometheus' form, stored in b: the cumulative
// count of each bounded bucket, the total count (the overflow bucket
// included), the sum in seconds. Prometheus adds the +Inf bucket, which
// is the count. An empty h is the shared emptyHistogram.
func (b *scrapeBuffers) histogram(h *connpool.Histogram) *dto.Histogram {
	const nb = connpool.HistogramBuckets
	if h.Sum == 0 && h.Count() == 0 {
		return emptyHistogram
	}
	out := &take(&b.histograms, 1)[0]
	counts := take(&b.counts, nb+1)
	out.Bucket = take(&b.bucketPtrs, nb)
	var n uint64
	for i := range nb {
		n += h.Buckets[i]
		if n < smallCounts {
			out.Bucket[i] = &smallBuckets[i][n]
			continue
		}
		if len(b.buckets) == 0 {
			b.buckets = make([]dto.Bucket, bucketChunk)
		}
		bk := &take(&b.buckets, 1)[0]
		counts[i] = n
		bk.CumulativeCount, bk.UpperBound = &counts[i], &bounds[i]
		out.Bucket[i] = bk
	}
	counts[nb] = n + h.Buckets[nb]
	out.SampleCount = &counts[nb]
	out.SampleSum = b.value(seconds(h.Sum))
	return out
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
