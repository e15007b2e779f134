package connpool

import "github.com/connpool/connpool/internal/addrset"

// The pool's side of its address set (internal/addrset, held in p.addrs
// and guarded by mu): the set decides, these feed it the pool's events
// and act on its answers.

// newAddrSet returns the address set of a pool of address, whose
// resolved addresses get port, ejecting by ej if it is on.
func newAddrSet(address, port string, ej ejectionConfig) *addrset.Set {
	s := addrset.New(address, port)
	if ej.on() {
		s.Eject(ej.policy())
	}
	return s
}

// pickLocked chooses the address of a new dial and counts the dial on it
// (addrset.Set.Pick). It returns nil, counting nothing, before the first
// resolve has answered.
func (p *Pool) pickLocked() *endpoint {
	if p.addrs.Len() == 0 {
		return nil
	}
	return p.addrs.Pick(p.now())
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
	if d.ep != nil && d.slot != nil { // waiting at the group's cap: not in flight to it
		d.ep.GroupWaiting++
	}
	p.mu.Unlock()
	return d.ep != nil
}

// endpointDialEndedLocked ends a dial's count on its address ep; pc is
// the conn it made, or nil. A dial that made a conn ends ep's streak of
// failed dials: it returns how long the streak was.
func (p *Pool) endpointDialEndedLocked(ep *endpoint, pc *poolConn) (streak int) {
	p.addrs.DialEnded(ep, pc != nil)
	if pc == nil {
		return 0
	}
	if streak = p.addrs.DialSucceeded(ep); streak > 0 {
		p.refreshBackoffLocked()
	}
	return streak
}

// endpointDialFailedLocked backs ep off after a failed dial, and returns
// its streak of failed dials and the pause.
func (p *Pool) endpointDialFailedLocked(ep *endpoint, now int64) (streak int, pause int64) {
	streak, pause = p.addrs.DialFailed(ep, now, func(n int) int64 { return int64(p.backoff(n)) })
	p.refreshBackoffLocked()
	return streak, pause
}

// endpointClosedLocked takes closed conn pc off its address's counts,
// tells the set whether it failed (which may eject the address: then it
// drains it, ejectLocked), and
// replaces a conn retired by a rebalance with a dial, which the picker
// sends where conns are fewest. closeConn calls it, under mu.
func (p *Pool) endpointClosedLocked(pc *poolConn, reason CloseReason) {
	ep := pc.ep
	if ep == nil {
		return
	}
	// A conn retired by the pool (pc.why) did not fail on its own, and
	// nothing is ejected once the pool is closed.
	var now int64
	if p.cfg.ejection.on() {
		now = p.now()
	}
	closed := p.closed.Load()
	if p.addrs.Closed(ep, pc.why != 0, failedEnd(reason) && !closed, now) && !closed {
		p.ejectLocked()
	}
	if reason == CloseEjected {
		pc.ejection = ep.Ejections()
	}
	if reason == CloseRebalanced && !p.closed.Load() && p.waiters.Len() == 0 && p.canDialLocked() &&
		!p.backingOffLocked(p.now()) {
		p.startDialLocked(nil, dialOnDemand)
	}
}

// refreshBackoffLocked sets the pool's backoff from its addresses': it
// lasts until the first of them may be dialed again, and is over at once
// when one of them is not failing.
func (p *Pool) refreshBackoffLocked() { p.backoffUntil = p.addrs.BackoffUntil() }

// drainLocked flags every conn of an address that match reports to be
// closed for why when it comes back, and takes its idle ones out of the
// idle stack, moved to closing, for the caller to close. Both happen in
// one hold of idleMu, which Put's fast path checks the flag under (see
// the top of resolve.go), so no Get is handed such a conn afterwards. mu
// must be held; it takes idleMu.
func (p *Pool) drainLocked(match func(*endpoint) bool, why CloseReason) []*poolConn {
	p.idleMu.Lock()
	for pc := range p.all {
		if pc.ep != nil && match(pc.ep) && pc.holder != heldClosing && pc.why == 0 {
			pc.retire, pc.why = true, why
			pc.ep.Leaving++
		}
	}
	idle := p.evictIdleLocked(func(pc *poolConn) bool { return pc.why == why && match(pc.ep) })
	p.idleMu.Unlock()
	return idle
}

// rebalance runs one round of the set's plan (addrset.Set.Rebalance), at
// most cfg.rebalanceRate retirements: an idle conn is closed now; a
// borrowed one is flagged and closes on return. A round that retired
// anything schedules the next one an interval later. It takes mu and
// idleMu.
func (p *Pool) rebalance(now int64) {
	p.mu.Lock()
	p.nextRebalance = 0
	if p.closed.Load() || p.addrs.Len() < 2 {
		p.mu.Unlock()
		return
	}
	moving := 0
	for pc := range p.all {
		if pc.why == CloseRebalanced {
			moving++
		}
	}
	plan := p.addrs.Rebalance(moving)
	var victims []*poolConn
	retired := 0
	p.idleMu.Lock()
	for retired < p.cfg.rebalanceRate {
		full := plan.Next()
		if full == nil {
			break
		}
		pc, idle := p.retireeIdleLocked(full)
		if pc == nil {
			break // all of its load is dials in flight
		}
		pc.retire, pc.why = true, CloseRebalanced
		full.Leaving++
		if idle {
			victims = append(victims, pc)
		}
		plan.Retired()
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

// failedEnd reports whether a conn closed for reason failed after its
// dial, as outlier ejection counts failures: returned broken or marked
// unusable, or failed a background check or a checkout peek.
func failedEnd(reason CloseReason) bool {
	return reason == CloseBroken || reason == CloseUnhealthy || reason == closeRejected
}

// ejectLocked drains the addresses the set has just ejected at once, so
// that no Get is handed an idle conn of them, and closes the idle conns
// it took on a goroutine of its own; the maintainer, woken, emits the
// event (readmit). Conns of an address ejected before were drained then,
// so drainLocked passes over them. mu must be held.
func (p *Pool) ejectLocked() {
	idle := p.drainLocked((*endpoint).Ejected, CloseEjected)
	p.refreshBackoffLocked() // the addresses left may all be failing
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.wakeMaintainer() // to report it, and readmit it in time
		p.closeConns(idle, CloseEjected)
	}()
}
