package connpool

// The idle stack's fast paths, and the one protocol that orders them.
//
// A Get of an idle conn (popIdle) and a Put back to the idle stack
// (putIdle) take idleMu alone, not mu, when no Get waits: they contend for
// one short critical section and no count under mu changes (lent is
// derived, see ledger.go).
//
// The race to close is between a Put that pushes a conn without mu and a
// Get that, under mu, finds the stack empty and queues: the conn would sit
// idle while the Get waits. So the Get counts itself in queued before it
// looks at the stack, and the Put reads queued after its push; both look
// at the stack under idleMu, so one of the two sees the other. A Put that
// sees a queued Get serves the queue from the stack itself (serveIdle).
// Close and Put are ordered the same way through closed, and Reset and
// Put through gen: each is written before the stack is emptied, under
// idleMu, and read by putIdle under idleMu before its push.
//
// So a conn is pushed only when no Get is queued or about to queue, or by
// a Put that then serves the queue; the exception is a Get whose checks
// rejected several idle conns and that waits on its own fresh dial.
//
// The tests that pin each ordering are in idle_internal_test.go: a Get
// that queues, a Close, a reaper that flags the conn past its lifetime,
// each between a Put's checks and its push (testHookPutIdle).

// testHookPutIdle, when set by a test, runs in putIdle between its checks
// and its push: where a Get may queue, or Close may run, unseen.
var testHookPutIdle func()

// popIdle is Get's fast path: it takes the top idle conn, in a new
// wrapper, under idleMu alone. It returns nil when the stack is empty,
// when Gets are queued (they come first), or when the pool is closed.
func (p *Pool) popIdle() *Conn {
	if p.queued.Load() != 0 || p.closed.Load() {
		return nil
	}
	p.idleMu.Lock()
	pc, ok := p.idle.Pop()
	if !ok {
		p.idleMu.Unlock()
		return nil
	}
	pc.holder = heldLent
	p.idlePops++
	warm := p.idle.Len() < p.cfg.minIdle && int(p.openHint.Load()) < p.cfg.maxConns
	p.idleMu.Unlock()
	c := pc.newWrapper()
	if warm {
		p.mu.Lock()
		p.nudgeWarmer()
		p.mu.Unlock()
	}
	return c
}

// putIdle is Put's fast path: it pushes pc, just returned by its borrower,
// on the idle stack under idleMu alone, and reports whether it did. It
// declines, leaving pc to giveBack, when a Get is queued, the pool is
// closed, or pc's fate (ledger.go) is not to be kept.
func (p *Pool) putIdle(pc *poolConn) bool {
	if p.queued.Load() != 0 || p.closed.Load() {
		return false
	}
	if pc.lastUsed != 0 { // pc is ours until pushed: no lock needed
		pc.lastUsed = 0 // returned now: the reaper stamps the time
	}
	if testHookPutIdle != nil {
		testHookPutIdle()
	}
	p.idleMu.Lock()
	// The reaper flags conns past their lifetime under idleMu, and Reset
	// moves gen under idleMu: a flagged or older conn never reaches the
	// stack.
	if p.fate(pc, atPush) != keep {
		p.idleMu.Unlock()
		return false
	}
	pc.holder = heldIdle
	p.idle.Push(pc)
	p.idleMu.Unlock()
	if p.queued.Load() != 0 || p.closed.Load() {
		p.serveIdle()
	}
	return true
}

// serveIdle hands idle conns to queued Gets, first come, first served, and
// closes the idle conns of a closed pool. A Put calls it when, after
// pushing a conn without mu, it finds a Get queued or the pool closed. It
// takes mu and idleMu.
func (p *Pool) serveIdle() {
	p.mu.Lock()
	var retired []*poolConn
	needDials := -1 // waiters without a dial, counted when first needed
	for p.waiters.Len() > 0 && !p.closed.Load() {
		p.idleMu.Lock()
		pc, ok := p.idle.Pop()
		p.idleMu.Unlock()
		if !ok {
			break
		}
		if e := p.waiterForLocked(pc); e != nil {
			p.deliverLocked(e, pc, fromIdle)
			continue
		}
		// Only DialContext callers wait, and pc is used: retire it if one
		// of them needs its slot for a dial (see offer).
		if needDials < 0 {
			needDials = p.waitersWithoutDialLocked()
		}
		if len(retired) < needDials {
			p.moveLocked(pc, heldClosing)
			retired = append(retired, pc)
			continue
		}
		p.idleMu.Lock()
		p.idle.Push(pc)
		p.idleMu.Unlock()
		break
	}
	var doomed []*poolConn
	if p.closed.Load() {
		doomed = p.evictIdle(everyConn)
	}
	p.mu.Unlock()
	p.closeConns(retired, CloseIdle)
	p.closeConns(doomed, ClosePool)
}
