package connpool

// Hooks are functions the pool calls as things happen to it and its
// conns: to log, trace or count them ([WithHooks]). Every field is
// optional; a nil one costs nothing. A Hooks value is safe to share
// between pools, whose events carry the pool's name.
//
// The pool calls hooks after it has released its locks, on the goroutine
// that did the work: a hook may call the pool (Stats, even Get), but a
// slow hook slows that Get, Put or dial. A hook that panics is recovered,
// logged once per pool, and the pool stays consistent.
//
// # Order
//
// Each conn's events come in the order its life takes: DialStarted,
// DialDone, then (GetDone, Put) for each loan, then ConnClosed (after a
// GetDone without its Put for a conn detached or leaked). A conn's
// Put event is emitted before the conn can be handed to anyone else, so
// its next GetDone comes after it. A dial that fails has DialStarted,
// DialDone with its error, and a ConnClosed of reason [CloseDialFailed],
// before the Get it was for returns. A Reset's PoolReset event comes
// before every ConnClosed of reason [CloseReset]: one that another
// goroutine would emit first is held, and emitted by the Reset's
// goroutine right after its PoolReset; a conn whose DialStarted comes
// after a PoolReset is not retired by that Reset. In the same way an
// address's AddressEjected event comes before the ConnClosed events of
// reason [CloseEjected] of its conns. A Get's GetStarted and
// GetDone carry the same GetID, so that they pair up however many Gets
// run at once. Events of different conns, and of different Gets,
// interleave as the goroutines that emit them run; in particular a conn's
// slot is freed before its ConnClosed event, so the events of a conn
// dialed in its place may come first.
//
// # Guarantees
//
// Every Get (Get, TryGet, DialContext) emits exactly one GetStarted and
// then one GetDone; every dial exactly one DialStarted and one DialDone,
// and then exactly one ConnClosed: a dial that made a conn, when that conn
// closes, with the reason whose Stats counter the close bumped; a dial
// that failed, at once, with [CloseDialFailed], which no Stats close
// counter counts (Stats.DialErrors counts it), so that
// Stats.Dials = Stats.OpenConns + the sum of the close counters still
// holds. The Stats counters can be rebuilt from the events alone.
//
// # MongoDB's CMAP
//
// The events follow the monitoring events of MongoDB's Connection
// Monitoring and Pooling spec (CMAP), so that a consumer written for CMAP
// maps onto them one to one:
//
//	CMAP event                      connpool event
//	PoolCreatedEvent                PoolReady (New creates a pool ready)
//	  address, options                Pool (the name), Settings
//	PoolReadyEvent                  PoolReady, the same event
//	PoolClearedEvent                PoolReset
//	  address                         Pool
//	  serviceId                       (none: no load-balanced mode)
//	  interruptInUseConnections       (none: always false, see below)
//	PoolClosedEvent                 PoolClosed
//	ConnectionCreatedEvent          DialStarted
//	  address, connectionId           Address, ConnID
//	ConnectionReadyEvent            DialDone with a nil Err
//	  duration                        Duration (the dialer's alone)
//	ConnectionClosedEvent           ConnClosed
//	  address, connectionId           Address, ConnID
//	  reason                          Reason, by the list below
//	ConnectionCheckOutStartedEvent  GetStarted (GetID pairs it)
//	ConnectionCheckedOutEvent       GetDone with a conn
//	  address, connectionId           Address, ConnID
//	  duration                        Duration (from GetStarted, dial included)
//	ConnectionCheckOutFailedEvent   GetDone with an Err
//	  reason                          Failure: GetPoolClosed is "poolClosed",
//	                                  GetTimeout is "timeout", GetDialError is
//	                                  "connectionError"; GetTooManyWaiters,
//	                                  GetNoIdleConn, GetInvalid and the two
//	                                  GetShed reasons have no
//	                                  CMAP reason
//	  duration                        Duration
//	ConnectionCheckedInEvent        Put
//	  address, connectionId           Address, ConnID
//	(none)                          HealthCheckDone, LeakDetected, Resolved,
//	                                MaxConnsChanged, AddressEjected: CMAP
//	                                pools do not check idle conns, track
//	                                loans, resolve names, resize or eject
//
// CMAP's four close reasons cover connpool's fifteen:
//
//	connpool reason      CMAP reason  why
//	CloseReset           stale        opened before a Reset (CMAP's clear)
//	CloseIdle            idle         idle too long, or evicted for room
//	CloseMaxIdle         idle         returned while MaxIdle were idle
//	CloseLifetime        stale        past its max lifetime (CMAP: maxLifeTime)
//	CloseResized         stale        over a cap lowered by SetMaxConns
//	CloseAddressRemoved  stale        its address left the resolved set
//	CloseRebalanced      stale        moved to a less loaded address
//	CloseEjected         stale        its address ejected as an outlier
//	CloseUnhealthy       error        failed the checkout peek or a check
//	CloseBroken          error        its I/O failed, or MarkUnusable
//	CloseDialFailed      error        the dial failed (CMAP: failed to establish)
//	ClosePool            poolClosed   closed by Close or Shutdown
//	CloseReleased        (none)       a DialContext conn closed by its client;
//	                                  CMAP has no such loan: read it as "error"
//	                                  if a CMAP reason is needed
//	CloseDetached        (none)       taken out by Conn.Detach, still open;
//	                                  it leaves the pool as if closed
//	CloseLeaked          (none)       dropped by its borrower, never returned:
//	                                  it has no Put event before it
//
// Where connpool differs from CMAP, and why:
//   - No paused state, no ready operation: New returns a pool ready to
//     serve and PoolReady is its created and ready event in one. CMAP
//     pauses a pool whose server is unreachable so that checkouts fail
//     fast; connpool backs off dials instead (WithDialBackoff), so a Get
//     that needs a dial during the backoff fails at once while idle conns
//     keep serving, and a Reset never stops it serving.
//   - Reset keeps its waiters: CMAP's clear fails every queued checkout;
//     connpool's waiters keep waiting and are served by new dials, since a
//     Reset (a failover, new credentials) is not a reason for their Gets
//     to fail. Nor does Reset interrupt borrowed conns or dials in flight:
//     they close as they come back, so interruptInUseConnections is always
//     false.
//   - Reset, like any event, is emitted even when the pool has no conns;
//     CMAP emits no PoolClearedEvent for a paused pool.
//   - DialDone's Duration is the dialer's own time; CMAP's ready duration
//     is measured from the created event, which for a dial that waits for
//     a Group's cap includes that wait.
//   - An idle conn past IdleTimeout is closed by the pool's maintainer,
//     not found by the next checkout; either way it is closed (reason
//     CloseIdle) before a Get could take it.
//   - GetDone has failure reasons CMAP lacks (GetTooManyWaiters,
//     GetNoIdleConn for TryGet), and Put's Held and Closed and
//     ConnClosed's Age are extra fields.
type Hooks struct {
	// PoolReady is called once, by New, when the pool is ready for use;
	// its event carries the pool's settings.
	PoolReady func(PoolEvent)
	// PoolReset is called by Reset, before the conns it retires close.
	PoolReset func(PoolEvent)
	// PoolClosed is called by Close or Shutdown once the pool's
	// goroutines have ended.
	PoolClosed func(PoolEvent)

	// DialStarted is called as a dial begins, on the dial's goroutine.
	DialStarted func(DialStartedEvent)
	// DialDone is called when a dial returns, successful or not.
	DialDone func(DialDoneEvent)

	// GetStarted is called as a Get, TryGet or DialContext begins.
	GetStarted func(GetStartedEvent)
	// GetDone is called as it returns, with a conn or an error.
	GetDone func(GetDoneEvent)
	// Put is called when a conn comes back, by Put or Conn.Close, before
	// the pool keeps it (where another Get may take it) or closes it.
	Put func(PutEvent)

	// ConnClosed is called once a conn is closed, or detached, and once
	// for each dial that failed.
	ConnClosed func(ConnClosedEvent)
	// HealthCheckDone is called after each background check of an idle
	// conn ([WithHealthCheck]).
	HealthCheckDone func(HealthCheckEvent)
	// LeakDetected is called for each conn held past the leak threshold
	// ([WithLeakDetection]), once.
	LeakDetected func(LeakEvent)
	// Resolved is called after each lookup of the pool's host name
	// ([WithResolver]), once its answer is applied: the idle conns of
	// removed addresses are closed by then.
	Resolved func(ResolveEvent)
	// MaxConnsChanged is called when the cap on open conns changes: by
	// [Pool.SetMaxConns], or by the adaptive cap ([WithAdaptiveMaxConns]).
	MaxConnsChanged func(MaxConnsChangedEvent)
	// AddressEjected is called when an address of the pool's host name is
	// ejected for its failing conns, and when it is readmitted
	// ([WithOutlierEjection]).
	AddressEjected func(EjectionEvent)
}

// Chain returns hooks that call h's hook and then next's for each event.
// It is how hooks compose: a library that adds its own hooks to a user's
// chains them, and cannot drop them. [WithHooks] given several times
// chains in the order given.
func (h Hooks) Chain(next Hooks) Hooks {
	return Hooks{
		PoolReady:       chain(h.PoolReady, next.PoolReady),
		PoolReset:       chain(h.PoolReset, next.PoolReset),
		PoolClosed:      chain(h.PoolClosed, next.PoolClosed),
		DialStarted:     chain(h.DialStarted, next.DialStarted),
		DialDone:        chain(h.DialDone, next.DialDone),
		GetStarted:      chain(h.GetStarted, next.GetStarted),
		GetDone:         chain(h.GetDone, next.GetDone),
		Put:             chain(h.Put, next.Put),
		ConnClosed:      chain(h.ConnClosed, next.ConnClosed),
		HealthCheckDone: chain(h.HealthCheckDone, next.HealthCheckDone),
		LeakDetected:    chain(h.LeakDetected, next.LeakDetected),
		Resolved:        chain(h.Resolved, next.Resolved),
		MaxConnsChanged: chain(h.MaxConnsChanged, next.MaxConnsChanged),
		AddressEjected:  chain(h.AddressEjected, next.AddressEjected),
	}
}

func chain[E any](a, b func(E)) func(E) {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	return func(e E) {
		a(e)
		b(e)
	}
}

// WithHooks sets functions the pool calls on its events; see [Hooks].
// Given several times, the hooks are chained in order ([Hooks.Chain]).
// In a [NewGroup], every pool of the group calls them.
func WithHooks(h Hooks) Option {
	return poolOption(func(c *config) { c.hooks = c.hooks.Chain(h) })
}
