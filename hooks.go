package connpool

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/connpool/connpool/internal/clock"
)

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
// goroutine right after its PoolReset. A Get's GetStarted and
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
//	                                  GetNoIdleConn and GetInvalid have no
//	                                  CMAP reason
//	  duration                        Duration
//	ConnectionCheckedInEvent        Put
//	  address, connectionId           Address, ConnID
//	(none)                          HealthCheckDone, LeakDetected, Resolved,
//	                                MaxConnsChanged: CMAP pools do not
//	                                check idle conns, track loans, resolve
//	                                names or resize
//
// CMAP's four close reasons cover connpool's fourteen:
//
//	connpool reason      CMAP reason  why
//	CloseReset           stale        opened before a Reset (CMAP's clear)
//	CloseIdle            idle         idle too long, or evicted for room
//	CloseMaxIdle         idle         returned while MaxIdle were idle
//	CloseLifetime        stale        past its max lifetime (CMAP: maxLifeTime)
//	CloseResized         stale        over a cap lowered by SetMaxConns
//	CloseAddressRemoved  stale        its address left the resolved set
//	CloseRebalanced      stale        moved to a less loaded address
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

// PoolEvent is a change of the whole pool.
type PoolEvent struct {
	Pool string // the pool's name (WithName)
	// Settings are the pool's settings, in its PoolReady event; zero in
	// its PoolReset and PoolClosed events.
	Settings PoolSettings
}

// PoolSettings are the settings a pool was created with, defaults filled
// in: the options of CMAP's PoolCreatedEvent.
type PoolSettings struct {
	Network, Address string // as given to New
	MaxConns         int    // WithMaxConns; with WithAdaptiveMaxConns, the cap it starts from
	MinIdle          int    // WithMinIdle
	MaxIdle          int    // WithMaxIdle
	MaxConnecting    int    // WithMaxConnecting
	MaxWaiters       int    // WithMaxWaiters; 0 is no limit
	// IdleTimeout, MaxLifetime, DialTimeout and HealthCheckInterval are
	// as their options set them; 0 turns each off.
	IdleTimeout         time.Duration
	MaxLifetime         time.Duration
	DialTimeout         time.Duration
	HealthCheckInterval time.Duration
}

// DialStartedEvent is a dial beginning.
type DialStartedEvent struct {
	Pool    string
	ConnID  uint64 // the id the conn will have: unique within the pool, increasing in dial order
	Address string // the address dialed: "ip:port" of a resolved host name, else the pool's address
}

// DialDoneEvent is a dial that returned.
type DialDoneEvent struct {
	Pool     string
	ConnID   uint64
	Address  string        // as in DialStartedEvent
	Duration time.Duration // the dialer's, without a wait for a Group's cap
	Err      error         // nil when the dial made a conn
}

// GetStartedEvent is a Get beginning.
type GetStartedEvent struct {
	Pool string
	// GetID identifies the Get: its GetDoneEvent carries the same. Unique
	// within the pool, increasing in the order Gets start.
	GetID uint64
}

// Served says how a Get was served.
type Served uint8

const (
	// ServedIdle: an idle conn, ready when the Get came.
	ServedIdle Served = iota + 1
	// ServedHandoff: a conn returned while the Get waited, handed
	// straight to it.
	ServedHandoff
	// ServedDial: a freshly dialed conn.
	ServedDial
)

var servedNames = [...]string{"", "idle", "handoff", "dial"}

// String returns "idle", "handoff" or "dial", or "" for the zero Served.
func (s Served) String() string {
	if int(s) < len(servedNames) {
		return servedNames[s]
	}
	return fmt.Sprintf("Served(%d)", s)
}

// GetFailure says why a Get failed.
type GetFailure uint8

const (
	// GetTimeout: the Get's context ended first.
	GetTimeout GetFailure = iota + 1
	// GetPoolClosed: the pool was closed ([ErrClosed]).
	GetPoolClosed
	// GetDialError: the dial for it failed, or the pool was backing off
	// after failed dials.
	GetDialError
	// GetTooManyWaiters: MaxWaiters Gets were queued ([ErrTooManyWaiters]).
	GetTooManyWaiters
	// GetNoIdleConn: a TryGet found no idle conn ([ErrNoIdleConn]).
	GetNoIdleConn
	// GetInvalid: a DialContext the pool never serves, for another
	// address ([ErrWrongAddress]) or on an adaptive pool
	// ([ErrAdaptiveDialContext]): a mistake in the caller's wiring.
	GetInvalid
	// GetShedDeadline: the queue policy turned it away at once, as its
	// deadline was nearer than the wait ([ErrShed], WithQueuePolicy's
	// DeadlineAdmission).
	GetShedDeadline
	// GetShedOverload: the queue policy shed it after it waited past
	// ShedAfter while the queue was overloaded ([ErrShed],
	// WithQueuePolicy's AdaptiveLIFO).
	GetShedOverload
)

var getFailureNames = [...]string{"", "timeout", "pool_closed", "dial_error", "too_many_waiters", "no_idle_conn", "invalid",
	"shed_deadline", "shed_overload"}

// String returns the failure in snake case, as metrics labels want it:
// "timeout", "pool_closed", "dial_error", "too_many_waiters",
// "no_idle_conn", "invalid", "shed_deadline", "shed_overload"; "" for
// the zero GetFailure.
func (f GetFailure) String() string {
	if int(f) < len(getFailureNames) {
		return getFailureNames[f]
	}
	return fmt.Sprintf("GetFailure(%d)", f)
}

// GetDoneEvent is a Get that returned.
type GetDoneEvent struct {
	Pool    string
	GetID   uint64 // as in the Get's GetStartedEvent
	ConnID  uint64 // 0 when the Get failed
	Address string // the address the conn goes to, as in DialStartedEvent; "" when the Get failed
	Served  Served // 0 when the Get failed
	// Queued says the Get waited at the cap or the dial limit, as
	// Stats.WaitCount counts; Waited is how long, as Stats.WaitDuration
	// adds up. A Get served without waiting reads no clock for it.
	Queued bool
	Waited time.Duration
	// Duration is how long the Get took, from its GetStarted event to
	// this one, a dial for it included: CMAP's checkout duration. A pool
	// without a GetDone hook reads no clock for it.
	Duration time.Duration
	Failure  GetFailure // 0 when the Get succeeded
	Err      error      // the error Get returned
}

// PutEvent is a conn coming back.
type PutEvent struct {
	Pool    string
	ConnID  uint64
	Address string // the address the conn goes to, as in DialStartedEvent
	// Held is how long the conn was borrowed, from the end of its Get.
	Held time.Duration
	// Closed is why the conn cannot be kept because of how it came back:
	// CloseBroken, or CloseReleased for a DialContext conn; 0 for a
	// clean conn. The event comes before the pool places the conn, so a
	// clean conn that the pool then closes (after a Reset, beyond
	// MaxIdle, past its lifetime, the pool closed) has 0 here, and its
	// ConnClosedEvent, which follows, says why.
	Closed CloseReason
}

// ConnClosedEvent is a conn that the pool closed or that was detached.
type ConnClosedEvent struct {
	Pool    string
	ConnID  uint64
	Address string        // the address it went to, as in DialStartedEvent
	Age     time.Duration // since its dial ended; 0 for a failed dial
	Reason  CloseReason   // CloseDialFailed for a dial that failed
}

// ResolveEvent is a lookup of the pool's host name ([WithResolver]).
type ResolveEvent struct {
	Pool string
	// Addresses is the set dials go to now, "ip:port" each: after a
	// failed lookup, the last good set (or the pool's address as given,
	// before any lookup succeeded).
	Addresses []string
	Added     []string // addresses new in the set
	Removed   []string // addresses that left it, now draining
	Err       error    // the lookup's error, or nil
}

// HealthCheckEvent is a background check of an idle conn.
type HealthCheckEvent struct {
	Pool     string
	ConnID   uint64
	Duration time.Duration
	Err      error // nil when the conn passed; it is then kept
}

// LeakEvent is a conn held past the leak threshold.
type LeakEvent struct {
	Pool   string
	ConnID uint64
	Held   time.Duration
	Stack  string // the borrower's call site, "function\n\tfile:line" per frame
}

// WithHooks sets functions the pool calls on its events; see [Hooks].
// Given several times, the hooks are chained in order ([Hooks.Chain]).
// In a [NewGroup], every pool of the group calls them.
func WithHooks(h Hooks) Option {
	return poolOption(func(c *config) { c.hooks = c.hooks.Chain(h) })
}

// emit calls hook f with e, recovering a panic: a broken hook must not
// break the pool, whose locks are all released when hooks run. The first
// panic is logged.
func emit[E any](p *Pool, f func(E), e E) {
	defer func() {
		if r := recover(); r != nil && p.hookPanicked.CompareAndSwap(false, true) {
			p.log.Error("connpool: a hook panicked; later panics are not logged",
				"event", fmt.Sprintf("%T", e), "panic", r)
		}
	}()
	f(e)
}

func (p *Pool) emitPool(f func(PoolEvent)) {
	if f != nil {
		emit(p, f, PoolEvent{Pool: p.name})
	}
}

// emitReady emits the PoolReady event, with the pool's settings.
func (p *Pool) emitReady() {
	if p.hooks.PoolReady == nil {
		return
	}
	c := &p.cfg
	emit(p, p.hooks.PoolReady, PoolEvent{Pool: p.name, Settings: PoolSettings{
		Network: p.network, Address: p.address,
		MaxConns: c.maxConns, MinIdle: c.minIdle, MaxIdle: c.maxIdle, MaxConnecting: c.maxConnecting,
		MaxWaiters: c.maxWaiters, IdleTimeout: c.idleTimeout, MaxLifetime: c.maxLifetime,
		DialTimeout: c.dialTimeout, HealthCheckInterval: c.checkInterval,
	}})
}

// eventOrder keeps the events whose order spans goroutines in step:
// the GetIDs, and the PoolReset event before the ConnClosed events of
// the conns its Reset retires. A Reset moves the generation under mu and
// emits its event after; meanwhile another goroutine may already close a
// conn the Reset retired (a Put, a dial's end, a waiter's accept). Such a
// ConnClosed event is held here, not emitted, until the Reset has emitted
// its own, and then emitted by the Reset's goroutine; nobody waits, so a
// hook that calls Put or Reset from any hook cannot deadlock.
type eventOrder struct {
	getIDs atomic.Uint64 // the GetID of the last Get started, when a Get hook is set

	mu        sync.Mutex        // guards the fields below; held for a few steps, never across a hook
	resetGen  uint64            // the highest generation whose Reset has emitted its PoolReset event
	heldClose []ConnClosedEvent // ConnClosed events of CloseReset waiting for their PoolReset
}

// emitReset emits the PoolReset event of the Reset that moved the
// generation to gen, then the ConnClosed events held for it.
func (p *Pool) emitReset(gen uint64) {
	if p.hooks.PoolReset == nil {
		return
	}
	emit(p, p.hooks.PoolReset, PoolEvent{Pool: p.name})
	if p.hooks.ConnClosed == nil {
		return
	}
	o := &p.events
	o.mu.Lock()
	o.resetGen = max(o.resetGen, gen)
	held := o.heldClose
	o.heldClose = nil
	o.mu.Unlock()
	for _, ev := range held {
		emit(p, p.hooks.ConnClosed, ev)
	}
}

func (p *Pool) emitConnClosed(pc *poolConn, reason CloseReason) {
	ev := ConnClosedEvent{
		Pool: p.name, ConnID: pc.id, Address: pc.address(), Age: time.Duration(p.now() - pc.born), Reason: reason.public(),
	}
	if reason == CloseReset && p.hooks.PoolReset != nil {
		// pc was retired by the Reset that moved the generation past
		// pc.gen: hold the event until that Reset's has been emitted.
		o := &p.events
		o.mu.Lock()
		if o.resetGen <= pc.gen {
			o.heldClose = append(o.heldClose, ev)
			o.mu.Unlock()
			return
		}
		o.mu.Unlock()
	}
	emit(p, p.hooks.ConnClosed, ev)
}

// emitDialFailed emits the ConnClosed event of a dial that failed.
func (p *Pool) emitDialFailed(d *dialOp) {
	if p.hooks.ConnClosed != nil {
		emit(p, p.hooks.ConnClosed, ConnClosedEvent{Pool: p.name, ConnID: d.id, Address: d.addr(p), Reason: CloseDialFailed})
	}
}

// getStarted starts an observed Get: it emits its GetStarted event and
// returns the Get's id and its start on the clock.ticks scale, both 0
// when no hook wants them, so that an observed pool without Get hooks
// reads no clock for them.
func (p *Pool) getStarted() (id uint64, start int64) {
	if p.hooks.GetStarted == nil && p.hooks.GetDone == nil {
		return 0, 0
	}
	id = p.events.getIDs.Add(1)
	if p.hooks.GetDone != nil {
		start = clock.Ticks()
	}
	if p.hooks.GetStarted != nil {
		emit(p, p.hooks.GetStarted, GetStartedEvent{Pool: p.name, GetID: id})
	}
	return id, start
}

// getFailure classifies the error of a failed Get, for its GetDone event
// and its Stats counter (getFailed). The bare sentinels come first, the
// cheap checks for a TryGet that polls. A dial error comes before the
// wrapped ones: it wraps whatever the dialer returned, which may be
// another pool's ErrClosed or timeout when the dialer is a pool's
// DialContext, and is a dial error all the same.
func getFailure(err error) GetFailure {
	switch err {
	case ErrNoIdleConn:
		return GetNoIdleConn
	case ErrClosed:
		return GetPoolClosed
	}
	var de *dialError
	var we *waitError
	var se *shedError
	switch {
	case errors.As(err, &de):
		return GetDialError
	case errors.As(err, &we):
		return GetTimeout
	case errors.As(err, &se):
		return se.reason
	case errors.Is(err, ErrTooManyWaiters):
		return GetTooManyWaiters
	case errors.Is(err, ErrWrongAddress), errors.Is(err, ErrAdaptiveDialContext):
		return GetInvalid
	case errors.Is(err, ErrClosed):
		return GetPoolClosed
	}
	return GetDialError
}
