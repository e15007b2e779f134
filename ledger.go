package connpool

import "github.com/connpool/connpool/internal/addrset"

// The custody ledger. Every permit under MaxConns has exactly one holder:
//
//	dialing   a dial in flight; no poolConn exists yet
//	idle      on the idle stack, under idleMu
//	lent      borrowed, or handed to a waiter that has not woken yet
//	checking  out of the idle stack for a background check or a sweep
//	closing   taken out by the pool to be closed
//
// and open = dialing + lent + idle + checking + closing <= MaxConns. The
// functions in this file are the only ones that change the counts under
// mu or close a conn. The idle <-> lent moves of Get's and Put's fast
// path (idle.go) change only the idle stack, under idleMu: lent is
// derived, so that they touch no counter under mu.
//
// Every poolConn records its holder, written by whoever moves it, under
// mu or idleMu; checkInvariants (ledgercheck.go, in test builds) compares
// the records with the counts.
//
// Each address of the pool (an endpoint, resolve.go) keeps its own
// counts of the same conns, under mu: a dial's end and a close update
// them (dialOverLocked, connClosedLocked), and
// checkInvariants holds them to the conns too.

// holder is who holds an open conn, or the permit of one being dialed.
type holder uint8

const (
	heldDialing holder = iota
	heldIdle
	heldLent
	heldChecking
	heldClosing
)

// addOpenLocked adds delta to numOpen; only the ledger calls it.
func (p *Pool) addOpenLocked(delta int) {
	p.numOpen += delta
	p.openHint.Store(int32(p.numOpen))
}

// inUseIdleLocked returns how many conns are lent: borrowed, or handed to
// a waiter that has not taken them yet. mu and idleMu must be held.
func (p *Pool) inUseIdleLocked() int {
	return p.numOpen - p.numDialing - p.idle.Len() - p.numChecking - p.numClosing
}

// reserveLocked takes a permit for a dial of kind: the conn is dialing.
func (p *Pool) reserveLocked(kind dialKind) {
	p.addOpenLocked(1)
	p.numDialing++
	if kind == dialWarm {
		p.numWarming++
	}
}

// dialEndedLocked ends a dial's reservation. With pc, the dial succeeded:
// the conn joins the pool, lent to whoever the dial delivers it to
// (offer or deliverLocked then moves it on). Without, the permit is
// freed; the caller frees the group slot, after closing any socket.
func (p *Pool) dialEndedLocked(pc *poolConn, kind dialKind) {
	p.numDialing--
	if kind == dialWarm {
		p.numWarming--
	}
	if pc == nil {
		p.addOpenLocked(-1)
		return
	}
	pc.holder = heldLent
	p.all[pc] = struct{}{}
}

// moveLocked records that pc, held by pc.holder, is now held by to. A
// move to or from idle is the caller's push or pop, under idleMu.
func (p *Pool) moveLocked(pc *poolConn, to holder) {
	switch pc.holder {
	case heldChecking:
		p.numChecking--
	case heldClosing:
		p.numClosing--
	}
	switch to {
	case heldChecking:
		p.numChecking++
	case heldClosing:
		p.numClosing++
	}
	pc.holder = to
}

// moveAllLocked is moveLocked for each of pcs.
func (p *Pool) moveAllLocked(pcs []*poolConn, to holder) {
	for _, pc := range pcs {
		p.moveLocked(pc, to)
	}
}

// closeConn is the only way a conn is closed. pc is lent (its holder
// closes it) or closing (moved there under mu by whoever took it out of
// the idle stack or a check). It closes the socket and then frees the
// permit and the group slot (connClosedLocked), in that order, so that
// the server has seen the close before the permit allows a new dial; the
// parts then serve the queue, and closeConn emits the conn's closed
// event. A detached conn's socket is not closed: it is no longer the
// pool's.
func (p *Pool) closeConn(pc *poolConn, reason CloseReason) {
	if reason != CloseDetached {
		_ = pc.nc.Close()
	}
	p.mu.Lock()
	if pc.holder == heldClosing {
		p.numClosing--
	}
	p.addOpenLocked(-1)
	delete(p.all, pc)
	p.closes[reason]++
	p.connClosedLocked(pc, reason) // the parts a conn's end concerns
	p.mu.Unlock()
	if p.hooks.ConnClosed != nil {
		p.emitConnClosed(pc, reason)
	}
}

// What a freed permit concerns. closeConn calls connClosedLocked once it
// has freed a conn's permit; a dial's end (dialing.go) calls
// dialOverLocked and then slotFreedLocked. Each part is asked only while
// it is in play (a group cap, a DialContext client, a lowered cap, a
// waiter, MinIdle, a Close waiting for its conns), so that a close or a
// dial that concerns none of them visits none of them; each part's
// answer is its own function, in its own file.

// connClosedLocked tells the parts that closed conn pc, whose permit the
// ledger has just freed, is gone: its group slot, a DialContext client's
// count, its address's counts (before any dial is started: dials pick an
// address by them), the time over a lowered cap, then the queue, the
// warmer and a Close's drain. mu must be held.
func (p *Pool) connClosedLocked(pc *poolConn, reason CloseReason) {
	if p.cfg.limit != nil {
		p.releaseGroupSlot()
	}
	if pc.client || p.clients.streak != noStreak {
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

// dialOverLocked ends dial d's reservation in the ledger and its count
// on its address: with pc, the dial made it, and the address's streak of
// failed dials ends (dialOverLocked returns how long it was); without,
// the permit and the dial's group slot, which it held unless noSlot, are
// freed. mu must be held.
func (p *Pool) dialOverLocked(d *dialOp, pc *poolConn, noSlot bool) (streak int) {
	p.dialEndedLocked(pc, d.kind)
	if pc == nil && !noSlot && p.cfg.limit != nil {
		p.releaseGroupSlot()
	}
	if d.ep != nil {
		streak = p.endpointDialEndedLocked(d.ep, pc)
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

// closeAside closes pc, held checking (or by anyone but a borrower), for
// reason.
func (p *Pool) closeAside(pc *poolConn, reason CloseReason) {
	p.mu.Lock()
	p.moveLocked(pc, heldClosing)
	p.mu.Unlock()
	p.closeConn(pc, reason)
}

// closeConns closes each of pcs, all closing, for reason.
func (p *Pool) closeConns(pcs []*poolConn, reason CloseReason) {
	for _, pc := range pcs {
		p.closeConn(pc, reason)
	}
}

// The eviction primitive: the only code that takes conns off the idle
// stack to close them. evictIdleLocked is its part under the locks; the
// caller closes what it returns with closeConns (or closeConn, for a
// reason of each conn's own) once mu is released. evictIdle takes idleMu
// for it, and evict is the whole sequence, for a caller that needs
// nothing else under mu.

// evictIdleLocked takes off the idle stack, oldest first, the idle conns
// match selects and moves them to closing. match sees the conns in age
// order, so it may stop once it has enough (oldest). mu and idleMu must be
// held.
func (p *Pool) evictIdleLocked(match func(*poolConn) bool) []*poolConn {
	pcs := p.idle.RemoveFunc(match, nil)
	p.moveAllLocked(pcs, heldClosing)
	return pcs
}

// evictIdle is evictIdleLocked for a caller that holds mu only; match runs
// under idleMu. mu must be held; it takes idleMu.
func (p *Pool) evictIdle(match func(*poolConn) bool) []*poolConn {
	p.idleMu.Lock()
	defer p.idleMu.Unlock()
	return p.evictIdleLocked(match)
}

// evict closes the idle conns match selects for reason, unless the pool
// is closed (Close closes them), and returns how many. It takes mu and
// idleMu.
func (p *Pool) evict(match func(*poolConn) bool, reason CloseReason) int {
	p.mu.Lock()
	var pcs []*poolConn
	if !p.closed.Load() {
		pcs = p.evictIdle(match)
	}
	p.mu.Unlock()
	p.closeConns(pcs, reason)
	return len(pcs)
}

// everyConn selects every idle conn, for evictIdle.
func everyConn(*poolConn) bool { return true }

// beyond selects the idle conns beyond the n most recent, for evictIdle:
// it counts the stack when evictIdle first calls it, under idleMu.
func (p *Pool) beyond(n int) func(*poolConn) bool {
	excess, counted := 0, false
	return func(*poolConn) bool {
		if !counted {
			excess, counted = p.idle.Len()-n, true
		}
		excess--
		return excess >= 0
	}
}

// oldest selects the n oldest idle conns, for evictIdle.
func oldest(n int) func(*poolConn) bool {
	return func(*poolConn) bool {
		n--
		return n >= 0
	}
}

// A conn's fate: whether the pool still wants it, and if not, why. The
// funnels a conn passes through ask fate at each moment it could be kept
// or lent, rather than each checking its own subset: Put's fast path
// before its push (putIdle), the way back under mu (place) for a conn
// returned, back from a check, or just dialed (dialed), and a waiting
// Get that is handed a conn (accept). A new reason to let a conn go is
// written here once.

// moment says when fate is asked, which decides the checks it may make
// with the locks its caller holds.
type moment uint8

const (
	// atPush: Put's fast path, under idleMu alone, before it pushes a
	// returned conn. Any doubt declines (over a lowered cap at all),
	// leaving the conn to the way back under mu.
	atPush moment = iota
	// atBack: under mu, a conn coming back (returned, back from a check,
	// or handed to a waiter that left), before it is handed to a waiter.
	atBack
	// atDialed: under mu, a conn just dialed, before it is delivered. It
	// is not closed for a lowered cap yet: it may serve a waiter.
	atDialed
	// atIdle: under mu and idleMu, a conn no waiter took, before it joins
	// the idle stack.
	atIdle
	// atLend: without a lock, a conn handed to a waiting Get as the Get
	// wakes. It may read only what is atomic: a flag set under the locks
	// (retire) was checked when the conn was handed off.
	atLend
)

// fate returns keep when pc is still wanted at moment at, or why it must
// be closed: opened before a Reset, flagged to retire (past its lifetime,
// drained or rebalanced off its address), its address gone, the pool
// closed, over a lowered cap, or beyond MaxIdle. It changes nothing.
func (p *Pool) fate(pc *poolConn, at moment) CloseReason {
	if pc.gen != p.gen.Load() {
		return CloseReset
	}
	if reason := addressFate(pc.ep); reason != keep { // the one question to the conn's address: removed or ejected
		return reason
	}
	switch {
	case at == atLend:
		return keep
	case pc.retire:
		return pc.retiredReason()
	}
	switch at {
	case atPush:
		if p.overCap.Load() {
			return CloseResized
		}
		if p.idle.Len() >= p.cfg.maxIdle {
			return CloseMaxIdle
		}
	case atBack, atDialed:
		if p.closed.Load() {
			return ClosePool
		}
		if at == atBack && p.overCapLocked() {
			return CloseResized // a fresh dial serves a waiter if there is one
		}
	case atIdle:
		if p.overCapLocked() {
			return CloseResized
		}
		if p.idle.Len() >= p.cfg.maxIdle {
			return CloseMaxIdle
		}
	}
	return keep
}

// addressFate is why a conn to ep may no longer be used, or keep: its
// address left the set, or is ejected.
func addressFate(ep *endpoint) CloseReason {
	switch ep.Status() {
	case addrset.Removed:
		return CloseAddressRemoved
	case addrset.Ejected:
		return CloseEjected
	}
	return keep
}

// overCapLocked reports whether the pool holds more conns than a lowered
// cap allows, not counting those already closing: once they have, the
// ones left are within it and are kept
// (TestSetMaxConnsShrinkKeepsConnsOnceWithinTheCap).
func (p *Pool) overCapLocked() bool {
	return p.overCap.Load() && p.numOpen-p.numClosing > p.cfg.maxConns
}

// Conns lent to DialContext clients: a part of lent that the ledger
// counts for DialContext's advice when clients hold the pool (clientHold,
// dialcontext.go).

// clientTook marks pc as held by the DialContext caller it goes to:
// under mu when it is handed off from the queue, or without mu by a
// caller that took it itself, which nobody else reads until it closes.
func (p *Pool) clientTook(pc *poolConn) {
	pc.client = true
	p.clients.held.Add(1)
}

// clientGaveBack undoes clientTook for pc, handed off to a
// DialContext caller that had left the queue (leave), before pc goes
// back to the pool.
func (p *Pool) clientGaveBack(pc *poolConn) {
	if pc.client {
		pc.client = false
		p.clients.held.Add(-1)
	}
}

// clientClosedLocked notes, in closeConn, that pc closed: if a client
// held it, one fewer does; either way a slot is free, and DialContext
// callers wait again rather than fail fast.
func (p *Pool) clientClosedLocked(pc *poolConn) {
	if pc.client {
		p.clients.held.Add(-1)
	}
	p.clients.streak = noStreak
}
