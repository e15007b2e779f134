// Package connpoolprom exports the [connpool.Stats] of pools to
// Prometheus. Three lines wire a pool to a /metrics endpoint:
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(connpoolprom.NewCollector(pool))
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// [NewGroupCollector] does the same for every pool of a [connpool.Group],
// and [NewFleetCollector] for the members of a fleet budget
// (github.com/connpool/connpool/connpoolfleet, processes that share one
// budget of conns through Redis): each member's grant, target, caps,
// budget, demand, lease state and counters, as connpool_fleet_* metrics
// labelled budget and member. A connpoolfleet.Member satisfies
// [FleetMember], so this module depends on neither connpoolfleet nor
// Redis:
//
//	reg.MustRegister(connpoolprom.NewFleetCollector(member)) // member from connpoolfleet.Join
//
// Any number of collectors register in one registry: a service's
// components each register their own pools, or its group, and one Gather
// serves them all. A pool's collector describes its metrics with the
// pool's labels as constant labels, so the registry refuses, at
// registration, a second collector of a pool, or of another pool of the
// same name, network and address: an error with Register, a panic with
// MustRegister, never a series scraped twice. A group's collector is
// unchecked, as its pools come and go: register it once per registry, and
// name apart the pools of groups that dial the same address.
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
//	connpool_gets_total{result}        counter: hit (Hits), miss (Misses), and Failed(f) for each f of GetFailures, by f.String
//	connpool_waits_total               counter: WaitCount
//	connpool_timeouts_total            counter: Timeouts (= gets_total{result="timeout"})
//	connpool_rejected_total            counter: TooManyWaiters (= gets_total{result="too_many_waiters"})
//	connpool_wait_seconds              histogram: WaitTime
//	connpool_dials_total               counter: Dials
//	connpool_dial_errors_total         counter: DialErrors
//	connpool_dial_seconds              histogram: DialTime
//	connpool_use_seconds               histogram: UseTime
//	connpool_closed_total{reason}      counter: Closed(r) for each r of CloseReasons, by r.String
//	connpool_leaks_total               counter: Leaks
//	connpool_resolves_total{result}    counter: ok (Resolves), error (ResolveErrors)
//	connpool_ejections_total           counter: Ejections
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
//	connpool_backend_ejected             gauge: 1 if Ejected, else 0
//	connpool_backend_ejections_total     counter: Ejections
//
// The adaptive cap's bounds and baseline are not exported (the cap it
// chose is connpool_max_connections).
//
// connpool_gets_total counts every Get, TryGet and DialContext that
// returned, by result: hit, miss, or why it failed (timeout, dial_error,
// pool_closed, too_many_waiters, no_idle_conn, invalid, clients_over_cap
// and, under WithQueuePolicy, shed_deadline and shed_overload: the Gets
// the queue policy turned away; see [connpool.GetFailure]). A rate summed
// over the results is the Get rate,
// and the failures' share of it the Get error rate:
//
//	sum by (pool) (rate(connpool_gets_total{result!~"hit|miss"}[5m]))
//	  / sum by (pool) (rate(connpool_gets_total[5m]))
//
// Before, it counted hits and misses only. Those two series are as they
// were; a query that sums over every result now counts failed Gets too,
// so a hit ratio names its results: hit / (hit + miss).
// connpool_timeouts_total and connpool_rejected_total stay, equal to
// their results of connpool_gets_total.
//
// The closing state is Stats.Closing: conns whose socket is
// being closed, which still count against MaxConns, so the four states add
// up to what the cap bounds. connpool_wait_seconds has one observation
// per Get that queued: its count is connpool_waits_total (WaitCount), its
// sum WaitDuration.
//
// The histograms keep connpool's buckets ([connpool.HistogramBound]): 16
// upper bounds from 50µs doubling to 1.6384s, and +Inf. A pool is 41
// metrics, 95 series with the histograms' buckets, sums and counts, and 8
// more for each address of a host name. Most
// of a scrape's cost is the registry's, which checks, hashes and sorts
// each metric: on a 2-vCPU machine, about half a microsecond a metric,
// 15ms of the 20ms that a Gather of a Group of 1,000 pools took when a
// pool was 35 metrics (BenchmarkGroupCollect, whose doc says what each
// depth measures); the six results of failed Gets add a sixth to both.
//
// dashboard.json, next to this package's source, is a Grafana dashboard
// of these metrics: pick a job, its instances (a service runs many
// replicas) and pools; it shows the Get error rate and the failed Gets by
// result first. Its use-time panel stays empty unless the pools run
// connpool.WithUseTimeMetrics.
package connpoolprom
