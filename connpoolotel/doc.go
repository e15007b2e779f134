// Package connpoolotel records OpenTelemetry metrics for connpool pools,
// under the names of the OpenTelemetry semantic conventions for database
// client connection pools.
//
// Three lines wire a pool: [New] makes the instruments, [Metrics.Hooks]
// records the durations as things happen, and [Metrics.Observe] reports
// the pool's gauges and counters from [connpool.Pool.Stats] at each
// collection, until its registration is unregistered.
//
//	m, err := connpoolotel.New(otel.GetMeterProvider())
//	pool, err := connpool.New("tcp", addr, connpool.WithHooks(m.Hooks()))
//	reg, err := m.Observe(pool)
//	defer reg.Unregister() // before or after pool.Close; nothing leaks after it
//
// # Instruments
//
// The names, instrument kinds, units and attributes are those of the
// semantic conventions v1.43.0 (the version whose Go package,
// go.opentelemetry.io/otel/semconv/v1.43.0, names them here, and the meter's
// schema URL), unchanged in v1.44.0; the conventions mark them Development.
// Every instrument carries db.client.connection.pool.name, the pool's name
// as Stats and the events give it: connpool.WithName, by default the
// network and address ("tcp 10.0.0.7:5432"), and in a Group the address
// after the name. The state of db.client.connection.count is idle or used.
//
//	name                                    kind                unit          from
//	db.client.connection.count              async UpDownCounter {connection}  Stats.Idle (idle), Stats.InUse (used)
//	db.client.connection.idle.max           async UpDownCounter {connection}  Stats.MaxIdle
//	db.client.connection.idle.min           async UpDownCounter {connection}  Stats.MinIdle
//	db.client.connection.max                async UpDownCounter {connection}  Stats.MaxConns
//	db.client.connection.pending_requests   async UpDownCounter {request}     Stats.Waiting
//	db.client.connection.timeouts           async Counter       {timeout}     Stats.Timeouts
//	db.client.connection.create_time        Histogram           s             DialDone, of each successful dial
//	db.client.connection.wait_time          Histogram           s             GetDone, of each Get that queued
//	db.client.connection.use_time           Histogram           s             Put, of each conn returned
//	connpool.client.connection.closed       async Counter       {connection}  Stats' close counters, by connpool.close.reason
//	connpool.client.connection.gets         async Counter       {request}     Hits, Misses and Failed(f), by connpool.get.result
//	connpool.client.connection.ejections    async Counter       {ejection}    Stats.Ejections
//
// A pool of a host name (connpool.WithResolver) reports each address of
// Stats.Addresses too, under connpool's own names, with the pool's name,
// network.peer.address and network.peer.port (the address's IP and port):
//
//	connpool.client.connection.backend.count        async UpDownCounter {connection}  Idle (idle), InUse (used)
//	connpool.client.connection.backend.dials        async Counter       {connection}  Dials
//	connpool.client.connection.backend.dial_errors  async Counter       {error}       DialErrors
//	connpool.client.connection.backend.backing_off  async Gauge         1             1 if BackingOff, else 0
//	connpool.client.connection.backend.draining     async Gauge         1             1 if Draining, else 0
//	connpool.client.connection.backend.ejected      async Gauge         1             1 if Ejected, else 0
//	connpool.client.connection.backend.ejections    async Counter       {ejection}    Ejections
//
// Conns being dialed or closed are in neither state of count. wait_time
// counts the Gets that queued at the cap or the dial limit, served or not,
// as Stats.WaitCount does; a Get served at once reads no clock and records
// nothing. connpool.client.connection.closed is connpool's own: its
// connpool.close.reason is [connpool.CloseReason.String] ("idle",
// "lifetime", "broken", ...), every reason reported, zeros included.
//
// connpool.client.connection.gets is connpool's own too: every Get,
// TryGet and DialContext that returned, with connpool.get.result hit (an
// existing conn), miss (a fresh dial), or, for a failed one, the
// [connpool.GetFailure]'s String ("timeout", "dial_error",
// "pool_closed", "too_many_waiters", "no_idle_conn", "invalid",
// "clients_over_cap", and, under WithQueuePolicy, "shed_deadline" and
// "shed_overload"), which
// the point also carries as error.type, the conventions' attribute of an
// operation that failed. Its rate over every result is the Get rate; over
// the points with an error.type, the Get error rate.
// db.client.connection.timeouts is its timeout result.
//
// The histograms advise the pool's own bucket bounds
// ([connpool.HistogramBound], 50µs doubling to 1.64s), so that create_time
// and use_time agree bucket for bucket with Stats.DialTime and UseTime (the
// latter with connpool.WithUseTimeMetrics), and wait_time's sum with
// Stats.WaitDuration, and wait_time bucket for bucket with Stats.WaitTime;
// an SDK view can change them.
//
// # Fleet budgets
//
// [Metrics.ObserveFleet] reports the members of a fleet budget
// (github.com/connpool/connpool/connpoolfleet, processes that share one
// budget of conns through Redis): each member's grant, target, caps,
// budget, demand, lease state (joining, learning, granted, fenced, left)
// and its renews, renew errors and fences, under connpool.fleet.* names
// with connpool.fleet.budget and connpool.fleet.member. A
// connpoolfleet.Member satisfies [FleetMember], so this module depends on
// neither connpoolfleet nor Redis:
//
//	reg, err := m.ObserveFleet(member) // member from connpoolfleet.Join
//
// # Hooks and what they cost
//
// [Metrics.Hooks] returns hooks for DialDone, GetDone, Put and PoolClosed.
// Given with [connpool.WithHooks] next to the user's own (WithHooks may be
// given several times), or joined with [connpool.Hooks.Chain], both run:
//
//	connpool.WithHooks(m.Hooks().Chain(myHooks))
//
// One [Metrics] serves any number of pools, as one Hooks value does: the
// events carry the pool's name. A Put hook makes the pool read the clock
// on each Get and Put, as connpool.WithUseTimeMetrics does, and each event
// records one histogram point.
//
// # Unregistering
//
// [Metrics.Observe] and [Metrics.ObserveGroup] register a callback with the
// meter that holds the pool (or group) and reads its Stats once per
// collection. Unregister the [metric.Registration] they return when the
// pool is done with, or the meter keeps the pool, and reports it, for as
// long as the meter lives. The hooks hold nothing: a closed pool's name is
// forgotten on its PoolClosed event.
package connpoolotel
