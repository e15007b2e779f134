package connpool

import (
	"time"

	"github.com/connpool/connpool/internal/clock"
	"github.com/connpool/connpool/internal/waitq"
)

// The way back: a conn returned by its borrower, or back from a check or
// a waiter that left, goes to the first waiter that can take it, to the
// idle stack, or is closed. Put's fast path, which only pushes, is in
// idle.go.

// Put returns c to the pool; c.Close does the same. The conn goes to the
// first waiter, or back to the idle conns, or is closed if it is broken
// (a failed Read or Write, [Conn.MarkUnusable]), past its max lifetime,
// opened before a [Pool.Reset], beyond MaxIdle, or the pool is closed.
// After Put, c is dead to its holder. Put returns [ErrConnReturned] for a
// conn already returned and [ErrForeignConn] for a nil conn or one from
// another pool.
func (p *Pool) Put(c *Conn) error {
	if c == nil || c.pc == nil || c.pc.pool != p {
		return ErrForeignConn
	}
	return p.release(c)
}

// release takes c back from its holder: it marks c returned, emits the
// Put event, then keeps the conn or closes it.
func (p *Pool) release(c *Conn) error {
	state := c.state.Or(connReturned)
	if state&connReturned != 0 {
		return ErrConnReturned
	}
	if !p.observed && state == 0 { // the plain path: a clean conn, nothing to report
		if p.timeUse {
			p.releaseTimed(c.pc)
			return nil
		}
		if !p.putIdle(c.pc) {
			p.putBack(c.pc, fromBorrower)
		}
		return nil
	}
	p.releaseObserved(c, state)
	return nil
}

// releaseTimed is the plain path of release with use time on: it adds
// pc's hold to the histogram before pc leaves its holder, then keeps it.
// Apart, so that the plain path without it keeps its registers.
func (p *Pool) releaseTimed(pc *poolConn) {
	p.useTime.observe(clock.Since(pc.lentAt))
	if !p.putIdle(pc) {
		p.putBack(pc, fromBorrower)
	}
}

// releaseObserved is release for a conn that may be broken, or whose
// return is observed: it ends the loan, emits the Put event, and keeps or
// closes the conn.
func (p *Pool) releaseObserved(c *Conn, state uint32) {
	pc := c.pc
	reason := p.brokenReason(pc, state)
	if p.cfg.leakThreshold > 0 {
		if reported, held := c.endLoan(); reported {
			p.log.Info("connpool: a conn reported as held past the leak threshold was returned",
				"conn", pc.id, "held", held.Round(time.Millisecond))
		}
	}
	var held time.Duration
	lentAt := pc.lentAt // read while pc is still this holder's: once kept, another Get may lend it
	if p.stampLent {
		held = clock.Since(lentAt)
	}
	if p.hooks.Put != nil {
		// Checked in before it is kept: once on the idle stack or sent to
		// a waiter, another Get may take it and emit its GetDone, which
		// must come after this event (CMAP's order).
		emit(p, p.hooks.Put, PutEvent{Pool: p.name, ConnID: pc.id, Address: pc.address(), Held: held, Closed: reason.public()})
	}
	if reason == keep && !p.putIdle(pc) {
		reason = p.giveBack(pc, fromBorrower)
	}
	if reason != keep {
		p.closeConn(pc, reason)
	}
	if p.cfg.useTimeMetrics {
		p.useTime.observe(held)
	}
	if p.adaptive != nil {
		p.adaptive.record(held, lentAt, reason == CloseBroken)
	}
}

// brokenReason returns why a conn its holder just returned, with these
// state bits, must be closed, or keep.
func (p *Pool) brokenReason(pc *poolConn, state uint32) CloseReason {
	if state&connExposed != 0 && pc.check != nil {
		pc.check.Share() // its descriptor is no longer the pool's alone
	}
	switch {
	case state&connDestroyOnClose != 0:
		return CloseReleased
	case state&(connPoisoned|connUnusable|ioRunning) != 0:
		// Broken, or the holder's own Read or Write still runs on it: it
		// ends when the socket closes.
		return CloseBroken
	case state&(connDeadlineSet|connExposed) != 0 && pc.nc.SetDeadline(time.Time{}) != nil:
		// Clearing the holder's deadlines failed, or found the inner conn
		// closed through Unwrap.
		return CloseBroken
	}
	return keep
}

// comeback says where a conn that goes back to the pool comes from, which
// decides how it is offered.
type comeback uint8

const (
	// fromBorrower: returned now. It goes on top of the idle stack, and
	// the reaper stamps its return time.
	fromBorrower comeback = iota
	// fromDial: just dialed, or handed to a waiter that left before
	// taking it. A waiter takes it unvetted: it was never idle. On the
	// idle stack it takes its place by age.
	fromDial
	// fromAside: back from a background check, or a returned conn handed
	// to a waiter that left. It takes its place on the idle stack by age.
	fromAside
	// fromIdle: off the idle stack, to a waiter (serveIdle).
	fromIdle
)

// putBack gives pc to the first waiter that can take it or to the idle
// stack, or closes it. pc is lent or checking.
func (p *Pool) putBack(pc *poolConn, from comeback) {
	if reason := p.giveBack(pc, from); reason != keep {
		p.closeConn(pc, reason)
	}
}

// giveBack is putBack without the close: it returns keep, or why pc must
// be closed, having moved it to closing for the caller's closeConn. A
// waiter it finds is sent pc after mu is released: the one lock round
// trip of a Put that hands off, with the wake-up outside it; the Put then
// yields to the waiter (sendAndYield).
func (p *Pool) giveBack(pc *poolConn, from comeback) CloseReason {
	p.mu.Lock()
	e, reason := p.place(pc, from)
	if reason != keep {
		p.moveLocked(pc, heldClosing)
	}
	p.mu.Unlock()
	if e != nil {
		sendAndYield(e, pc, from)
	}
	return reason
}

// offer is place for a caller that holds mu to the end: it sends pc to
// the waiter place found, if any, under mu. mu must be held; it takes
// idleMu.
func (p *Pool) offer(pc *poolConn, from comeback) CloseReason {
	e, reason := p.place(pc, from)
	if e != nil {
		send(e, pc, from)
	}
	return reason
}

// place hands pc to the first waiter that can take it and returns that
// waiter, out of the queue, for the caller to send pc to (send); or keeps
// pc idle if MaxIdle allows; either way with keep. Otherwise it returns
// why the caller must close pc, which it leaves with its holder. mu must
// be held; it takes idleMu.
//
// A used conn that no waiter can take, while every waiter is a DialContext
// caller and one of them needs a dial, is closed to free its slot
// (takerLocked): kept idle, it would hold the slot while they wait at the
// cap (TestDialContextWaitersBehindUsedConns).
func (p *Pool) place(pc *poolConn, from comeback) (*waitq.Elem[waiter], CloseReason) {
	at := atBack
	if from == fromDial {
		at = atDialed
	}
	if reason := p.fate(pc, at); reason != keep {
		return nil, reason
	}
	if p.waiters.Len() > 0 {
		e, closeForDial := p.takerLocked(pc)
		if e != nil {
			p.handOffLocked(e, pc, from)
			return e, keep
		}
		if closeForDial {
			return nil, CloseIdle
		}
	}
	p.idleMu.Lock()
	defer p.idleMu.Unlock()
	if reason := p.fate(pc, atIdle); reason != keep {
		return nil, reason
	}
	p.moveLocked(pc, heldIdle)
	if from == fromBorrower {
		if pc.lastUsed != 0 {
			pc.lastUsed = 0 // returned now: the reaper stamps the time
		}
		p.idle.Push(pc)
	} else {
		p.idle.Insert(pc, returnedBefore)
	}
	return nil, keep
}

func returnedBefore(a, b *poolConn) bool { return a.returnedAt() < b.returnedAt() }
