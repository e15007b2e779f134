package connpool

import (
	"errors"
	"fmt"
	"time"
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
// The events follow the monitoring events of MongoDB's Connection
// Monitoring and Pooling spec (CMAP), with connpool's own close reasons:
//
//	connpool         CMAP
//	PoolReady        PoolCreatedEvent, PoolReadyEvent
//	PoolReset        PoolClearedEvent
//	PoolClosed       PoolClosedEvent
//	DialStarted      ConnectionCreatedEvent
//	DialDone         ConnectionReadyEvent, or a failed one (CMAP has none)
//	GetStarted       ConnectionCheckOutStartedEvent
//	GetDone          ConnectionCheckedOutEvent, ConnectionCheckOutFailedEvent
//	Put              ConnectionCheckedInEvent
//	ConnClosed       ConnectionClosedEvent
//	HealthCheckDone  (none: CMAP pools do not check idle conns)
//	Resolved         (none: CMAP pools do not resolve names)
//	MaxConnsChanged  (none: CMAP pools do not resize)
//
// Guarantees: every Get (Get, TryGet, DialContext) emits exactly one
// GetStarted and then one GetDone; every dial exactly one DialStarted and
// one DialDone; every conn that was dialed exactly one ConnClosed, whose
// Reason is the Stats counter the close bumped. The Stats counters can be
// rebuilt from the events alone.
type Hooks struct {
	// PoolReady is called once, by New, when the pool is ready for use.
	PoolReady func(PoolEvent)
	// PoolReset is called by Reset, after the idle conns are closed.
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
	// Put is called when a conn comes back, by Put or Conn.Close,
	// whether the pool kept it or closed it.
	Put func(PutEvent)

	// ConnClosed is called once a conn is closed, or detached.
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
)

var getFailureNames = [...]string{"", "timeout", "pool_closed", "dial_error", "too_many_waiters", "no_idle_conn"}

// String returns the failure in snake case, as metrics labels want it:
// "timeout", "pool_closed", "dial_error", "too_many_waiters",
// "no_idle_conn"; "" for the zero GetFailure.
func (f GetFailure) String() string {
	if int(f) < len(getFailureNames) {
		return getFailureNames[f]
	}
	return fmt.Sprintf("GetFailure(%d)", f)
}

// GetDoneEvent is a Get that returned.
type GetDoneEvent struct {
	Pool    string
	ConnID  uint64 // 0 when the Get failed
	Address string // the address the conn goes to, as in DialStartedEvent; "" when the Get failed
	Served  Served // 0 when the Get failed
	// Queued says the Get waited at the cap or the dial limit, as
	// Stats.WaitCount counts; Waited is how long, as Stats.WaitDuration
	// adds up. A Get served without waiting reads no clock for it.
	Queued  bool
	Waited  time.Duration
	Failure GetFailure // 0 when the Get succeeded
	Err     error      // the error Get returned
}

// PutEvent is a conn coming back.
type PutEvent struct {
	Pool    string
	ConnID  uint64
	Address string // the address the conn goes to, as in DialStartedEvent
	// Held is how long the conn was borrowed, from the end of its Get.
	Held time.Duration
	// Closed is why the pool closed the conn instead of keeping it; 0
	// when it kept it, idle or handed to a waiter.
	Closed CloseReason
}

// ConnClosedEvent is a conn that the pool closed or that was detached.
type ConnClosedEvent struct {
	Pool    string
	ConnID  uint64
	Address string        // the address it went to, as in DialStartedEvent
	Age     time.Duration // since its dial ended
	Reason  CloseReason
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

func (p *Pool) emitConnClosed(pc *poolConn, reason CloseReason) {
	emit(p, p.hooks.ConnClosed, ConnClosedEvent{
		Pool: p.name, ConnID: pc.id, Address: pc.address(), Age: time.Duration(p.now() - pc.born), Reason: reason.public(),
	})
}

// getFailure classifies the error of a failed Get.
func getFailure(err error) GetFailure {
	var we *waitError
	switch {
	case errors.As(err, &we):
		return GetTimeout
	case errors.Is(err, ErrClosed):
		return GetPoolClosed
	case errors.Is(err, ErrTooManyWaiters):
		return GetTooManyWaiters
	case errors.Is(err, ErrNoIdleConn):
		return GetNoIdleConn
	}
	return GetDialError
}
