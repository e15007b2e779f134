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

// family is one metric of the package: its name, its help and the labels
// it has after the pool's. Each has an index in families, which the specs
// use to find its Desc in a set of Descs (genericDescs or a pool's own).
type family struct {
	name, help string
	extra      []string
}

// The index of each family in families.
const (
	fConnections = iota
	fMaxConnections
	fMinIdle
	fMaxIdle
	fWaiting
	fOldestWait
	fGets
	fWaits
	fTimeouts
	fRejected
	fWaitSeconds
	fDials
	fDialErrors
	fDialSeconds
	fUseSeconds
	fClosed
	fLeaks
	fResolves
	fEjections
	fBackendConnections
	fBackendDials
	fBackendDialErrors
	fBackendBackingOff
	fBackendDraining
	fBackendEjected
	fBackendEjections
	numFamilies
)

// families are the metrics, in the order a pool's collector describes them.
var families = [numFamilies]family{
	fConnections: {"connpool_connections",
		"Conns the pool counts against its max now, by state: in_use (borrowed), idle (including those under a background check), dialing, closing.",
		[]string{"state"}},
	fMaxConnections: {"connpool_max_connections",
		"The cap on the conns the pool has open or dialing (WithMaxConns).", nil},
	fMinIdle: {"connpool_min_idle_connections",
		"The idle conns the pool keeps ready (WithMinIdle).", nil},
	fMaxIdle: {"connpool_max_idle_connections",
		"The cap on idle conns (WithMaxIdle).", nil},
	fWaiting: {"connpool_waiting_requests",
		"Gets queued for a conn now.", nil},
	fOldestWait: {"connpool_oldest_wait_seconds",
		"How long the Get that has waited longest has been queued; 0 when none waits.", nil},

	fGets: {"connpool_gets_total",
		"Gets (Get, TryGet, DialContext) that returned, by result: hit (served an existing conn, idle or handed off), miss (served a freshly dialed conn), or why it failed: timeout, dial_error, pool_closed, too_many_waiters, no_idle_conn, invalid, shed_deadline, shed_overload, clients_over_cap (GetFailure).",
		[]string{"result"}},
	fWaits: {"connpool_waits_total",
		"Gets that queued because the pool was at its max conns or its dial limit.", nil},
	fTimeouts: {"connpool_timeouts_total",
		"Gets whose context ended before a conn was ready: connpool_gets_total{result=\"timeout\"}.", nil},
	fRejected: {"connpool_rejected_total",
		"Gets refused at once because WithMaxWaiters Gets were queued: connpool_gets_total{result=\"too_many_waiters\"}.", nil},
	fWaitSeconds: {"connpool_wait_seconds",
		"How long Gets that queued waited, one observation per Get however many times it queued: the count is connpool_waits_total.", nil},

	fDials: {"connpool_dials_total",
		"Conns dialed successfully.", nil},
	fDialErrors: {"connpool_dial_errors_total",
		"Dials that failed, including those cut short by Close and those a group's cap held until no Get needed them.", nil},
	fDialSeconds: {"connpool_dial_seconds",
		"How long successful dials took.", nil},
	fUseSeconds: {"connpool_use_seconds",
		"How long conns were held from Get to Put; empty unless WithUseTimeMetrics is on.", nil},

	fClosed: {"connpool_closed_total",
		"Conns the pool closed or gave up, by reason: idle, lifetime, unhealthy, broken, max_idle, released, pool_closed, reset, detached, leaked, resized, address_removed, rebalanced, ejected (CloseReason).",
		[]string{"reason"}},
	fLeaks: {"connpool_leaks_total",
		"Conns reported as held past the leak threshold (WithLeakDetection).", nil},
	fResolves: {"connpool_resolves_total",
		"Lookups of the pool's host name (WithResolver), by result: ok or error.",
		[]string{"result"}},

	// The metrics of each address a pool of a host name dials
	// (Stats.Addresses), labelled backend with its ip:port.
	fBackendConnections: {"connpool_backend_connections",
		"Conns to one address of the pool's host name now, by state: in_use, idle (including those under a background check), dialing, closing.",
		[]string{"backend", "state"}},
	fEjections: {"connpool_ejections_total",
		"Ejections of an address of the pool's host name whose conns kept failing after the dial (WithOutlierEjection).",
		nil},
	fBackendDials: {"connpool_backend_dials_total",
		"Conns dialed successfully to one address of the pool's host name.",
		[]string{"backend"}},
	fBackendDialErrors: {"connpool_backend_dial_errors_total",
		"Dials to one address of the pool's host name that failed.",
		[]string{"backend"}},
	fBackendBackingOff: {"connpool_backend_backing_off",
		"1 while dials to one address of the pool's host name are paused after failures (WithDialBackoff), else 0.",
		[]string{"backend"}},
	fBackendDraining: {"connpool_backend_draining",
		"1 while one address that left the pool's resolved set still has conns open, closed as they come back, else 0.",
		[]string{"backend"}},
	fBackendEjected: {"connpool_backend_ejected",
		"1 while one address of the pool's host name is ejected for its failing conns (WithOutlierEjection), else 0.",
		[]string{"backend"}},
	fBackendEjections: {"connpool_backend_ejections_total",
		"Times one address of the pool's host name was ejected for its failing conns (WithOutlierEjection).",
		[]string{"backend"}},
}

// descSet holds a Desc per family, indexed as families.
type descSet [numFamilies]*prometheus.Desc

// genericDescs are the Descs of the metrics of a group's pools, which
// carry the pool's labels as variable labels: the group's collector
// describes none of them (it is unchecked), as its pools change.
var genericDescs = func() (d descSet) {
	for i, f := range families {
		d[i] = prometheus.NewDesc(f.name, f.help, append(slices.Clone(poolLabels), f.extra...), nil)
	}
	return d
}()

// newPoolDescs returns the Descs of the metrics of the pool whose label
// values are labels (poolLabelNames' order), which carry them as constant
// labels: they identify the pool to the registry, which refuses a second
// collector of it.
func newPoolDescs(labels [3]string) *descSet {
	var d descSet
	consts := prometheus.Labels{}
	for i, name := range poolLabelNames {
		consts[name] = labels[i]
	}
	for i, f := range families {
		d[i] = prometheus.NewDesc(f.name, f.help, f.extra, consts)
	}
	return &d
}

// kind is the type of a metric: which dto field its value goes in.
type kind uint8

const (
	gauge kind = iota
	counter
	histogram
)

// metricSpec says how one metric of a pool is made from its Stats: its
// family, its type, the label pair after the pool's (nil for none), and the
// field it comes from: value for a gauge or a counter, hist for a
// histogram.
type metricSpec struct {
	fam   int // the index of its family
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
	g := func(f int, extra *dto.LabelPair, v func(*connpool.Stats) float64) metricSpec {
		return metricSpec{fam: f, kind: gauge, extra: extra, value: v}
	}
	c := func(f int, extra *dto.LabelPair, v func(*connpool.Stats) int64) metricSpec {
		return metricSpec{fam: f, kind: counter, extra: extra, value: func(s *connpool.Stats) float64 { return float64(v(s)) }}
	}
	h := func(f int, h func(*connpool.Stats) *connpool.Histogram) metricSpec {
		return metricSpec{fam: f, kind: histogram, hist: h}
	}
	state := func(v string) *dto.LabelPair { return labelPair("state", v) }
	result := func(v string) *dto.LabelPair { return labelPair("result", v) }
	s := []metricSpec{
		g(fConnections, state("closing"), func(s *connpool.Stats) float64 { return float64(s.Closing) }),
		g(fConnections, state("dialing"), func(s *connpool.Stats) float64 { return float64(s.Dialing) }),
		g(fConnections, state("idle"), func(s *connpool.Stats) float64 { return float64(s.Idle) }),
		g(fConnections, state("in_use"), func(s *connpool.Stats) float64 { return float64(s.InUse) }),
		g(fMaxConnections, nil, func(s *connpool.Stats) float64 { return float64(s.MaxConns) }),
		g(fMinIdle, nil, func(s *connpool.Stats) float64 { return float64(s.MinIdle) }),
		g(fMaxIdle, nil, func(s *connpool.Stats) float64 { return float64(s.MaxIdle) }),
		g(fWaiting, nil, func(s *connpool.Stats) float64 { return float64(s.Waiting) }),
		g(fOldestWait, nil, func(s *connpool.Stats) float64 { return seconds(s.OldestWait) }),

		c(fWaits, nil, func(s *connpool.Stats) int64 { return s.WaitCount }),
		c(fTimeouts, nil, func(s *connpool.Stats) int64 { return s.Timeouts }),
		c(fRejected, nil, func(s *connpool.Stats) int64 { return s.TooManyWaiters }),
		h(fWaitSeconds, func(s *connpool.Stats) *connpool.Histogram { return &s.WaitTime }),

		c(fDials, nil, func(s *connpool.Stats) int64 { return s.Dials }),
		c(fDialErrors, nil, func(s *connpool.Stats) int64 { return s.DialErrors }),
		h(fDialSeconds, func(s *connpool.Stats) *connpool.Histogram { return &s.DialTime }),
		h(fUseSeconds, func(s *connpool.Stats) *connpool.Histogram { return &s.UseTime }),

		c(fLeaks, nil, func(s *connpool.Stats) int64 { return s.Leaks }),
		c(fResolves, result("error"), func(s *connpool.Stats) int64 { return s.ResolveErrors }),
		c(fResolves, result("ok"), func(s *connpool.Stats) int64 { return s.Resolves }),
		c(fEjections, nil, func(s *connpool.Stats) int64 { return s.Ejections }),
	}
	// The Gets of every result: hit, miss and each failure.
	gets := []metricSpec{
		c(fGets, result("hit"), func(s *connpool.Stats) int64 { return s.Hits }),
		c(fGets, result("miss"), func(s *connpool.Stats) int64 { return s.Misses }),
	}
	for _, f := range connpool.GetFailures() {
		gets = append(gets, c(fGets, result(f.String()), func(s *connpool.Stats) int64 { return s.Failed(f) }))
	}
	slices.SortFunc(gets, func(a, b metricSpec) int { return strings.Compare(a.extra.GetValue(), b.extra.GetValue()) })
	s = append(s, gets...)

	reasons := connpool.CloseReasons()
	slices.SortFunc(reasons, func(a, b connpool.CloseReason) int { return strings.Compare(a.String(), b.String()) })
	for _, r := range reasons {
		s = append(s, c(fClosed, labelPair("reason", r.String()), func(s *connpool.Stats) int64 { return s.Closed(r) }))
	}
	return s
}()

// backendSpec is one metric of an address of a pool: its family, its type,
// its state label pair (nil for none) and its value.
type backendSpec struct {
	fam   int // the index of its family
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
		{fBackendConnections, gauge, state("closing"), func(a *connpool.AddressStats) float64 { return float64(a.Open - a.InUse - a.Idle) }},
		{fBackendConnections, gauge, state("dialing"), func(a *connpool.AddressStats) float64 { return float64(a.Dialing) }},
		{fBackendConnections, gauge, state("idle"), func(a *connpool.AddressStats) float64 { return float64(a.Idle) }},
		{fBackendConnections, gauge, state("in_use"), func(a *connpool.AddressStats) float64 { return float64(a.InUse) }},
		{fBackendDials, counter, nil, func(a *connpool.AddressStats) float64 { return float64(a.Dials) }},
		{fBackendDialErrors, counter, nil, func(a *connpool.AddressStats) float64 { return float64(a.DialErrors) }},
		{fBackendBackingOff, gauge, nil, func(a *connpool.AddressStats) float64 { return flag(a.BackingOff) }},
		{fBackendDraining, gauge, nil, func(a *connpool.AddressStats) float64 { return flag(a.Draining) }},
		{fBackendEjected, gauge, nil, func(a *connpool.AddressStats) float64 { return flag(a.Ejected) }},
		{fBackendEjections, counter, nil, func(a *connpool.AddressStats) float64 { return float64(a.Ejections) }},
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

// snapshot is the Stats of one pool, the values of its labels, in the
// order of poolLabelNames, and the Descs of its metrics.
type snapshot struct {
	labels [3]string
	stats  connpool.Stats
	descs  *descSet
}

// newSnapshot returns the snapshot of the pool at a whose Stats are s,
// with label values made valid UTF-8, as they must be, and the generic
// Descs.
func newSnapshot(a connpool.Addr, s *connpool.Stats) snapshot {
	return snapshot{labels: poolLabelValues(a, s.Name), stats: *s, descs: &genericDescs}
}

// poolLabelValues returns the label values of the pool named name at a,
// in the order of poolLabelNames, made valid UTF-8.
func poolLabelValues(a connpool.Addr, name string) [3]string {
	return [3]string{validUTF8(a.Address), validUTF8(a.Network), validUTF8(name)}
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
			m.desc = sn.descs[sp.fam]
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
			b.backend(ch, sn.descs, pairs, &sn.stats.Addresses[i])
		}
	}
}

// backend sends the metrics of address a of the pool whose Descs are
// descs and whose label pairs are pool (poolLabelNames' order), stored in
// b.
func (b *scrapeBuffers) backend(ch chan<- prometheus.Metric, descs *descSet, pool []dto.LabelPair, a *connpool.AddressStats) {
	addr := &take(&b.addrs, 1)[0]
	*addr = validUTF8(a.Address)
	backend := &take(&b.addrPairs, 1)[0]
	backend.Name, backend.Value = &backendLabelName, addr
	for i := range backendSpecs {
		sp := &backendSpecs[i]
		m := &take(&b.metrics, 1)[0]
		m.desc = descs[sp.fam]
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
