// Package connpoolfleet shares one connection budget among many processes,
// through Redis: a service that runs as 50 replicas against a database that
// allows 100 conns gives each replica's pools a share of the 100 that follows
// its load, instead of a static split that breaks when the replica count
// changes. The pools stay the enforcement point (each member sets its pools'
// caps with [connpool.Pool.SetMaxConns]); Redis is only the ledger of grants.
//
// A process joins a named budget of B conns with its pools ([Join]); the
// returned [Member] renews a lease on its grant in the background and moves
// its pools' caps as its grant changes. Nothing touches Redis on Get or Put:
// each member makes one round trip per renew interval (a third of the lease
// TTL), over a connection of its own, and every change of state is one
// atomic Lua script.
//
//	gate := connpoolfleet.NewGate()
//	pool, err := connpool.New("tcp", "db.internal:5432",
//		connpool.WithMaxConns(1), // the fleet sets the cap
//		connpool.WithDialer(gate.Dialer(nil)),
//	)
//	...
//	m, err := connpoolfleet.Join(ctx, rdb, "orders-db", 100,
//		[]connpoolfleet.Target{connpoolfleet.PoolTarget(pool)},
//		connpoolfleet.WithGate(gate))
//	...
//	defer m.Leave(context.Background())
//
// # Shares
//
// Each member reports its demand when it renews: the conns its pools have in
// use plus the Gets waiting, sampled several times per interval and smoothed.
// The budget is split max-min fairly: every member keeps a small floor
// ([WithFloor], 1 per pool by default), and the rest goes to the members whose
// demand exceeds their floor, each getting min(its excess demand, the water
// level), where the level is set so that the shares add up to what is left.
// Floors count against B: a member that joins when B is all granted gets
// nothing until the others have given back room (its state is
// [StateJoining]; with a [Gate], its pools dial nothing meanwhile: give them
// a short [connpool.WithDialBackoff], since a refused dial starts a backoff
// during which Gets fail at once). A target
// changes only by more than the damping ([WithDamping]), so shares do not
// flap on noise.
//
// A member's target is what it should have; its grant is what it may use.
// The two differ while a grant moves: see below.
//
// # Safety
//
// The invariant: at every instant, the sum over members of the grants a
// member may still be using is at most B. The script keeps in Redis the sum
// of all grants (plus the reserves of expired members, below) and grants
// growth only out of B minus that sum. What remains is to show that no
// member uses more than Redis has counted for it:
//
//   - A grant moves only after the giver has let go. When a member's target
//     falls below its grant, the script tells it the new target; the member
//     lowers its pools' caps to it at once (a borrowed conn is never
//     interrupted: it is closed when it comes back, and a pool over its cap
//     dials nothing), and reports its open conns (open plus dialing) and
//     its caps in each renew. The script lowers the member's grant only to
//     the larger of its target, its reported open conns and its reported
//     caps, and only that difference becomes room for others. A pool's open
//     conns never exceed the larger of its cap and what was open when the cap
//     was lowered, so the member never uses more than what stays counted.
//   - A member that cannot renew fences itself: before its lease can have
//     expired it lowers every cap to its safe share ([WithSafeShare], by
//     default its floor), and logs it. It counts from when it sent its last
//     successful renew, not from when the answer came: Redis set the lease to
//     end a TTL after it ran the script, which was after the member sent it.
//     The fence fires a margin ([WithFenceMargin]) before that end. A process
//     paused past its TTL (a stop, a long GC, a frozen VM) can wake with its
//     old caps; its fence timer fires at once then, but a pool goroutine
//     could dial first. A [Gate] closes that hole: its dialer compares the
//     monotonic clock with the lease on every dial, and refuses (with
//     [ErrFenced]) once the lease is past its fence time until the fence has
//     been applied; so pass your pools a gate's dialer.
//   - A lease that ends does not tell a dead process from a stopped one (a
//     SIGSTOP, a frozen VM): both stop renewing, but a stopped process keeps
//     its sockets open, its conns to the server among them, and uses them
//     again when it wakes; it cannot fence itself while stopped. Redis can
//     tell them apart: the kernel closes a dead process's connection to
//     Redis, not a stopped one's. So each member renews over a connection
//     of its own (the client's EphemeralConn), named after the budget and
//     the member with CLIENT SETNAME in the same pipeline as the script.
//     When the script finds the lease of a member with a named connection
//     ended, it does not release the grant: it holds it (still counted) and
//     tells the member that renews, which runs CLIENT LIST (only then) and
//     renews again to release those whose connection is gone. A held grant
//     is checked again about every half interval, by whichever member
//     renews, until its connection closes or it renews onto it again: a
//     woken member finds its grant as it left it. So a crashed member's
//     grant returns at its lease's end, as soon as a member checks; a
//     stopped member's stays counted as long as it is stopped, and nobody
//     grows into it.
//   - A member whose lease is released (it crashed, or its connection is
//     gone: a partition, or a client that gives no connection of its own)
//     loses its grant above its safe share at once; the script keeps its
//     safe share reserved for the reserve hold ([WithReserveHold], default
//     one TTL) after that, since a fenced member may still use it, and a
//     member with a gate dials nothing after its reserve hold ends. A
//     member that returns re-registers and gets its reserve back. A member
//     that is running fences itself before its lease ends, so releasing its
//     grant after that end is safe whether its connection is open or not.
//   - When Redis loses its data (a restart with nothing on disk, a failover
//     that lost the last writes), the script sees that its state key is gone
//     and starts a new epoch. Every member renews within a third of a TTL,
//     sees the new epoch, and re-registers claiming the caps it holds now,
//     which were granted in the old epoch and add up to at most B. For one
//     lease length after a new epoch (the learning period, as in youtube's
//     doorman), the script grants no growth and admits no new member, so
//     every member that still held a grant has re-registered before anyone
//     grows. A brand-new fleet starts with a learning period too: the script
//     cannot tell a new ledger from a lost one. A marker written with the
//     first registration would not tell them apart: a Redis that lost the
//     ledger lost the marker with it, so both look the same to the first
//     renew, and a member that joins first after a loss must not grow
//     before the members still holding grants of the lost epoch have
//     re-registered (their conns are open, whatever the ledger says). Only
//     the user can say that no member holds a grant, and a call to say so
//     at startup would be wrong after every loss: the first TTL is the
//     price.
//   - While Redis is unreachable no member grows: growth comes only from an
//     answer of the script.
//   - A report that comes late changes nothing. Each renew carries a number
//     that grows, and the script ignores a renew older than one it has
//     applied: renews that waited in the socket of a paused Redis run after
//     newer ones, and their stale counts of open conns must not release a
//     grant that is in use again.
//   - A member back from a lapse (its lease expired while it was paused or
//     cut off, or it comes from a lost epoch after the learning period) is
//     counted for all it may be using, its caps and its open conns, but may
//     use only what fits: its reserve and the room left. The rest is counted
//     as debt, and released as those conns close.
//
// What the invariant does not cover, and the backstop: a member whose lease
// expired and that was partitioned for longer than its reserve hold, or
// whose pools were used without a gate's dialer while paused, or clocks
// whose rates differ by more than the fence margin allows. And a process
// that is stopped while Redis does not see its connection: it was given a
// client with no connection of its own (a ClusterClient, a Ring: its grant
// is released at its lease's end, as if it were dead), or Redis closed its
// connection while it was stopped (Redis's idle timeout, the timeout
// setting, shorter than the pause; a Redis restart or failover during the
// pause), or it stopped between a renew that failed on a broken connection
// and the next (up to an interval with no named connection), or Redis
// refuses CLIENT SETNAME to it or CLIENT LIST to the members that check (an
// ACL: they log it, and release at the lease's end). Then, once its lease
// ends, the server can see up to B plus its open conns above its safe
// share, until it wakes and they come back. Keep a hard limit at the server as the backstop: max_connections
// in PostgreSQL or MySQL, a role's CONNECTION LIMIT (ALTER ROLE app
// CONNECTION LIMIT 100), maxclients in Redis. The fleet keeps the fleet
// under it in normal operation and every failure below; the server's limit
// turns a bug into refused dials instead of an overloaded backend.
//
// # Failures
//
//	What happens                 | What each member does
//	-----------------------------+------------------------------------------------
//	Redis slow (answers late)    | Keeps its caps while renews answer within the
//	                             | lease; a renew that has not answered by the
//	                             | fence time fences it to its safe share; an
//	                             | answer that comes later counts from its send,
//	                             | so it cannot lift the fence on a stale lease.
//	Redis down                   | Nobody grows. Each member fences to its safe
//	                             | share before its lease ends, keeps serving on
//	                             | it, and re-registers when Redis is back.
//	Redis restarted empty,       | New epoch: members re-register claiming their
//	or a failover lost writes    | caps; nobody grows and nobody joins for one
//	                             | TTL (learning); then shares resume.
//	Redis partitioned from some  | Those members fence to their safe share. Redis
//	members, or their hosts die  | may keep its side of their connections until
//	(power, a VM killed)         | TCP keepalive finds them dead (about twice
//	                             | tcp-keepalive: 10 min by default) or its
//	                             | timeout closes them: their grants are held
//	                             | until then (safe, but slower), then released
//	                             | but their safe shares, which stay reserved for
//	                             | the reserve hold; the rest goes to the members
//	                             | Redis can reach.
//	Member crashes (kill -9)     | The kernel closes its connection. Its grant
//	                             | above its safe share returns when its lease
//	                             | expires (never before) and a member has seen
//	                             | its connection gone (CLIENT LIST, within an
//	                             | interval); its reserve a reserve hold later.
//	Member paused past its TTL   | Its connection to Redis stays open: its grant
//	(SIGSTOP, a frozen VM)       | is held, still counted, and nobody grows into
//	                             | it. On waking its fence fires at once; with a
//	                             | Gate no dial happens before it renews onto its
//	                             | held grant. Killed while stopped: released as
//	                             | a crash.
//	Member's connection closed   | The next renew dials a new one and names it in
//	(Redis timeout, restart)     | the same round trip.
//	Member leaves (Member.Leave) | Its grant returns at once, less the conns it
//	                             | still has open, which are held for one TTL.
//	B changed (Member.SetBudget) | Nobody grows while the sum of grants is above
//	                             | the new B; members shrink as conns come back.
//
// # Seeing it
//
// [Member.Stats] has the grant, target, caps, demand, lease state and
// counters of renews and fences. [WithEvents] gets each change of state,
// grant or target; a member logs a warning through [WithLogger] when it
// fences itself. The exporters read a member through [Member.FleetNames],
// [Member.FleetState], [Member.FleetShares] and [Member.FleetCounts], so
// that they need neither this module nor Redis:
//
//	reg.MustRegister(connpoolprom.NewFleetCollector(m)) // Prometheus
//	registration, err := metrics.ObserveFleet(m)        // OpenTelemetry (connpoolotel)
//
// # Cost per call
//
// A renew costs O(log N) in Redis for N members, not O(N): the script keeps
// the sum of grants and the sum of floors as fields of one hash, leases and
// reserves in sorted sets by expiry (it pops at most a few expired entries
// per call, so expiry is amortized over calls), and demands in a sorted set.
// Only the water level needs all demands: it is recomputed at most once per
// renew interval for the whole fleet, by whichever renew comes first after it
// is due (O(N), so O(1) amortized per renew), and each renew reads its own
// target from the level. Each member makes one round trip per renew
// interval: CLIENT SETNAME and EVALSHA of the script, pipelined. Only when
// a lease has ended does a member make two more: CLIENT LIST TYPE normal
// (O(clients) in Redis) and a second renew that releases the members whose
// connections are gone. The script hands out such a check at most every
// half interval for the whole fleet, of up to 64 held members, however many
// are held. The set of held members is counted in the state hash, so a
// renew touches it only when it has some: the normal renew runs as many
// commands as before the hold, and CLIENT SETNAME adds about 2 µs of Redis
// time to its 30.
//
// # Redis
//
// Any Redis 5 or later (the script reads TIME and relies on effects
// replication, the default from Redis 7). All keys of a budget share one hash
// tag ({name}), so a budget lives on one Redis Cluster slot. A budget's keys
// expire by themselves some leases after its last member is gone.
//
// Give [Join] a *redis.Client (or a client with its EphemeralConn method):
// the member takes one connection of that client's pool for its renews and
// holds it until Leave (count it in PoolSize), and discards it then, so
// that no other caller inherits its name. The Redis user needs client|setname
// and client|list besides the script's commands. Keep Redis's timeout at 0
// (its default: idle connections are never closed) or above the longest
// pause of a member you want covered; tcp-keepalive (default 300 s) bounds
// how long the grant of a member cut off from Redis is held (about twice
// that). Any other Scripter (a ClusterClient, a Ring) gives no connection of
// its own: the member then renews through it, and its grant is released at
// its lease's end, stopped or dead. A fleet may mix both kinds of member (or
// versions of this module, in a rolling upgrade): only members with a
// connection of their own have their grants held and check others'.
package connpoolfleet
