package connpool

// The idle stack's fast paths. A Get of an idle conn and a Put back to the
// idle stack take idleMu alone, not mu, when no Get waits: they contend
// for one short critical section and no counter under mu changes (the
// number of conns in use is derived, see inUseLocked).
//
// The one race to close is between a Put that pushes a conn without mu
// and a Get that, under mu, finds the stack empty and queues: the conn
// would sit idle while the Get waits. So the Get counts itself in queued
// before it looks at the stack, and the Put reads queued after its push;
// both look at the stack under idleMu, so one of the two sees the other.
// A Put that sees a queued Get serves the queue from the stack itself
// (serveIdle). Close and Put are ordered the same way through closed.

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
	p.idlePops++
	low := p.idle.Len() < p.cfg.minIdle
	p.idleMu.Unlock()
	c := pc.newWrapper()
	if low && int(p.openHint.Load()) < p.cfg.maxConns {
		p.mu.Lock()
		p.wantWarmLocked()
		p.mu.Unlock()
	}
	return c
}

// putIdle is Put's fast path: it pushes pc, just returned by its borrower,
// on the idle stack under idleMu alone, and reports whether it did. It
// declines, leaving pc to putBack, when a Get is queued, the pool is
// closed, MaxIdle conns are idle, or pc is past its lifetime.
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
	// The reaper flags conns past their lifetime under idleMu too, so a
	// flagged conn never reaches the stack.
	if pc.retire || p.idle.Len() >= p.cfg.maxIdle {
		p.idleMu.Unlock()
		return false
	}
	p.idle.Push(pc)
	p.idleMu.Unlock()
	if p.queued.Load() != 0 || p.closed.Load() {
		p.serveIdle()
	}
	return true
}

// serveIdle hands idle conns to queued Gets, first come, first served, and
// closes the idle conns of a closed pool. A Put calls it when, after
// pushing a conn without mu, it finds a Get queued or the pool closed.
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
			p.deliverLocked(e, pc, false)
			continue
		}
		// Only DialContext callers wait, and pc is used: retire it if one
		// of them needs its slot for a dial (see offerLocked).
		if needDials < 0 {
			needDials = p.waitersWithoutDialLocked()
		}
		if len(retired) < needDials {
			retired = append(retired, pc)
			p.numClosing++
			continue
		}
		p.idleMu.Lock()
		p.idle.Push(pc)
		p.idleMu.Unlock()
		break
	}
	var doomed []*poolConn
	if p.closed.Load() {
		doomed = p.takeAllIdleLocked()
	}
	p.mu.Unlock()
	for _, pc := range retired {
		p.destroy(pc, &p.numClosing, closeIdle, false)
	}
	p.closeAll(doomed)
}

// takeIdleLocked is Get's way to the idle stack under mu. It pops the top
// idle conn, in a new wrapper, or with unusedOnly the topmost one never
// handed out. trusting is false once the Get's vetting has rejected
// several idle conns: it then takes one only when it could not dial
// instead. A DialContext at the cap that finds only used idle conns gets
// the oldest as retired, for the caller to close to make room for a dial.
// The caller holds mu and not idleMu.
func (p *Pool) takeIdleLocked(unusedOnly, trusting bool) (c *Conn, retired *poolConn) {
	p.idleMu.Lock()
	defer p.idleMu.Unlock()
	if p.idle.Len() == 0 || (!trusting && p.canDialLocked()) {
		return nil, nil
	}
	var pc *poolConn
	ok := false
	if unusedOnly {
		pc, ok = p.idle.PopFunc(neverUsed)
	} else {
		pc, ok = p.idle.Pop()
	}
	if !ok {
		if !p.canDialLocked() {
			retired, _ = p.idle.PopBottom()
		}
		return nil, retired
	}
	p.idlePops++
	return pc.newWrapper(), nil
}

func neverUsed(pc *poolConn) bool { return !pc.used }
