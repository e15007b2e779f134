package connpool

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"

	"github.com/connpool/connpool/internal/addrset"
)

// Many addresses behind one name.
//
// A pool whose address is a host name on a TCP network resolves the name
// itself, through cfg.resolver, and keeps one endpoint per address it
// got in its address set (p.addrs, internal/addrset, guarded by mu; the
// pool's side of it is addrs.go). Each dial goes to an endpoint picked
// under mu (pickLocked): of those neither backing off nor ejected
// (ejection.go), the one with the fewest conns open or dialing, the
// first in the set on a tie, so dials spread as evenly as they can.
// A pool of an IP literal, or of a network other than TCP, has one
// endpoint for its address and never resolves.
//
// The maintainer starts a resolve on a jittered interval, and sooner
// after a failed dial (steer); the resolve runs on a goroutine of its own,
// tracked by wg, and applies its answer under mu (applyResolved):
//
//   - An address that left the set is drained (drainLocked): under mu
//     and idleMu at once, each of its conns is flagged retire (with why
//     = CloseAddressRemoved) and its idle ones leave the idle stack to
//     be closed. Put's fast path already declines a flagged conn under
//     idleMu, so a conn of a drained address never reaches the stack
//     again and no Get is handed one after the resolve; borrowed ones
//     close on return. The fast paths of idle.go read nothing new.
//   - A failed resolve keeps the last good set; the first one of a
//     streak is logged. Until a resolve first succeeds, dials go to the
//     address as given, and the dialer resolves it as it always did.
//
// Rebalancing: when the set grew, or an address recovered, the fullest
// addresses hold more than their share. A round (rebalance, planned by
// the set's Rebalance) retires at most cfg.rebalanceRate conns, the
// fullest address's first, idle ones before borrowed ones, and at least
// one resolve interval passes between two rounds that retired anything. Each retired conn is replaced by a
// dial when it closes (endpointClosedLocked), which the picker sends to
// the emptiest address: conns move, the pool does not shrink, and no
// more than the rate are retired per interval, so there is never a storm
// of reconnects.
//
// The tests that pin each of these are in resolve_test.go (spreading,
// dialing), resolve_drain_test.go (drains, rebalances, a failed resolve)
// and resolve_backoff_test.go (backoff, removed addresses, stress), and
// the address swap under faults in chaos/swap_test.go.
//
// Backoff is per endpoint: a failed dial backs off its own address; the
// pool's backoff (backoffUntil, set by refreshBackoffLocked from the
// set's BackoffUntil, read by backingOffLocked) is the earliest end of
// its addresses' backoffs, so Gets fail fast only when every address
// backs off. A failed dial for a waiting Get fails the Get only
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

// endpoint is one address the pool dials (internal/addrset).
type endpoint = addrset.Endpoint

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
// one is due, runs a rebalance round when one is due, and readmits the
// ejected addresses whose time is over (ejection.go), and returns
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
	readmit := p.readmit(now)
	p.mu.Lock()
	defer p.mu.Unlock()
	next = readmit
	if !p.resolving {
		next = min(next, p.nextResolve)
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
	first := p.addrs.Len() == 0
	failed, recovered := 0, 0
	if err != nil {
		p.resolveErrors++
		p.resolveStreak++
		failed = p.resolveStreak
		if first { // no good set yet: dial the address as given
			p.addrs.Given()
		}
	} else {
		p.resolves++
		recovered, p.resolveStreak = p.resolveStreak, 0
		var removed []*endpoint
		ev.Added, removed = p.addrs.Resolved(addrs, now)
		for _, ep := range removed {
			ev.Removed = append(ev.Removed, ep.Addr)
		}
		if len(removed) > 0 {
			doomed = p.drainLocked((*endpoint).Removed, CloseAddressRemoved)
		}
		if p.cfg.rebalanceRate > 0 && p.nextRebalance == 0 {
			p.nextRebalance = max(now, p.lastRebalance+int64(p.cfg.resolveInterval))
		}
	}
	if first {
		close(p.resolvedOnce)
	}
	p.refreshBackoffLocked()
	for _, ep := range p.addrs.Current() {
		ev.Addresses = append(ev.Addresses, ep.Addr)
	}
	n := p.addrs.Len()
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
