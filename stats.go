package connpool

import (
	"fmt"
	"strings"
	"time"
)

// Stats is a snapshot of a pool's state and counters, from [Pool.Stats].
// Gauges are values now; counters only grow from the pool's creation.
// Every conn ever dialed is open or closed for exactly one reason:
//
//	Dials = OpenConns + IdleClosed + LifetimeClosed + HealthFailures +
//	        BrokenClosed + MaxIdleClosed + ReleasedClosed + PoolClosed +
//	        ResetClosed + DetachedClosed + LeakedClosed + ResizedClosed +
//	        AddressRemovedClosed + RebalancedClosed + EjectedClosed
//
// And every Get (Get, TryGet, DialContext, and a Group's through the
// pool) that has returned was a hit, a miss or one failure:
//
//	Gets = Hits + Misses + Timeouts + GetDialErrors + ClosedPoolGets +
//	       TooManyWaiters + NoIdleConn + InvalidGets + ShedDeadline +
//	       ShedOverload + ClientsOverCap
//
// [Stats.Failed] reads the failure counters by [GetFailure]. A Group's Get
// that fails before it reaches a pool (the group closed, an empty
// address) is counted in no pool's Stats.
type Stats struct {
	Name string // the pool's name (WithName)

	MaxConns  int // the cap on open conns now (WithMaxConns, SetMaxConns or WithAdaptiveMaxConns)
	MinIdle   int // the idle conns kept ready (WithMinIdle)
	MaxIdle   int // the cap on idle conns (WithMaxIdle)
	OpenConns int // conns open now: InUse + Idle + Closing
	InUse     int // conns borrowed now
	Idle      int // idle conns now, including those under a background check
	Closing   int // conns the pool is closing now
	Dialing   int // dials in flight now; not those waiting for a slot under a Group's cap (see Group.GroupStats)
	Waiting   int // Gets queued for a conn now
	// OldestWait is how long the Get that has waited longest has been
	// queued, 0 when none waits: the first sign of exhaustion.
	OldestWait time.Duration
	// AdaptiveMin and AdaptiveMax are the bounds of the adaptive cap
	// (WithAdaptiveMaxConns), 0 when it is off: MaxConns is then the cap
	// it chose. AdaptiveBaseline is the held time it measures against, 0
	// until it has one.
	AdaptiveMin, AdaptiveMax int
	AdaptiveBaseline         time.Duration

	Dials      int64 // conns dialed successfully
	DialErrors int64 // dials that failed, including those cut short by Close and those a Group's cap held until no Get needed them

	Hits         int64         // successful Gets served an existing conn, idle or handed off; a Get still checking its conn out may count a moment early, as Hits never goes back
	Misses       int64         // successful Gets served a freshly dialed conn
	WaitCount    int64         // Gets that queued because the cap or the dial limit was reached
	WaitDuration time.Duration // total time those Gets spent queued

	// The failed Gets, by reason ([GetFailure]), each counted once
	// whatever it did before failing (queued, dialed, had conns rejected).
	Timeouts       int64 // Gets whose context ended before a conn was ready (GetTimeout)
	TooManyWaiters int64 // Gets refused at once because MaxWaiters Gets were queued (GetTooManyWaiters)
	// GetDialErrors counts the Gets that failed with the error of the
	// dial made for them, or at once with the last one during the backoff
	// after failed dials (GetDialError): during an outage, the Gets that
	// DialErrors, which counts dials, does not show.
	GetDialErrors  int64
	ClosedPoolGets int64 // Gets refused because the pool was closed, ErrClosed (GetPoolClosed)
	NoIdleConn     int64 // TryGets that found no idle conn, ErrNoIdleConn (GetNoIdleConn)
	// InvalidGets counts the DialContext calls the pool never serves: for
	// another network or address (ErrWrongAddress), or on a pool with
	// WithAdaptiveMaxConns (ErrAdaptiveDialContext) (GetInvalid).
	InvalidGets int64
	// ShedDeadline and ShedOverload count the Gets the queue policy
	// turned away ([ErrShed], WithQueuePolicy): at once, their deadline
	// nearer than the wait (GetShedDeadline), and after waiting past
	// ShedAfter in an overloaded queue (GetShedOverload).
	ShedDeadline, ShedOverload int64
	// ClientsOverCap counts the DialContext calls that failed at once
	// with ErrClientPoolOverCap: clients with pools of their own held
	// every conn, and no wait could succeed before one closed a conn
	// (GetClientsOverCap). Size those clients' pools within the cap.
	ClientsOverCap int64

	IdleClosed     int64 // conns closed after sitting idle for IdleTimeout, evicted for a Group's cap, or used ones retired to make room for a DialContext caller's dial
	LifetimeClosed int64 // conns closed for reaching their max lifetime
	HealthFailures int64 // conns closed by the checkout peek or a background check
	BrokenClosed   int64 // conns closed on return after a failed Read or Write, MarkUnusable, or a close through Unwrap
	MaxIdleClosed  int64 // conns closed on return because MaxIdle conns were idle
	ReleasedClosed int64 // conns from DialContext closed by their client
	PoolClosed     int64 // conns closed by Close or Shutdown
	ResetClosed    int64 // conns closed because they were opened before a Reset
	DetachedClosed int64 // conns taken out of the pool by Conn.Detach
	LeakedClosed   int64 // conns reclaimed after their borrower dropped the Conn unclosed (WithLeakDetection)
	ResizedClosed  int64 // conns closed because the pool was over a cap lowered by SetMaxConns
	// AddressRemovedClosed counts conns closed because their address
	// left the set the pool's host name resolves to (WithResolver).
	AddressRemovedClosed int64
	// RebalancedClosed counts conns retired to move their share to an
	// address with fewer conns (WithRebalanceRate).
	RebalancedClosed int64
	// EjectedClosed counts conns closed because their address was
	// ejected as an outlier (WithOutlierEjection): idle at the ejection,
	// or on return.
	EjectedClosed int64

	// Resolves and ResolveErrors count the lookups of the pool's host
	// name that succeeded and failed (WithResolver); both stay 0 for an
	// address the pool dials as given.
	Resolves      int64
	ResolveErrors int64
	// Addresses describes each address dials go to, in the order the
	// pool first saw them, then those removed that still have conns open
	// (Draining). It is nil for a pool that dials its address as given
	// (an IP literal, a network other than TCP: the pool's own counts
	// say it all), and until a pool's first lookup answers.
	Addresses []AddressStats
	// Ejections counts the times an address was ejected for its failing
	// conns ([WithOutlierEjection]).
	Ejections int64

	Leaks int64 // conns reported as held past the leak threshold (WithLeakDetection)

	// Distributions, in the buckets of [Histogram]: how long Gets that
	// queued waited (as WaitDuration adds up), how long successful dials
	// took, and, with [WithUseTimeMetrics], how long conns were held from
	// Get to Put.
	WaitTime Histogram
	DialTime Histogram
	UseTime  Histogram
}

// AddressStats is the state of one address of a pool, in [Stats].
type AddressStats struct {
	Address    string // "ip:port" as dialed, or the pool's address as given
	Open       int    // conns to it open now: InUse + Idle + those being closed
	InUse      int    // of Open, borrowed now
	Idle       int    // of Open, idle now, including those under a background check
	Dialing    int    // dials to it in flight now
	Dials      int64  // successful dials to it
	DialErrors int64  // failed dials to it
	// BackingOff says that dials to it are paused after failures
	// (WithDialBackoff); the pool's other addresses are dialed meanwhile.
	BackingOff bool
	// Draining says that it left the resolved set: no Get is handed a
	// conn to it any more, and its conns close as they come back.
	Draining bool
	// Ejected says that its conns failed too often after their dial and
	// it is out of use for a while ([WithOutlierEjection]): no dial goes
	// to it and no Get is handed a conn to it.
	Ejected bool
	// Ejections counts the times it was ejected.
	Ejections int64
}

// Closed returns the Stats counter of conns closed for reason r, 0 for a
// reason it does not know.
func (s Stats) Closed(r CloseReason) int64 {
	switch r {
	case CloseIdle:
		return s.IdleClosed
	case CloseLifetime:
		return s.LifetimeClosed
	case CloseUnhealthy:
		return s.HealthFailures
	case CloseBroken:
		return s.BrokenClosed
	case CloseMaxIdle:
		return s.MaxIdleClosed
	case CloseReleased:
		return s.ReleasedClosed
	case ClosePool:
		return s.PoolClosed
	case CloseReset:
		return s.ResetClosed
	case CloseDetached:
		return s.DetachedClosed
	case CloseLeaked:
		return s.LeakedClosed
	case CloseResized:
		return s.ResizedClosed
	case CloseAddressRemoved:
		return s.AddressRemovedClosed
	case CloseRebalanced:
		return s.RebalancedClosed
	case CloseEjected:
		return s.EjectedClosed
	}
	return 0
}

// Failed returns the Stats counter of Gets that failed for reason f, 0
// for a reason it does not know.
func (s Stats) Failed(f GetFailure) int64 {
	switch f {
	case GetTimeout:
		return s.Timeouts
	case GetDialError:
		return s.GetDialErrors
	case GetPoolClosed:
		return s.ClosedPoolGets
	case GetTooManyWaiters:
		return s.TooManyWaiters
	case GetNoIdleConn:
		return s.NoIdleConn
	case GetInvalid:
		return s.InvalidGets
	case GetShedDeadline:
		return s.ShedDeadline
	case GetShedOverload:
		return s.ShedOverload
	case GetClientsOverCap:
		return s.ClientsOverCap
	}
	return 0
}

// Stats returns a snapshot of the pool's gauges and counters, consistent
// with each other. It is safe to call at any time, from a hook too.
func (p *Pool) Stats() Stats {
	// It takes mu and idleMu, so the counts agree with each other.
	p.mu.Lock()
	defer p.mu.Unlock()
	p.idleMu.Lock()
	defer p.idleMu.Unlock()
	c := &p.closes
	// Hits counts a conn as it is taken, and takes it back if the Get's
	// checkout then refuses it (closeRejected, handoffsLost): a snapshot
	// in between counts it early. hitsSeen keeps what an earlier snapshot
	// said, so that the counter never goes back (a Prometheus rate reads a
	// drop as a reset).
	p.hitsSeen = max(p.hitsSeen, p.idlePops-c[closeRejected]+p.handoffs-p.handoffsLost.Load())
	var baseline time.Duration
	if p.adaptive != nil {
		baseline = time.Duration(p.adaptive.baseline.Load())
	}
	return Stats{
		Name:      p.name,
		MaxConns:  p.cfg.maxConns,
		MinIdle:   p.cfg.minIdle,
		MaxIdle:   p.cfg.maxIdle,
		OpenConns: p.numOpen - p.numDialing,
		InUse:     p.inUseIdleLocked(),
		Idle:      p.idle.Len() + p.numChecking,
		Closing:   p.numClosing,
		Dialing:   p.numDialing - p.numGroupWaiting,
		Waiting:   p.waiters.Len(),

		Dials:      p.dials,
		DialErrors: p.dialErrors,

		Hits:           p.hitsSeen,
		Misses:         p.misses.Load(),
		WaitCount:      p.waitCount,
		WaitDuration:   time.Duration(p.waitTime.sum.Load()),
		Timeouts:       p.getFailures[GetTimeout].Load(),
		TooManyWaiters: p.getFailures[GetTooManyWaiters].Load(),
		GetDialErrors:  p.getFailures[GetDialError].Load(),
		ClosedPoolGets: p.getFailures[GetPoolClosed].Load(),
		NoIdleConn:     p.getFailures[GetNoIdleConn].Load(),
		InvalidGets:    p.getFailures[GetInvalid].Load(),
		ShedDeadline:   p.getFailures[GetShedDeadline].Load(),
		ShedOverload:   p.getFailures[GetShedOverload].Load(),
		ClientsOverCap: p.getFailures[GetClientsOverCap].Load(),

		IdleClosed:     c[CloseIdle],
		LifetimeClosed: c[CloseLifetime],
		HealthFailures: c[CloseUnhealthy] + c[closeRejected],
		BrokenClosed:   c[CloseBroken],
		MaxIdleClosed:  c[CloseMaxIdle],
		ReleasedClosed: c[CloseReleased],
		PoolClosed:     c[ClosePool],
		ResetClosed:    c[CloseReset],
		DetachedClosed: c[CloseDetached],
		LeakedClosed:   c[CloseLeaked],
		ResizedClosed:  c[CloseResized],
		Leaks:          p.leaks.Load(),

		AddressRemovedClosed: c[CloseAddressRemoved],
		RebalancedClosed:     c[CloseRebalanced],
		EjectedClosed:        c[CloseEjected],
		Resolves:             p.resolves,
		ResolveErrors:        p.resolveErrors,
		Addresses:            p.addressStatsIdleLocked(),
		Ejections:            p.addrs.TotalEjections(),

		OldestWait: p.oldestWaitLocked(),
		WaitTime:   p.waitTime.snapshot(),
		DialTime:   p.dialTime.snapshot(),
		UseTime:    p.useTime.snapshot(),

		AdaptiveMin:      p.cfg.adaptiveMin,
		AdaptiveMax:      p.cfg.adaptiveMax,
		AdaptiveBaseline: baseline,
	}
}

// addressStatsIdleLocked returns the stats of each address, the current
// set first, then the draining ones, or nil for a pool that does not
// resolve. mu and idleMu must be held. A pool of one address is counted
// from the pool's own counts; otherwise it walks the open conns.
func (p *Pool) addressStatsIdleLocked() []AddressStats {
	if p.host == "" { // before All, which allocates: Stats of a plain pool allocates nothing for it
		return nil
	}
	all := p.addrs.All()
	n := len(all)
	if n == 0 {
		return nil
	}
	now := p.now()
	out := make([]AddressStats, 0, n)
	for _, ep := range all {
		out = append(out, AddressStats{
			Address: ep.Addr, Open: ep.Open, Dialing: ep.Dialing - ep.GroupWaiting, Dials: ep.Dials, DialErrors: ep.DialErrors,
			BackingOff: ep.BackingOff(now), Draining: ep.Removed(), Ejected: ep.Ejected(), Ejections: ep.Ejections(),
		})
	}
	if n == 1 {
		out[0].InUse = p.inUseIdleLocked()
		out[0].Idle = p.idle.Len() + p.numChecking
		return out
	}
	at := make(map[*endpoint]int, n)
	for i, ep := range all {
		at[ep] = i
	}
	for pc := range p.all {
		i, ok := at[pc.ep]
		if !ok {
			continue
		}
		switch pc.holder {
		case heldIdle, heldChecking:
			out[i].Idle++
		case heldLent:
			out[i].InUse++
		}
	}
	return out
}

// String renders s on one line for a log: the name, the gauges, the
// counters that are not zero, and the histograms' quantiles.
func (s Stats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: open %d/%d (in use %d, idle %d), dialing %d, waiting %d",
		s.Name, s.OpenConns, s.MaxConns, s.InUse, s.Idle, s.Dialing, s.Waiting)
	if s.Waiting > 0 {
		fmt.Fprintf(&b, " (oldest %v)", s.OldestWait.Round(time.Microsecond))
	}
	fmt.Fprintf(&b, "; gets: hits %d, misses %d", s.Hits, s.Misses)
	for _, c := range []struct {
		name string
		n    int64
	}{
		{"waits", s.WaitCount}, {"timeouts", s.Timeouts}, {"too many waiters", s.TooManyWaiters},
		{"gets failed dialing", s.GetDialErrors}, {"gets after close", s.ClosedPoolGets},
		{"no idle conn", s.NoIdleConn}, {"invalid gets", s.InvalidGets},
		{"shed at once", s.ShedDeadline}, {"shed waiting", s.ShedOverload},
		{"clients over cap", s.ClientsOverCap},
		{"dials", s.Dials}, {"dial errors", s.DialErrors},
		{"closed idle", s.IdleClosed}, {"closed lifetime", s.LifetimeClosed},
		{"closed unhealthy", s.HealthFailures}, {"closed broken", s.BrokenClosed},
		{"closed max idle", s.MaxIdleClosed}, {"released", s.ReleasedClosed},
		{"closed by pool", s.PoolClosed}, {"closed by reset", s.ResetClosed},
		{"detached", s.DetachedClosed}, {"leaked", s.LeakedClosed},
		{"closed by resize", s.ResizedClosed}, {"closed address removed", s.AddressRemovedClosed},
		{"rebalanced", s.RebalancedClosed}, {"closed ejected", s.EjectedClosed}, {"resolve errors", s.ResolveErrors}, {"leaks reported", s.Leaks},
	} {
		if c.n != 0 {
			fmt.Fprintf(&b, ", %s %d", c.name, c.n)
		}
	}
	for _, h := range []struct {
		name string
		h    Histogram
	}{{"wait", s.WaitTime}, {"dial", s.DialTime}, {"use", s.UseTime}} {
		if h.h.Count() > 0 {
			fmt.Fprintf(&b, "; %s %v", h.name, h.h)
		}
	}
	return b.String()
}
