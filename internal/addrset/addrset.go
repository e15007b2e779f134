// Package addrset is the set of addresses behind connpool's resolving
// pools: one Endpoint per address, the pick of the address a new dial goes
// to, each address's dial backoff, the diff of two resolutions, the plan
// of a rebalance round, and outlier ejection (outlier.go). It reads no
// clock, starts no goroutine and knows no pool type: the caller passes the
// time and the outcome of each dial and conn, under a lock of its own, so
// the tests drive it through simulated hours in milliseconds.
//
// Every method of Set and every field of Endpoint but the two flags is
// guarded by the caller's lock. The flags (removed, ejected) are atomics,
// so that a conn's fate can be read without that lock (Endpoint.Status).
package addrset

import (
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync/atomic"
)

// Status says whether conns to an address may still be used.
type Status uint8

const (
	// Usable: the address is in the set and not ejected.
	Usable Status = iota
	// Removed: the address left the resolved set; its conns drain.
	Removed
	// Ejected: the address's conns failed too often after their dial
	// (outlier.go); until it is readmitted, it is not dialed and its
	// conns are not lent.
	Ejected
)

// Endpoint is one address a pool dials: a resolved IP with the pool's
// port, or the pool's address as given.
type Endpoint struct {
	Addr string         // host:port, as the dialer gets it
	IP   netip.Addr     // zero for the pool's address as given
	AP   netip.AddrPort // IP and the port, when the port is a number: the conns' RemoteAddr

	// Read without the caller's lock; written under it.
	removed atomic.Bool
	ejected atomic.Bool

	// Guarded by the caller's lock.
	Open    int // conns to it that are open: dialed and not yet closed
	Dialing int // dials to it in flight
	// GroupWaiting counts the dials of Dialing that wait for a slot under
	// a group's cap: not in flight yet.
	GroupWaiting int
	// Leaving counts the open conns that a drain, a rebalance or an
	// ejection flagged or took to be closed: they are not its future.
	Leaving           int
	Dials, DialErrors int64
	failStreak        int   // consecutive failed dials
	backoffUntil      int64 // meaningful while failStreak > 0

	out outlier // ejection state (outlier.go)

	// EjectionsReported is how many of its ejections the caller has
	// reported (Ejections counts them as they happen), for the caller to
	// keep what follows an ejection behind its report. Guarded by the
	// caller's lock for its reports, not by its lock for the set.
	EjectionsReported int64
}

// Status answers the one question a conn's fate asks of its address: may
// conns to it still be used? It is safe without the caller's lock.
func (ep *Endpoint) Status() Status {
	switch {
	case ep.removed.Load():
		return Removed
	case ep.ejected.Load():
		return Ejected
	}
	return Usable
}

// Removed reports whether the address left the resolved set.
func (ep *Endpoint) Removed() bool { return ep.removed.Load() }

// Ejected reports whether the address is ejected now.
func (ep *Endpoint) Ejected() bool { return ep.ejected.Load() }

// Load is the conns the address will hold once those leaving have closed,
// counting dials in flight: what the pick balances.
func (ep *Endpoint) Load() int { return ep.Open + ep.Dialing - ep.Leaving }

// BackingOff reports whether dials to ep are paused after failures.
func (ep *Endpoint) BackingOff(now int64) bool {
	return ep.failStreak > 0 && now < ep.backoffUntil
}

// Ejections is how many times the address was ejected.
func (ep *Endpoint) Ejections() int64 { return ep.out.count }

// RemoteAddr is the address conns to ep go to, or nil for the pool's
// address as given: the dialer's conn knows it then.
func (ep *Endpoint) RemoteAddr() net.Addr {
	if !ep.AP.IsValid() {
		return nil
	}
	return net.TCPAddrFromAddrPort(ep.AP)
}

// dialable reports whether a dial may go to ep now: not backing off, not
// ejected.
func (ep *Endpoint) dialable(now int64) bool { return !ep.BackingOff(now) && !ep.ejected.Load() }

// Set is the addresses a pool dials: the current set, in the order first
// seen, and the draining ones, removed from it with conns still open or
// dialing.
type Set struct {
	given    string // the pool's address as given
	port     string // the port resolved addresses get
	eps      []*Endpoint
	draining []*Endpoint
	ej       Ejection    // zero: ejection off
	ejected  int64       // ejections, all addresses
	news     []*Endpoint // ejected since the last Readmit, in order
	early    []*Endpoint // readmitted before their time since the last Readmit (readmitExcess)
}

// New returns an empty set for a pool of address given, whose resolved
// addresses get port. Until Resolved or Given is called, Pick returns nil.
func New(given, port string) *Set { return &Set{given: given, port: port} }

// Given makes the set the pool's address as given, alone: for a pool
// that does not resolve, or whose first resolve failed.
func (s *Set) Given() { s.eps = []*Endpoint{{Addr: s.given}} }

// Len is the size of the current set; 0 before the first answer.
func (s *Set) Len() int { return len(s.eps) }

// Current returns the current set, in its order. The caller must not
// keep or change the slice.
func (s *Set) Current() []*Endpoint { return s.eps }

// All returns the current set, then the draining addresses.
func (s *Set) All() []*Endpoint { return slices.Concat(s.eps, s.draining) }

// TotalEjections is how many times any address was ejected.
func (s *Set) TotalEjections() int64 { return s.ejected }

func (s *Set) newEndpoint(ip netip.Addr) *Endpoint {
	ep := &Endpoint{Addr: net.JoinHostPort(ip.String(), s.port), IP: ip}
	if n, err := strconv.ParseUint(s.port, 10, 16); err == nil {
		ep.AP = netip.AddrPortFrom(ip, uint16(n))
	}
	return ep
}

// Resolved makes addrs the set, at now: the diff of two resolutions. The
// addresses kept stay in their order, the new ones follow in theirs (an
// address still draining comes back with its counts), and the ones gone
// are marked removed and kept as draining while conns to them are open or
// dialing. A smaller set may allow fewer ejected addresses than it keeps:
// those whose ejection ends first are readmitted at once (readmitExcess).
// It returns the addresses added and the endpoints removed.
func (s *Set) Resolved(addrs []netip.Addr, now int64) (added []string, removed []*Endpoint) {
	next := make([]*Endpoint, 0, len(addrs))
	for _, ep := range s.eps {
		if ep.IP.IsValid() && slices.Contains(addrs, ep.IP) {
			next = append(next, ep)
		} else {
			removed = append(removed, ep)
		}
	}
	for _, ip := range addrs {
		if slices.ContainsFunc(next, func(ep *Endpoint) bool { return ep.IP == ip }) {
			continue
		}
		var ep *Endpoint
		if i := slices.IndexFunc(s.draining, func(ep *Endpoint) bool { return ep.IP == ip }); i >= 0 {
			ep = s.draining[i]
			s.draining = slices.Delete(s.draining, i, i+1)
			ep.removed.Store(false)
		} else {
			ep = s.newEndpoint(ip)
		}
		next = append(next, ep)
		added = append(added, ep.Addr)
	}
	for _, ep := range removed {
		ep.removed.Store(true)
		if ep.Open+ep.Dialing > 0 {
			s.draining = append(s.draining, ep)
		}
	}
	s.eps = next
	s.readmitExcess(now)
	return added, removed
}

// Pick chooses the address of a new dial and counts the dial on it: of
// the addresses neither backing off nor ejected, the one with the fewest
// conns open or dialing (the first in the set on a tie); when every one
// backs off, the one not ejected whose backoff ends first, as the probe;
// when every one is ejected (which readmitExcess keeps from lasting), the
// one whose ejection ends first. It
// returns nil, counting nothing, before the set has any address.
func (s *Set) Pick(now int64) *Endpoint {
	var best *Endpoint
	switch len(s.eps) {
	case 0:
		return nil
	case 1:
		best = s.eps[0]
	default:
		var probe, last *Endpoint
		for _, ep := range s.eps {
			switch {
			case ep.ejected.Load():
				if last == nil || ep.out.until < last.out.until {
					last = ep
				}
			case ep.BackingOff(now):
				if probe == nil || ep.backoffUntil < probe.backoffUntil {
					probe = ep
				}
			case best == nil || ep.Load() < best.Load():
				best = ep
			}
		}
		best = cmpOr(best, probe, last)
	}
	best.Dialing++
	return best
}

func cmpOr(eps ...*Endpoint) *Endpoint {
	for _, ep := range eps {
		if ep != nil {
			return ep
		}
	}
	return nil
}

// DialEnded ends a dial's count on ep; ok says it made a conn, now open.
func (s *Set) DialEnded(ep *Endpoint, ok bool) {
	ep.Dialing--
	if ok {
		ep.Open++
		ep.Dials++
	} else {
		ep.DialErrors++
	}
	s.forgetDrained(ep)
}

// DialSucceeded ends ep's streak of failed dials, if any, and returns how
// long it was.
func (s *Set) DialSucceeded(ep *Endpoint) (streak int) {
	streak, ep.failStreak = ep.failStreak, 0
	return streak
}

// DialFailed extends ep's streak of failed dials and backs it off until
// now+pause(streak); it returns the streak and the pause.
func (s *Set) DialFailed(ep *Endpoint, now int64, pause func(streak int) int64) (streak int, d int64) {
	ep.failStreak++
	d = pause(ep.failStreak)
	ep.backoffUntil = now + d
	return ep.failStreak, d
}

// BackoffUntil is when the first of the addresses not ejected may be
// dialed again, or 0 when one of them is not failing: the pool's own
// backoff, during which a Get that needs a dial fails fast. An ejected
// address is not dialed, so its clean streak does not end the backoff.
func (s *Set) BackoffUntil() int64 {
	until := int64(0)
	for _, ep := range s.eps {
		switch {
		case ep.ejected.Load():
		case ep.failStreak == 0:
			return 0
		case until == 0 || ep.backoffUntil < until:
			until = ep.backoffUntil
		}
	}
	return until
}

// OthersDialable reports whether an address of the set other than ep may
// be dialed now: a failed dial to ep can then be retried there.
func (s *Set) OthersDialable(ep *Endpoint, now int64) bool {
	for _, o := range s.eps {
		if o != ep && o.dialable(now) {
			return true
		}
	}
	return false
}

// Closed takes a closed conn to ep off its counts and reports whether its
// end ejected ep (ConnEnded). leaving says the conn was counted in
// ep.Leaving: the caller retired it, so its end says nothing of the
// address and is not counted toward ejection; otherwise failed says
// whether it failed after its dial, at now.
func (s *Set) Closed(ep *Endpoint, leaving, failed bool, now int64) (ejected bool) {
	ep.Open--
	if leaving {
		ep.Leaving--
	}
	s.forgetDrained(ep)
	return !leaving && s.ConnEnded(ep, failed, now)
}

// forgetDrained drops a removed address from the draining list once
// nothing of it is open or dialing.
func (s *Set) forgetDrained(ep *Endpoint) {
	if ep.removed.Load() && ep.Open+ep.Dialing == 0 {
		s.draining = slices.DeleteFunc(s.draining, func(e *Endpoint) bool { return e == ep })
	}
}

// Plan is one rebalance round: while the fullest address holds more than
// one conn beyond the emptiest healthy one (not failing its dials, not
// ejected), it names the fullest, to retire a conn of, counting its
// replacement on the emptiest.
type Plan struct {
	eps         []*Endpoint
	load        map[*Endpoint]int
	full, empty *Endpoint
}

// Rebalance starts a round's plan. moving is the conns an earlier round
// retired that have not closed yet: each is to be replaced by a dial to
// the emptiest address, so they count as made, or a round that comes
// before their borrowers return them would retire more than the
// imbalance asks.
func (s *Set) Rebalance(moving int) *Plan {
	pl := &Plan{eps: s.eps, load: make(map[*Endpoint]int, len(s.eps))}
	for _, ep := range s.eps {
		pl.load[ep] = ep.Load()
	}
	for ; moving > 0; moving-- {
		_, empty := pl.extremes()
		if empty == nil {
			break
		}
		pl.load[empty]++
	}
	return pl
}

func (pl *Plan) extremes() (full, empty *Endpoint) {
	for _, ep := range pl.eps {
		if full == nil || pl.load[ep] > pl.load[full] {
			full = ep
		}
		if ep.failStreak == 0 && !ep.ejected.Load() && (empty == nil || pl.load[ep] < pl.load[empty]) {
			empty = ep
		}
	}
	return full, empty
}

// Next returns the address to retire a conn of next, or nil when the
// round is balanced.
func (pl *Plan) Next() *Endpoint {
	pl.full, pl.empty = pl.extremes()
	if pl.empty == nil || pl.load[pl.full]-pl.load[pl.empty] <= 1 {
		return nil
	}
	return pl.full
}

// Retired records that a conn of the address Next returned was retired
// (and counted in its Leaving by the caller): its share moves to the
// emptiest.
func (pl *Plan) Retired() {
	pl.load[pl.full]--
	pl.load[pl.empty]++
}
