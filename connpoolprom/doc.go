// Package connpoolprom exports the [connpool.Stats] of pools to
// Prometheus. Three lines wire a pool to a /metrics endpoint:
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(connpoolprom.NewCollector(pool))
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// [NewGroupCollector] does the same for every pool of a [connpool.Group].
//
// A scrape calls Stats once per pool and sends the snapshot as constant
// metrics: no hooks, nothing on the Get path, and a cost that grows with
// the number of pools, not of conns. Every metric has the labels pool
// (the name, [connpool.WithName]), network and address; durations are in
// seconds:
//
//	connpool_connections{state}        gauge: in_use, idle, dialing, closing
//	connpool_max_connections           gauge: MaxConns
//	connpool_min_idle_connections      gauge: MinIdle
//	connpool_max_idle_connections      gauge: MaxIdle
//	connpool_waiting_requests          gauge: Waiting
//	connpool_oldest_wait_seconds       gauge: OldestWait
//	connpool_gets_total{result}        counter: hit (Hits), miss (Misses)
//	connpool_waits_total               counter: WaitCount
//	connpool_timeouts_total            counter: Timeouts
//	connpool_rejected_total            counter: TooManyWaiters
//	connpool_wait_seconds              histogram: WaitTime
//	connpool_dials_total               counter: Dials
//	connpool_dial_errors_total         counter: DialErrors
//	connpool_dial_seconds              histogram: DialTime
//	connpool_use_seconds               histogram: UseTime
//	connpool_closed_total{reason}      counter: Closed(r) for each r of CloseReasons, by r.String
//	connpool_leaks_total               counter: Leaks
//	connpool_resolves_total{result}    counter: ok (Resolves), error (ResolveErrors)
//
// A pool of a host name ([connpool.WithResolver]) adds, for each address
// of Stats.Addresses, these metrics with one more label, backend, the
// address's ip:port:
//
//	connpool_backend_connections{state}  gauge: in_use, idle, dialing, closing (Open - InUse - Idle)
//	connpool_backend_dials_total         counter: Dials
//	connpool_backend_dial_errors_total   counter: DialErrors
//	connpool_backend_backing_off         gauge: 1 if BackingOff, else 0
//	connpool_backend_draining            gauge: 1 if Draining, else 0
//
// The adaptive cap's bounds and baseline are not exported (the cap it
// chose is connpool_max_connections).
//
// The closing state is Stats.Closing: conns whose socket is
// being closed, which still count against MaxConns, so the four states add
// up to what the cap bounds. connpool_wait_seconds has one observation
// per Get that queued: its count is connpool_waits_total (WaitCount), its
// sum WaitDuration.
//
// The histograms keep connpool's buckets ([connpool.HistogramBound]): 16
// upper bounds from 50µs doubling to 1.6384s, and +Inf. A pool is 35
// metrics, 89 series with the histograms' buckets, sums and counts, and 8
// more for each address of a host name. Most
// of a scrape's cost is the registry's, which checks, hashes and sorts
// each metric: on a 2-vCPU machine, about half a microsecond a metric,
// 15ms of the 20ms that a Gather of a Group of 1,000 pools takes
// (BenchmarkGroupCollect, whose doc says what each depth measures).
//
// dashboard.json, next to this package's source, is a Grafana dashboard
// of these metrics.
package connpoolprom
