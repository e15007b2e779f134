package connpool

// The ends: what the end of a conn or of a dial concerns, asked from one
// place. closeConn (ledger.go) calls connClosedLocked once it has freed the
// permit; a dial's end (dialing.go) calls dialOverLocked and then
// slotFreedLocked. Each part is asked only while it is in play (a group
// cap, a DialContext client, a lowered cap, a waiter, MinIdle, a Close
// waiting for its conns), so that a close or a dial that concerns none of
// them visits none of them; each part's answer is its own function, in
// its own file.

// connClosedLocked tells the parts that closed conn pc, whose permit the
// ledger has just freed, is gone: its group slot, a DialContext client's
// count, its address's counts (before any dial is started: dials pick an
// address by them), the time over a lowered cap, then the queue, the
// warmer and a Close's drain. mu must be held.
func (p *Pool) connClosedLocked(pc *poolConn, reason CloseReason) {
	if p.cfg.limit != nil {
		p.releaseGroupSlot()
	}
	if pc.client || p.clients.streak {
		p.clientClosedLocked(pc)
	}
	p.endpointClosedLocked(pc, reason)
	if p.overCap.Load() {
		p.checkUnderCapLocked()
	}
	p.slotFreedLocked()
	if p.drained != nil {
		p.checkDrained()
	}
}

// dialOverLocked ends dial d's count on its address and its reservation
// in the ledger: with pc, the dial made it, and the address's streak of
// failed dials ends (dialOverLocked returns how long it was); without,
// the permit and the dial's group slot, which it held unless limited, are
// freed. mu must be held.
func (p *Pool) dialOverLocked(d *dialOp, pc *poolConn, limited bool) (streak int) {
	if d.ep != nil {
		streak = p.endpointDialEndedLocked(d.ep, pc)
	}
	p.dialEndedLocked(pc, d.kind)
	if pc == nil && !limited && p.cfg.limit != nil {
		p.releaseGroupSlot()
	}
	return streak
}

// slotFreedLocked lets the queue and the warmer use a permit just freed,
// or the end of a dial: dispatchLocked starts dials for waiters without
// one, nudgeWarmer wakes the maintainer for MinIdle. mu must be held.
func (p *Pool) slotFreedLocked() {
	if p.waiters.Len() > 0 {
		p.dispatchLocked()
	}
	if p.cfg.minIdle > 0 {
		p.nudgeWarmer()
	}
}
