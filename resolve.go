package connpool

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync/atomic"
)

// Many addresses behind one name.
//
// A pool whose address is a host name on a TCP network resolves the name
// itself, through cfg.resolver, and keeps one endpoint per address it
// got. Each dial goes to an endpoint picked under mu (pickLocked): of
// those not backing off, the one with the fewest conns open or dialing,
// the first in the set on a tie, so dials spread as evenly as they can.
// A pool of an IP literal, or of a network other than TCP, has one
// endpoint for its address and never resolves.
//
// The maintainer starts a resolve on a jittered interval, and sooner
// after a failed dial (steer); the resolve runs on a goroutine of its own,
// tracked by wg, and applies its answer under mu (applyResolved):
//
//   - An address that left the set is drained: under mu and idleMu at
//     once, each of its conns is flagged retire (with why =
//     CloseAddressRemoved) and its idle ones leave the idle stack to be
//     closed. Put's fast path already declines a flagged conn under
//     idleMu, so a conn of a drained address never reaches the stack
//     again and no Get is handed one after the resolve; borrowed ones
//     close on return. The fast paths of idle.go read nothing new.
//   - A failed resolve keeps the last good set; the first one of a
//     streak is logged. Until a resolve first succeeds, dials go to the
//     address as given, and the dialer resolves it as it always did.
//
// Rebalancing: when the set grew, or an address recovered, the fullest
// addresses hold more than their share. A round (rebalance) retires at
// most cfg.rebalanceRate conns, the fullest address's first, idle ones
// before borrowed ones, and at least one resolve interval passes between
// two rounds that retired anything. Each retired conn is replaced by a
// dial when it closes (endpointClosedLocked), which the picker sends to
// the emptiest address: conns move, the pool does not shrink, and no
// more than the rate are retired per interval, so there is never a storm
// of reconnects.
//
// The tests that pin each of these are in resolve_test.go, and the
// address swap under faults in chaos/swap_test.go.
//
// Backoff is per endpoint: a failed dial backs off its own address; the
// pool's backoff (backoffUntil, read by backingOffLocked) is the earliest
// end of its addresses' backoffs, so Gets fail fast only when every
// address backs off. A failed dial for a waiting Get fails the Get only
// then; otherwise the Get is served by a dial to another address.

// Resolver looks up the IP addresses of a host name. *[net.Resolver]
// implements it; [ResolverFunc] turns a function into one. network is
// "ip", "ip4" or "ip6", for a pool on "tcp", "tcp4" or "tcp6". A
// Resolver must be safe for concurrent use, and LookupNetIP must return
// soon after its context ends: Close waits for a lookup in flight.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// ResolverFunc is a function that implements [Resolver], so that a fixed
// or fake set of addresses is one line:
//
//	connpool.WithResolver(connpool.ResolverFunc(func(context.Context, string, string) ([]netip.Addr, error) {
//		return []netip.Addr{netip.MustParseAddr("10.0.0.7")}, nil
//	}))
type ResolverFunc func(ctx context.Context, network, host string) ([]netip.Addr, error)

// LookupNetIP calls f.
func (f ResolverFunc) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	return f(ctx, network, host)
}

var _ Resolver = (*net.Resolver)(nil)

// endpoint is one address the pool dials: a resolved IP with the pool's
// port, or the pool's address as given.
type endpoint struct {
	addr string         // host:port, as the dialer gets it
	ip   netip.Addr     // zero for the pool's address as given
	ap   netip.AddrPort // ip and the port, when the port is a number: the conns' RemoteAddr

	// removed is set, under mu, when the address leaves the resolved set;
	// an atomic so that a woken waiter can read it without mu (accept).
	removed atomic.Bool

	// Guarded by Pool.mu.
	open    int // conns to it that are open: dialed and not yet closed
	dialing int // dials to it in flight
	// groupWaiting counts the dials of dialing that wait for a slot under
	// the group's cap (group.go): not in flight yet.
	groupWaiting int
	// leaving counts the open conns that a drain or a rebalance flagged
	// or took to be closed (poolConn.why set): they are not its future.
	leaving           int
	dials, dialErrors int64
	failStreak        int   // consecutive failed dials
	backoffUntil      int64 // pool clock; meaningful while failStreak > 0
}

// loadLocked is the conns the address will hold once those leaving have
// closed, counting dials in flight: what the picker balances.
func (ep *endpoint) loadLocked() int { return ep.open + ep.dialing - ep.leaving }

// backingOffLocked reports whether dials to ep are paused after failures.
func (ep *endpoint) backingOffLocked(now int64) bool {
	return ep.failStreak > 0 && now < ep.backoffUntil
}

// resolvable splits address into the host to resolve, its port and the
// resolver's network. host is "" when the pool must not resolve: a
// network other than TCP, an address without a host, or an IP literal.
func resolvable(network, address string) (host, port, lookupNet string) {
	switch network {
	case "tcp":
		lookupNet = "ip"
	case "tcp4":
		lookupNet = "ip4"
	case "tcp6":
		lookupNet = "ip6"
	default:
		return "", "", ""
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil || host == "" {
		return "", "", ""
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return "", "", ""
	}
	return host, port, lookupNet
}

// newEndpoint returns the endpoint of ip with the pool's port, or of the
// pool's address as given when ip is zero.
func (p *Pool) newEndpoint(ip netip.Addr) *endpoint {
	if !ip.IsValid() {
		return &endpoint{addr: p.address}
	}
	ep := &endpoint{addr: net.JoinHostPort(ip.String(), p.port), ip: ip}
	if n, err := strconv.ParseUint(p.port, 10, 16); err == nil {
		ep.ap = netip.AddrPortFrom(ip, uint16(n))
	}
	return ep
}

// remoteAddr is the address conns to ep go to, or nil when the pool
// dialed its address as given: the dialer's conn knows it then.
func (ep *endpoint) remoteAddr() net.Addr {
	if !ep.ap.IsValid() {
		return nil
	}
	return net.TCPAddrFromAddrPort(ep.ap)
}

// pickLocked chooses the address of a new dial and counts the dial on
// it: of the addresses not backing off, the one with the fewest conns
// open or dialing (the first in the set on a tie); when all back off, the
// one whose backoff ends first, as the probe. It returns nil, counting
// nothing, before the first resolve has answered.
func (p *Pool) pickLocked() *endpoint {
	var best *endpoint
	switch len(p.eps) {
	case 0:
		return nil
	case 1:
		best = p.eps[0]
	default:
		now := p.now()
		var probe *endpoint
		for _, ep := range p.eps {
			if ep.backingOffLocked(now) {
				if probe == nil || ep.backoffUntil < probe.backoffUntil {
					probe = ep
				}
				continue
			}
			if best == nil || ep.loadLocked() < best.loadLocked() {
				best = ep
			}
		}
		if best == nil {
			best = probe
		}
	}
	best.dialing++
	return best
}

// awaitEndpoint waits for the first resolve to answer and picks d's
// address, for a dial started before it had. It reports false when the
// pool closed first.
func (p *Pool) awaitEndpoint(d *dialOp) bool {
	select {
	case <-p.resolvedOnce:
	case <-p.ctx.Done():
		return false
	}
	p.mu.Lock()
	d.ep = p.pickLocked()
	p.mu.Unlock()
	return d.ep != nil
}

// endpointDialEndedLocked ends a dial's count on its address; pc is the
// conn it made, or nil.
func (p *Pool) endpointDialEndedLocked(ep *endpoint, pc *poolConn) {
	if ep == nil {
		return
	}
	ep.dialing--
	if pc != nil {
		ep.open++
		ep.dials++
	} else {
		ep.dialErrors++
	}
	p.forgetDrainedLocked(ep)
}

// endpointClosedLocked takes closed conn pc off its address's counts,
// and replaces a conn retired by a rebalance with a dial, which the
// picker sends where conns are fewest. closeConn calls it, under mu.
func (p *Pool) endpointClosedLocked(pc *poolConn, reason CloseReason) {
	ep := pc.ep
	if ep == nil {
		return
	}
	ep.open--
	if pc.why != 0 {
		ep.leaving--
	}
	p.forgetDrainedLocked(ep)
	if reason == CloseRebalanced && !p.closed.Load() && p.waiters.Len() == 0 && p.canDialLocked() &&
		!p.backingOffLocked(p.now()) {
		p.startDialLocked(nil, dialOnDemand)
	}
}

// forgetDrainedLocked drops a removed address from the draining list
// once nothing of it is open or dialing.
func (p *Pool) forgetDrainedLocked(ep *endpoint) {
	if ep.removed.Load() && ep.open+ep.dialing == 0 {
		p.draining = slices.DeleteFunc(p.draining, func(e *endpoint) bool { return e == ep })
	}
}

// refreshBackoffLocked sets the pool's backoff from its addresses': it
// lasts until the first of them may be dialed again, and is over at once
// when one of them is not failing.
func (p *Pool) refreshBackoffLocked() {
	until := int64(0)
	for i, ep := range p.eps {
		if ep.failStreak == 0 {
			until = 0
			break
		}
		if i == 0 || ep.backoffUntil < until {
			until = ep.backoffUntil
		}
	}
	p.backoffUntil = until
}

// othersDialableLocked reports whether an address of the set other than
// ep is not backing off: a failed dial to ep can then be retried there.
func (p *Pool) othersDialableLocked(ep *endpoint, now int64) bool {
	for _, o := range p.eps {
		if o != ep && !o.backingOffLocked(now) {
			return true
		}
	}
	return false
}

// resolveSoonLocked brings the next resolve forward after a failed dial:
// the address may have moved.
func (p *Pool) resolveSoonLocked(now int64) {
	if p.host != "" {
		p.nextResolve = min(p.nextResolve, now+int64(p.cfg.resolveInterval/10))
	}
}

// resolveWait returns how long until the next resolve: the interval,
// shortened by up to a tenth at random so that a fleet of pools does not
// query in step, and never longer, so that a change is seen within one
// interval.
func (p *Pool) resolveWait() int64 {
	d := p.cfg.resolveInterval
	return int64(d - rand.N(d/10+1))
}

// steer is the maintainer's part in resolving: it starts a resolve when
// one is due and runs a rebalance round when one is due, and returns
// when it next has something to do. It takes mu.
func (p *Pool) steer(now int64) (next int64) {
	if p.host == "" {
		return math.MaxInt64
	}
	p.mu.Lock()
	if !p.resolving && now >= p.nextResolve && !p.closed.Load() {
		p.resolving = true
		p.wg.Add(1)
		go p.resolve()
	}
	due := p.nextRebalance != 0 && now >= p.nextRebalance
	p.mu.Unlock()
	if due {
		p.rebalance(now)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	next = math.MaxInt64
	if !p.resolving {
		next = p.nextResolve
	}
	if p.nextRebalance != 0 {
		next = min(next, p.nextRebalance)
	}
	return next
}

// resolve looks the pool's host up and applies the answer. It runs on a
// goroutine of its own, tracked by wg; the lookup ends at the dial
// timeout (defaultDialTimeout if there is none) or when the pool closes.
func (p *Pool) resolve() {
	defer p.wg.Done()
	timeout := p.cfg.dialTimeout
	if timeout <= 0 {
		timeout = defaultDialTimeout
	}
	ctx, cancel := context.WithTimeout(p.ctx, timeout)
	ips, err := p.cfg.resolver.LookupNetIP(ctx, p.lookupNet, p.host)
	cancel()
	var addrs []netip.Addr
	if err == nil {
		addrs = usableAddrs(ips, p.lookupNet)
		if len(addrs) == 0 {
			err = fmt.Errorf("no %s address among %v", p.lookupNet, ips)
		}
	}
	if err != nil {
		err = fmt.Errorf("connpool: resolve %s: %w", p.host, err)
	}
	p.applyResolved(addrs, err)
}

// usableAddrs returns the addresses of ips that network ("ip", "ip4",
// "ip6") allows, IPv4-mapped ones unmapped, each once, in their order.
func usableAddrs(ips []netip.Addr, network string) []netip.Addr {
	out := make([]netip.Addr, 0, len(ips))
	for _, ip := range ips {
		if !ip.IsValid() {
			continue
		}
		ip = ip.Unmap()
		if (network == "ip4" && !ip.Is4()) || (network == "ip6" && !ip.Is6()) || slices.Contains(out, ip) {
			continue
		}
		out = append(out, ip)
	}
	return out
}

// applyResolved takes a resolve's answer: the new set of addresses, or
// err, when the pool keeps the set it has. It drains the addresses that
// left the set, schedules a rebalance round, and emits the Resolved
// event. It takes mu and idleMu.
func (p *Pool) applyResolved(addrs []netip.Addr, err error) {
	now := p.now()
	var ev ResolveEvent
	var doomed []*poolConn
	p.mu.Lock()
	p.resolving = false
	p.nextResolve = now + p.resolveWait()
	if p.closed.Load() {
		p.mu.Unlock()
		return
	}
	first := len(p.eps) == 0
	failed, recovered := 0, 0
	if err != nil {
		p.resolveErrors++
		p.resolveStreak++
		failed = p.resolveStreak
		if first { // no good set yet: dial the address as given
			p.eps = []*endpoint{p.newEndpoint(netip.Addr{})}
		}
	} else {
		p.resolves++
		recovered, p.resolveStreak = p.resolveStreak, 0
		var removed []*endpoint
		ev.Added, removed = p.setAddressesLocked(addrs)
		for _, ep := range removed {
			ev.Removed = append(ev.Removed, ep.addr)
		}
		if len(removed) > 0 {
			doomed = p.drainRemoved()
		}
		if p.cfg.rebalanceRate > 0 && p.nextRebalance == 0 {
			p.nextRebalance = max(now, p.lastRebalance+int64(p.cfg.resolveInterval))
		}
	}
	if first {
		close(p.resolvedOnce)
	}
	p.refreshBackoffLocked()
	for _, ep := range p.eps {
		ev.Addresses = append(ev.Addresses, ep.addr)
	}
	n := len(p.eps)
	p.mu.Unlock()

	p.wakeMaintainer() // for the rebalance round
	p.closeConns(doomed, CloseAddressRemoved)
	switch {
	case failed == 1:
		p.log.Warn("connpool: resolve failed; keeping the last good addresses", "error", err, "addresses", n)
	case recovered > 0:
		p.log.Info("connpool: resolve recovered", "failed_resolves", recovered, "addresses", n)
	}
	if len(ev.Removed) > 0 {
		p.log.Info("connpool: addresses removed; draining their conns", "removed", ev.Removed, "closed_idle", len(doomed))
	}
	if p.hooks.Resolved != nil {
		ev.Pool, ev.Err = p.name, err
		emit(p, p.hooks.Resolved, ev)
	}
}

// setAddressesLocked makes addrs the set: the addresses kept stay in
// their order, the new ones follow in theirs (an address still draining
// comes back with its counts), and the ones gone are marked removed and
// kept as draining while conns to them are open. It returns the
// addresses added and the endpoints removed.
func (p *Pool) setAddressesLocked(addrs []netip.Addr) (added []string, removed []*endpoint) {
	next := make([]*endpoint, 0, len(addrs))
	for _, ep := range p.eps {
		if ep.ip.IsValid() && slices.Contains(addrs, ep.ip) {
			next = append(next, ep)
		} else {
			removed = append(removed, ep)
		}
	}
	for _, ip := range addrs {
		if slices.ContainsFunc(next, func(ep *endpoint) bool { return ep.ip == ip }) {
			continue
		}
		i := slices.IndexFunc(p.draining, func(ep *endpoint) bool { return ep.ip == ip })
		var ep *endpoint
		if i >= 0 {
			ep = p.draining[i]
			p.draining = slices.Delete(p.draining, i, i+1)
			ep.removed.Store(false)
		} else {
			ep = p.newEndpoint(ip)
		}
		next = append(next, ep)
		added = append(added, ep.addr)
	}
	for _, ep := range removed {
		ep.removed.Store(true)
		if ep.open+ep.dialing > 0 {
			p.draining = append(p.draining, ep)
		}
	}
	p.eps = next
	return added, removed
}

// drainRemoved flags every conn of a removed address to be closed when it
// comes back, and takes its idle ones out of the idle stack, moved to
// closing, for the caller to close. Both happen in one hold of idleMu,
// which Put's fast path checks the flag under: see the top of this file.
// mu must be held; it takes idleMu.
func (p *Pool) drainRemoved() []*poolConn {
	p.idleMu.Lock()
	for pc := range p.all {
		if pc.ep != nil && pc.ep.removed.Load() && pc.holder != heldClosing && pc.why == 0 {
			pc.retire, pc.why = true, CloseAddressRemoved
			pc.ep.leaving++
		}
	}
	idle := p.evictIdleLocked(func(pc *poolConn) bool { return pc.why == CloseAddressRemoved })
	p.idleMu.Unlock()
	return idle
}

// rebalance runs one round: while the fullest address holds more than
// one conn beyond the emptiest healthy one, it retires a conn of the
// fullest, counting its replacement on the emptiest, at most
// cfg.rebalanceRate times. An idle conn is closed now; a borrowed one is
// flagged and closes on return. A round that retired anything schedules
// the next one an interval later. It takes mu and idleMu.
func (p *Pool) rebalance(now int64) {
	p.mu.Lock()
	p.nextRebalance = 0
	if p.closed.Load() || len(p.eps) < 2 {
		p.mu.Unlock()
		return
	}
	load := make(map[*endpoint]int, len(p.eps))
	for _, ep := range p.eps {
		load[ep] = ep.loadLocked()
	}
	// Conns an earlier round retired that have not closed yet are each
	// to be replaced by a dial to the emptiest address: count those dials
	// as made, or a round that comes before the borrowers return them
	// would retire more than the imbalance asks.
	moving := 0
	for pc := range p.all {
		if pc.why == CloseRebalanced {
			moving++
		}
	}
	extremes := func() (full, empty *endpoint) {
		for _, ep := range p.eps {
			if full == nil || load[ep] > load[full] {
				full = ep
			}
			if ep.failStreak == 0 && (empty == nil || load[ep] < load[empty]) {
				empty = ep
			}
		}
		return full, empty
	}
	for ; moving > 0; moving-- {
		_, empty := extremes()
		if empty == nil {
			break
		}
		load[empty]++
	}
	var victims []*poolConn
	retired := 0
	p.idleMu.Lock()
	for retired < p.cfg.rebalanceRate {
		full, empty := extremes()
		if empty == nil || load[full]-load[empty] <= 1 {
			break
		}
		pc, idle := p.retireeIdleLocked(full)
		if pc == nil {
			break // all of its load is dials in flight
		}
		pc.retire, pc.why = true, CloseRebalanced
		full.leaving++
		if idle {
			victims = append(victims, pc)
		}
		load[full]--
		load[empty]++
		retired++
	}
	p.idleMu.Unlock()
	p.moveAllLocked(victims, heldClosing)
	if retired > 0 {
		p.lastRebalance = now
		p.nextRebalance = now + int64(p.cfg.resolveInterval)
	}
	p.mu.Unlock()
	p.closeConns(victims, CloseRebalanced)
}

// retireeIdleLocked picks the conn of ep a rebalance retires: its oldest
// idle conn, taken off the idle stack, else a borrowed one not yet
// flagged. idle says which. mu and idleMu must be held.
func (p *Pool) retireeIdleLocked(ep *endpoint) (pc *poolConn, idle bool) {
	for _, c := range p.idle.All() { // oldest first
		if c.ep == ep && c.why == 0 {
			p.idle.RemoveFunc(func(x *poolConn) bool { return x == c }, nil)
			return c, true
		}
	}
	for c := range p.all {
		if c.ep == ep && c.why == 0 && c.holder == heldLent {
			return c, false
		}
	}
	return nil, false
}
