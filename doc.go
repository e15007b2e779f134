// Package connpool pools TCP connections (or any [net.Conn]) to one
// address.
//
// [New] returns a [Pool], which hands out conns: [Pool.Get] returns a
// [*Conn], a wrapped net.Conn that goes back to the pool on Close. It
// keeps at most MaxConns open, counting those being dialed, idle and
// borrowed; a Get at the cap waits its turn, first come, first served. In
// the background one goroutine per pool keeps MinIdle spare conns dialed,
// closes conns idle too long or past their max lifetime, and runs a
// health check on idle conns. On checkout, a non-blocking peek at the
// socket drops conns the peer closed or reset, and conns with bytes
// nobody asked for (a *tls.Conn: the socket under it, for a close or
// reset).
//
//	pool, err := connpool.New("tcp", "10.0.0.7:6379",
//		connpool.WithMaxConns(32),
//		connpool.WithMinIdle(4),
//		connpool.WithHealthCheck(connpool.PingPong([]byte("PING\r\n"), []byte("+PONG\r\n"))),
//	)
//	if err != nil {
//		return err
//	}
//	defer pool.Close()
//
//	conn, err := pool.Get(ctx)
//	if err != nil {
//		return err
//	}
//	defer conn.Close() // back to the pool
//
// Start with [New], the options it takes ([Option]: WithMaxConns,
// WithMinIdle and the others) and [Pool]; [Group] keeps a pool per
// address for clients that talk to many. The types named ...Event, and
// [CloseReason], [GetFailure], [MaxConnsReason] and [Served], are what
// [Hooks] and [Stats] report: a newcomer can leave them for later.
//
// # Concurrency
//
// A Pool is safe for concurrent use. A Conn is safe for concurrent use as
// a net.Conn is, until it is returned; after that it is dead to its
// holder, whose calls fail with [net.ErrClosed] without reaching the
// socket, which another borrower may hold by then.
//
// # Contexts and dialing
//
// Get waits until its context ends; it then returns an error that wraps
// the context's error and says what the pool was doing. The dial a Get
// starts is not cancelled with it: the dialer sees a context that keeps
// the Get's values, ends at the dial timeout ([WithDialTimeout]) and ends
// when the pool closes, and a conn that arrives after its caller left
// joins the pool. After a dial fails, the pool backs off
// ([WithDialBackoff]); meanwhile Gets that would need a dial fail at once
// with the last dial error.
//
// # Close
//
// [Pool.Close] closes idle conns, stops the background goroutine and
// dials, and fails waiting and later Gets with [ErrClosed]; borrowed conns
// are closed as they come back. [Pool.Shutdown] also waits for them.
//
// # Seeing and steering the pool
//
// [Pool.Stats] is a snapshot of the pool's gauges and counters. [WithHooks]
// sets functions the pool calls on every event of its life and its conns'
// (a Get, a dial, a return, a close and why), modelled on MongoDB's
// Connection Monitoring and Pooling events; see [Hooks]. [WithName] names
// the pool in both and in its log lines.
//
// [Pool.Stats] includes histograms of wait, dial and (with
// [WithUseTimeMetrics]) use time; the nested modules connpoolprom and
// connpoolotel export them to Prometheus and OpenTelemetry.
// [WithLeakDetection] reports conns held too long, with the borrower's
// stack, and reclaims conns dropped without Close; [Pool.Borrowed] lists
// the conns out now.
//
// [Pool.Reset] retires every conn opened before it, for a failover or
// rotated credentials; [Conn.Detach] takes one socket out of the pool for
// good; [Pool.WaitReady] waits for MinIdle conns, for a readiness probe;
// [WithMaxWaiters] bounds the Gets that may queue; [WithQueuePolicy]
// turns away under overload the Gets that would miss their deadline, and
// serves the newest first while the queue stands; [Pool.SetMaxConns],
// [Pool.SetMinIdle], [Pool.SetMaxIdle] and [Group.SetGroupMaxConns]
// resize at run time.
//
// # Clients that manage their own connections
//
// [Pool.DialContext] and [Pool.DialAddr] plug the pool into net/http,
// gRPC and database/sql drivers as a dialer. Those clients close conns at
// the end of a protocol session, so such conns are destroyed on Close,
// never reused; the pool gives them warm spare conns, one shared cap, and
// Stats.
//
// # Many backends behind one name
//
// A pool of a host name on TCP ("replicas.internal:6379") resolves the
// name itself and spreads its conns over every address it gets, each
// dial to the address with the fewest conns; it looks the name up again
// on an interval, drains the addresses that leave the records, moves a
// few conns per interval to the ones that join, and backs off each
// address on its own. See [WithResolver], [WithResolveInterval] and
// [WithRebalanceRate]; [Stats] has an entry per address. An IP literal is
// dialed as given.
package connpool
