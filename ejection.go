package connpool

import (
	"math"
	"slices"
	"time"

	"github.com/connpool/connpool/internal/addrset"
)

// Outlier ejection (the policy is internal/addrset's outlier.go). The
// signal is one call: closeConn tells the address set how each conn
// ended (endpointClosedLocked, addrs.go); a conn the pool itself flagged
// or took to close (pc.why set) is not a signal. When the set ejects an
// address, the pool drains it as a resolve drains a removed one
// (drainLocked, reason CloseEjected), so no Get is handed an idle conn
// of it; a conn of it handed off or dialed meanwhile is refused by
// Endpoint.Status; the set's pick sends no dial to it. The maintainer
// readmits it when its time is over (steer calls readmit).

// OutlierEjection configures [WithOutlierEjection]. A zero field takes
// its default; a negative Consecutive or FailureRate turns that test off.
type OutlierEjection struct {
	// Consecutive ejects an address after this many of its conns failed
	// in a row after their dial: returned broken or marked unusable,
	// failed a background check, or failed the peek at checkout. A conn
	// that ends otherwise (idle, lifetime, ...) ends the streak. The
	// default is 5.
	Consecutive int
	// FailureRate ejects an address when more than this share of its
	// conns that ended within Window failed, once at least MinVolume
	// ended. The default is 0.5.
	FailureRate float64
	// MinVolume is how many conn ends a window needs before FailureRate
	// is judged. The default is 10.
	MinVolume int
	// Window is the span FailureRate is measured over. The default is
	// 10s.
	Window time.Duration
	// BaseEjectionTime is how long an address is ejected the first
	// time; each ejection that follows within MaxEjectionTime of its
	// readmission doubles it, up to MaxEjectionTime. The default is 30s.
	BaseEjectionTime time.Duration
	// MaxEjectionTime caps the ejection time. The default is 5m.
	MaxEjectionTime time.Duration
	// MaxEjectionPercent is the most of the pool's addresses ejected at
	// once, in percent, rounded down, and never all of them: of three at
	// 50%, one. The default is 50.
	MaxEjectionPercent int
}

// Defaults of [OutlierEjection], each documented on its field.
const (
	defaultEjectConsecutive = 5
	defaultEjectRate        = 0.5
	defaultEjectMinVolume   = 10
	defaultEjectWindow      = 10 * time.Second
	defaultEjectBase        = 30 * time.Second
	defaultEjectMax         = 5 * time.Minute
	defaultEjectPercent     = 50
)

// ejectionConfig is WithOutlierEjection's setting; the zero value is off.
type ejectionConfig struct {
	set bool
	e   OutlierEjection
}

func (c ejectionConfig) on() bool { return c.set }

// WithOutlierEjection takes out of use, for a while, an address of a
// pool's host name ([WithResolver]) whose conns keep failing after they
// were dialed, as Envoy's outlier detection does: while it is ejected, no
// dial goes to it and no Get is handed a conn to it (its idle conns are
// closed as CloseEjected), and the pool's other addresses serve. It is
// off unless given: the pool cannot tell a server's fault from a
// caller's (a deadline too short, MarkUnusable on an application error),
// and moving load off a server is a choice the user makes. Given with a
// zero OutlierEjection, it takes every default. A pool of one address
// never ejects it, and a resolve that leaves more addresses ejected than
// MaxEjectionPercent allows (only ejected ones, say) readmits at once
// those whose ejection ends first. While every address not ejected fails
// its dials, the pool backs off as [WithDialBackoff] says.
// Stats.Addresses shows each address's Ejected and Ejections,
// Stats.Ejections the total, and [Hooks].AddressEjected each ejection and
// readmission.
func WithOutlierEjection(o OutlierEjection) Option {
	return poolOption(func(c *config) {
		switch {
		case o.Window < 0 || o.BaseEjectionTime < 0 || o.MaxEjectionTime < 0 || o.MinVolume < 0:
			c.invalid("WithOutlierEjection(%+v): durations and MinVolume must not be negative", o)
			return
		case o.FailureRate > 1 || math.IsNaN(o.FailureRate):
			c.invalid("WithOutlierEjection(%+v): FailureRate must be at most 1 (0.5 is half of the conns)", o)
			return
		case o.MaxEjectionPercent < 0 || o.MaxEjectionPercent > 100:
			c.invalid("WithOutlierEjection(%+v): MaxEjectionPercent must be within 0 and 100", o)
			return
		}
		def := func(v *int, d int) {
			if *v == 0 {
				*v = d
			}
		}
		defDur := func(v *time.Duration, d time.Duration) {
			if *v == 0 {
				*v = d
			}
		}
		def(&o.Consecutive, defaultEjectConsecutive)
		def(&o.MinVolume, defaultEjectMinVolume)
		def(&o.MaxEjectionPercent, defaultEjectPercent)
		defDur(&o.Window, defaultEjectWindow)
		defDur(&o.BaseEjectionTime, defaultEjectBase)
		defDur(&o.MaxEjectionTime, max(defaultEjectMax, o.BaseEjectionTime))
		if o.FailureRate == 0 {
			o.FailureRate = defaultEjectRate
		}
		c.ejection = ejectionConfig{set: true, e: o}
	})
}

// policy is the set's form of the setting.
func (c ejectionConfig) policy() addrset.Ejection {
	e := c.e
	return addrset.Ejection{
		Consecutive: e.Consecutive, Rate: e.FailureRate, MinVolume: e.MinVolume, Window: int64(e.Window),
		Base: int64(e.BaseEjectionTime), Max: int64(e.MaxEjectionTime), MaxPercent: e.MaxEjectionPercent,
	}
}

// EjectionEvent is an address of the pool ejected for its failing conns,
// or readmitted ([WithOutlierEjection]).
type EjectionEvent struct {
	Pool    string
	Address string // "ip:port"
	// Ejected is true when the address was ejected, false when it was
	// readmitted.
	Ejected bool
	// Duration is how long it is ejected for; 0 on readmission.
	Duration time.Duration
	// Ejections counts the address's ejections so far.
	Ejections int64
}

// readmit emits the events of the addresses ejected since its last run,
// readmits those whose time is over, schedules a rebalance round to give
// them their share, emits their events, and returns when the next
// ejection ends. Only the maintainer calls it, then Close once the
// maintainer has ended, so an address's ejection is reported before its
// readmission. It takes mu.
func (p *Pool) readmit(now int64) (next int64) {
	if !p.cfg.ejection.on() {
		return math.MaxInt64
	}
	p.mu.Lock()
	ejected, back, next := p.addrs.Readmit(now)
	if len(back) > 0 {
		p.refreshBackoffLocked() // an address back in use may be one not failing
	}
	if len(back) > 0 && p.cfg.rebalanceRate > 0 && p.nextRebalance == 0 && !p.closed.Load() {
		p.nextRebalance = max(now, p.lastRebalance+int64(p.cfg.resolveInterval))
	}
	evs := make([]EjectionEvent, 0, len(ejected)+len(back))
	eps := slices.Concat(ejected, back) // evs[i] is of eps[i]
	for _, ep := range ejected {
		evs = append(evs, EjectionEvent{Pool: p.name, Address: ep.Addr, Ejected: true,
			Duration: time.Duration(ep.EjectionTime()), Ejections: ep.Ejections()})
	}
	for _, ep := range back {
		evs = append(evs, EjectionEvent{Pool: p.name, Address: ep.Addr, Ejections: ep.Ejections()})
	}
	p.mu.Unlock()
	for i, ev := range evs {
		if ev.Ejected {
			p.log.Warn("connpool: address ejected: its conns keep failing after the dial",
				"address", ev.Address, "for", ev.Duration, "ejections", ev.Ejections)
		} else {
			p.log.Info("connpool: address readmitted after its ejection", "address", ev.Address, "ejections", ev.Ejections)
		}
		if p.hooks.AddressEjected != nil {
			emit(p, p.hooks.AddressEjected, ev)
			if ev.Ejected {
				p.ejectionReported(eps[i], ev.Ejections)
			}
		}
	}
	if next == 0 {
		return math.MaxInt64
	}
	return next
}
