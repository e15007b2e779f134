package connpool

// The pool's events and the enums they carry: what [Hooks] receives, and
// what Stats and the exporters label their counters by. The pool emits
// them in emit.go.

import (
	"fmt"
	"time"
)

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
	// GetClientsOverCap: a DialContext failed at once, without waiting
	// out its context, because clients with pools of their own hold every
	// conn of the pool, or of its group's cap, and no wait could succeed
	// before one closes a conn ([ErrClientPoolOverCap]; see
	// [Pool.DialContext]). A DialContext whose context ended while they
	// did is a GetTimeout, its error wrapping ErrClientPoolOverCap too.
	GetClientsOverCap
)

var getFailureNames = [...]string{"", "timeout", "pool_closed", "dial_error", "too_many_waiters", "no_idle_conn", "invalid",
	"shed_deadline", "shed_overload", "clients_over_cap"}

// String returns the failure in snake case, as metrics labels want it:
// "timeout", "pool_closed", "dial_error", "too_many_waiters",
// "no_idle_conn", "invalid", "shed_deadline", "shed_overload",
// "clients_over_cap"; "" for the zero GetFailure.
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

// CloseReason says why the pool closed a conn. Each has a counter in
// [Stats] and is carried by the [ConnClosedEvent] of the conn.
type CloseReason uint8

const (
	// CloseIdle: idle for IdleTimeout, evicted to make room under a
	// Group's cap, or a used conn retired to make room for a
	// DialContext caller's dial.
	CloseIdle CloseReason = iota + 1
	// CloseLifetime: past its max lifetime.
	CloseLifetime
	// CloseUnhealthy: failed the checkout peek or a background check.
	CloseUnhealthy
	// CloseBroken: returned after a failed Read or Write, MarkUnusable,
	// a failure to clear its deadlines, or a close through Unwrap.
	CloseBroken
	// CloseMaxIdle: returned while MaxIdle conns were idle.
	CloseMaxIdle
	// CloseReleased: a conn from DialContext closed by its client.
	CloseReleased
	// ClosePool: closed by Close or Shutdown.
	ClosePool
	// CloseReset: opened before a [Pool.Reset].
	CloseReset
	// CloseDetached: taken out of the pool by [Conn.Detach]; the pool did
	// not close its socket.
	CloseDetached
	// CloseLeaked: its borrower dropped the Conn without returning it;
	// found by the garbage collector ([WithLeakDetection]).
	CloseLeaked
	// CloseResized: returned, or dialed with no waiter for it, while the
	// pool was over a cap lowered by [Pool.SetMaxConns], or idle when it
	// was lowered.
	CloseResized
	// CloseAddressRemoved: its address left the set the pool's host name
	// resolves to; idle, it is closed at the resolve that found it gone,
	// else when it comes back.
	CloseAddressRemoved
	// CloseRebalanced: retired, idle or on return, to move its share to
	// an address with fewer conns ([WithRebalanceRate]); the pool dials
	// its replacement.
	CloseRebalanced
	// CloseEjected: its address was ejected as an outlier
	// ([WithOutlierEjection]); idle, it is closed at the ejection, else
	// when it comes back.
	CloseEjected

	// closeRejected is CloseUnhealthy for an idle conn that a Get had
	// already popped: counted apart, so that Stats can tell the pops that
	// became hits. Users see CloseUnhealthy.
	closeRejected
	numCloseReasons

	// CloseDialFailed: the dial for it failed, so it never opened: the
	// dialer failed, [Pool.Close] cut it short, or it waited at a
	// [Group]'s cap until no Get needed it. Only its [ConnClosedEvent]
	// carries it (CMAP closes a conn that fails to establish); no Stats
	// close counter counts it, Stats.DialErrors does.
	CloseDialFailed = numCloseReasons
)

// keep is the zero CloseReason: the conn was not closed.
const keep CloseReason = 0

var closeReasonNames = [...]string{
	keep:                "kept",
	CloseIdle:           "idle",
	CloseLifetime:       "lifetime",
	CloseUnhealthy:      "unhealthy",
	CloseBroken:         "broken",
	CloseMaxIdle:        "max_idle",
	CloseReleased:       "released",
	ClosePool:           "pool_closed",
	CloseReset:          "reset",
	CloseDetached:       "detached",
	CloseLeaked:         "leaked",
	CloseResized:        "resized",
	CloseAddressRemoved: "address_removed",
	CloseRebalanced:     "rebalanced",
	CloseEjected:        "ejected",
	closeRejected:       "unhealthy",
	CloseDialFailed:     "dial_failed",
}

// String returns the reason in snake case, as metrics labels want it:
// "idle", "lifetime", "unhealthy", ...; the zero reason is "kept".
func (r CloseReason) String() string {
	if int(r) < len(closeReasonNames) {
		return closeReasonNames[r]
	}
	return fmt.Sprintf("CloseReason(%d)", r)
}

// public maps the internal reasons to the ones users see.
func (r CloseReason) public() CloseReason {
	if r == closeRejected {
		return CloseUnhealthy
	}
	return r
}

// MaxConnsReason says why a pool's cap on open conns changed.
type MaxConnsReason uint8

const (
	// MaxConnsSet: [Pool.SetMaxConns] was called.
	MaxConnsSet MaxConnsReason = iota + 1
	// MaxConnsDemand: the adaptive cap grew because Gets queued at it
	// while conns were held no longer than its baseline allows.
	MaxConnsDemand
	// MaxConnsLatency: the adaptive cap was cut because conns were held
	// longer than its baseline allows: the backend is queueing.
	MaxConnsLatency
	// MaxConnsBroken: the adaptive cap was cut because too many conns came
	// back broken (timeouts, failed I/O).
	MaxConnsBroken
	// MaxConnsProbe: the adaptive cap was lowered for one window to
	// re-measure its baseline, or restored after it.
	MaxConnsProbe
)

var maxConnsReasonNames = [...]string{"", "set", "demand", "latency", "broken", "probe"}

// String returns the reason in snake case, as metrics labels want it:
// "set", "demand", "latency", "broken", "probe"; "" for the zero reason.
func (r MaxConnsReason) String() string {
	if int(r) < len(maxConnsReasonNames) {
		return maxConnsReasonNames[r]
	}
	return fmt.Sprintf("MaxConnsReason(%d)", r)
}

// MaxConnsChangedEvent is a change of the pool's cap on open conns.
type MaxConnsChangedEvent struct {
	Pool     string
	Old, New int
	Reason   MaxConnsReason
}

// CloseReasons returns every reason the pool closes a conn for, in the
// order of their Stats counters: for exporters that label closes by
// reason.
func CloseReasons() []CloseReason {
	out := make([]CloseReason, 0, closeRejected-CloseIdle)
	for r := CloseIdle; r < closeRejected; r++ {
		out = append(out, r)
	}
	return out
}

// GetFailures returns every reason a Get fails for, in the order of their
// Stats counters: for exporters that label failed Gets by reason.
func GetFailures() []GetFailure {
	out := make([]GetFailure, 0, numGetFailures-1)
	for f := GetTimeout; f < numGetFailures; f++ {
		out = append(out, f)
	}
	return out
}

// numGetFailures is one more than the last GetFailure.
const numGetFailures = GetClientsOverCap + 1
