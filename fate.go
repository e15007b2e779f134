package connpool

import "github.com/connpool/connpool/internal/addrset"

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
