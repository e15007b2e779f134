package connpool

// The way out: Get's and DialContext's checkout, from the idle stack
// without mu (idle.go) or under mu, from a dial, or from the queue, where
// it waits at the cap (queueAndWait; the waiter records and the hand-off
// are in wait.go). TryGet is in tryget.go, the checkout peek in health.go.

import (
	"context"
	"fmt"
	"time"

	"github.com/connpool/connpool/internal/clock"
	"github.com/connpool/connpool/internal/waitq"
)

// maxRejects is how many idle conns in a row one Get lets the checkout peek
// reject before it stops trusting the idle set and dials a fresh conn.
const maxRejects = 3

// Get returns a conn, in this order of preference: the most recently
// returned idle conn that passes its checks, a conn from a new dial, or the
// first conn returned or dialed while the Get waits at the cap. Waiters
// are served first come, first served.
//
// When ctx ends first, Get returns an error that wraps ctx's error and
// says what the pool was doing. A dial started for the Get is not
// cancelled with it: it runs to its own timeout and its conn joins the
// pool. A Get that must dial and fails returns the dial error; during the
// backoff after failed dials it returns the last one at once. With
// [WithMaxWaiters], a Get that would queue behind that many returns
// [ErrTooManyWaiters] at once. After Close, Get returns [ErrClosed].
func (p *Pool) Get(ctx context.Context) (*Conn, error) { return p.get(ctx, 0) }

// getOp is one Get's progress, kept on its stack for its GetDone event.
type getOp struct {
	ctx     context.Context
	flags   uint32 // the Conn's initial state bits
	rejects int    // idle conns the Get's vetting closed
	served  Served
	popped  bool          // get's own try at the idle stack found it empty or queued behind: checkOut goes to mu
	queued  bool          // counted in WaitCount
	waited  time.Duration // observed in WaitTime, whose sum is WaitDuration
}

// get implements Get, and DialContext with flags connDestroyOnClose.
func (p *Pool) get(ctx context.Context, flags uint32) (*Conn, error) {
	if ctx == nil {
		return nil, fmt.Errorf("connpool: get %s with a nil context: pass context.Background() for a Get without a deadline", p.name)
	}
	if !p.observed {
		op := getOp{ctx: ctx, flags: flags}
		if flags == 0 && ctx.Err() == nil { // the plain path's first try, before any bookkeeping
			if c := p.popIdle(); c != nil {
				if p.vet(c, 0) {
					p.stampUse(c)
					return c, nil
				}
				op.rejects++
			} else {
				op.popped = true
			}
		}
		c, err := p.checkOut(&op)
		if c != nil {
			p.stampUse(c)
		} else {
			p.getFailed(err)
		}
		p.doneWaiting(&op)
		return c, err
	}
	return p.getObserved(ctx, flags)
}

// getFailed counts a Get, TryGet or DialContext that failed with err, by
// its GetFailure: the one count of every failed Get, kept off the
// successful path.
func (p *Pool) getFailed(err error) {
	p.getFailures[getFailure(err)].Add(1)
}

// stampUse stamps c, checked out on the plain path, for the use-time
// histogram: the one cost WithUseTimeMetrics adds to it, with the clock
// read of its Put (release). The observed path stamps in lent.
func (p *Pool) stampUse(c *Conn) {
	if p.timeUse {
		c.pc.lentAt = clock.Ticks()
	}
}

// doneWaiting adds a Get that queued to the wait histogram, once, however
// many times it queued: its count is WaitCount's, its sum WaitDuration's.
func (p *Pool) doneWaiting(op *getOp) {
	if op.queued {
		p.waitTime.observe(op.waited)
	}
}

// getObserved is get for a pool whose Gets are observed: it emits the
// Get's events around checkOut and stamps the loan.
func (p *Pool) getObserved(ctx context.Context, flags uint32) (*Conn, error) {
	op := getOp{ctx: ctx, flags: flags}
	id, start := p.getStarted()
	c, err := p.checkOut(&op)
	p.doneWaiting(&op)
	p.observedDone(&op, c, err, id, start)
	return c, err
}

// observedDone ends an observed Get, TryGet or DialContext, started at
// id and start (getStarted), that returns c or err: it stamps c's loan
// (lent) or counts the failure, then emits the GetDone event.
func (p *Pool) observedDone(op *getOp, c *Conn, err error, id uint64, start int64) {
	if c != nil {
		p.lent(c)
	} else {
		p.getFailed(err)
	}
	if p.hooks.GetDone != nil {
		p.emitGetDone(op, c, err, id, start)
	}
}

// checkOut finds op's conn: from the idle stack without mu when no Get
// waits, else under mu from the idle stack, a dial, or the queue.
func (p *Pool) checkOut(op *getOp) (*Conn, error) {
	unusedOnly := op.flags&connDestroyOnClose != 0
	// When get has just checked ctx and found no idle conn to take without
	// mu, the starved Get goes straight to mu.
	if !op.popped {
		if op.ctx.Err() != nil {
			return nil, p.waitFailed(op.ctx)
		}
		for ; !unusedOnly && op.rejects < maxRejects; op.rejects++ {
			c := p.popIdle()
			if c == nil {
				break
			}
			if p.vet(c, op.flags) {
				op.served = ServedIdle
				return c, nil
			}
		}
	}
	for {
		// The clock is read and the waiter record taken before mu, so
		// that a Get that queues holds mu no longer for them; the Get that
		// a conn pushed meanwhile serves from the stack below has done
		// both for nothing.
		start := clock.Ticks()
		e := p.freeWaiters.Get().(*waitq.Elem[waiter])
		p.mu.Lock()
		if p.closed.Load() {
			p.mu.Unlock()
			p.freeWaiters.Put(e)
			return nil, ErrClosed
		}
		p.queued.Add(1) // before looking at the idle stack: see idle.go
		c, retired := p.takeIdle(idleAsk{unusedOnly: unusedOnly, wary: op.rejects >= maxRejects})
		if c == nil && retired == nil {
			d, err := p.queueAndWait(op, e, unusedOnly, start) // releases mu
			if err != nil {
				return nil, err
			}
			if p.accept(d, op) {
				return d.c, nil
			}
			continue
		}
		p.queued.Add(-1)
		p.nudgeWarmer()
		p.mu.Unlock()
		p.freeWaiters.Put(e)
		switch {
		case retired != nil:
			p.closeConn(retired, CloseIdle)
		case p.vet(c, op.flags):
			op.served = ServedIdle
			return c, nil
		default:
			op.rejects++
		}
	}
}

// accept readies a conn delivered to a waiting Get, or closes it and
// reports false. A fresh conn is not vetted: it was never idle. A returned
// one is vetted like any idle conn. Either is closed if its fate (ledger.go)
// changed since it was handed off.
func (p *Pool) accept(d delivery, op *getOp) bool {
	pc := d.c.pc
	if op.flags&connDestroyOnClose != 0 && pc.used {
		panic("connpool: a used conn was handed to a DialContext caller")
	}
	reason := p.fate(pc, atLend) // a Reset or a resolve since it was handed off
	switch {
	case reason != keep: // closed below
	case d.fresh:
		p.misses.Add(1)
		op.served = ServedDial
	case !p.healthy(pc, peekAtCheckout):
		op.rejects++
		reason = CloseUnhealthy
	default:
		op.served = ServedHandoff // counted in handoffs when it was handed off
	}
	if reason != keep {
		// A returned conn that was handed off and is refused here is a
		// lost hand-off, not a hit.
		if !d.fresh {
			p.handoffsLost.Add(1)
		}
		p.closeConn(pc, reason)
		return false
	}
	checkout(d.c, op.flags)
	return true
}

// lent stamps c, just checked out, for the use-time metrics and Put
// hooks, and records its loan under leak detection.
func (p *Pool) lent(c *Conn) {
	if p.stampLent {
		c.pc.lentAt = clock.Ticks()
	}
	if p.cfg.leakThreshold > 0 {
		p.lend(c)
	}
}

// vet checks a conn a Get just took from the idle stack with the checkout
// peek. It readies c for its borrower, or closes the conn and reports
// false.
func (p *Pool) vet(c *Conn, flags uint32) bool {
	if !p.healthy(c.pc, peekAtCheckout) {
		p.closeConn(c.pc, closeRejected)
		return false
	}
	checkout(c, flags)
	return true
}

// checkout readies c for its borrower: pc is used from now on, and c
// carries the Get's initial state bits.
func checkout(c *Conn, flags uint32) *Conn {
	if !c.pc.used { // write only on change: the line may be shared with another core
		c.pc.used = true
	}
	if flags != 0 {
		c.state.Store(flags)
	}
	return c
}

// withHint adds hint, if any, to err, a wait error.
func withHint(err error, hint error) error {
	if we, ok := err.(*waitError); ok && hint != nil {
		we.hint = hint
	}
	return err
}

// newWaiterLocked readies record e, taken from freeWaiters before mu, for
// a Get with ctx, and stamps its use.
func (p *Pool) newWaiterLocked(ctx context.Context, e *waitq.Elem[waiter], unusedOnly bool, since int64) {
	w := &e.Value
	w.use++
	w.ctx, w.dialing, w.unusedOnly, w.since = ctx, false, unusedOnly, since
}

// queueAndWait queues op's Get, starting a dial for it when the cap and
// the dial limit allow, and waits for a delivery or the end of its ctx;
// with unusedOnly it is served only conns never handed out. It is called
// with mu held and the Get counted in queued, and releases mu.
//
// A waiter whose ctx ends takes itself out of the queue (leave).
//
// start is clock.Ticks read just before mu was taken: the wait's only
// clock read until it ends, kept out of mu, and the cheapest clock there
// is (a TSC read where it is safe), for the stamps every wait takes. A
// waiter that starts a dial reads the pool clock too, for the backoff.
func (p *Pool) queueAndWait(op *getOp, e *waitq.Elem[waiter], unusedOnly bool, start int64) (delivery, error) {
	if n := p.cfg.maxWaiters; n > 0 && p.waiters.Len() >= n {
		return p.turnAwayLocked(e, fmt.Errorf("%w: %d already queued for %s (WithMaxWaiters(%d))", ErrTooManyWaiters, n, p.name, n))
	}
	if unusedOnly && !p.canDialLocked() {
		if err := p.clientsFailFastLocked(); err != nil {
			return p.turnAwayLocked(e, err)
		}
	}
	p.newWaiterLocked(op.ctx, e, unusedOnly, start)
	counted := false // this wait is at the cap or the dial limit: timed for WaitDuration
	if p.canDialLocked() {
		if now := p.now(); p.backingOffLocked(now) {
			return p.turnAwayLocked(e, p.backoffErrorLocked(now))
		}
		p.waiters.PushBack(e)
		p.startDialLocked(e, dialOnDemand)
	} else {
		if p.overload != nil && !unusedOnly { // a DialContext caller waits for a slot, not the queue: never judged
			if err := p.admitLocked(op.ctx); err != nil {
				return p.turnAwayLocked(e, err)
			}
		}
		p.waiters.PushBack(e)
		counted = true
		if !op.queued { // a Get that queues again, after a rejected conn, counts once
			p.waitCount++
			op.queued = true
		}
	}
	p.mu.Unlock()

	var d delivery
	served := true
	if done := op.ctx.Done(); done == nil { // a context that never ends: a plain receive is cheaper than a select
		d = <-e.Value.ch
	} else {
		select {
		case d = <-e.Value.ch:
			// Served as ctx ended, the select may pick either: a Get
			// whose ctx has ended takes no conn, whichever it picked.
			served = d.c == nil || op.ctx.Err() == nil
		case <-done:
			served = false
		}
	}
	if counted { // the wait's second clock read, its end
		op.waited += clock.Since(start)
	}
	if !served {
		if d.c != nil {
			p.refuseDelivery(d)
			p.recycle(e)
		} else {
			p.leave(e)
		}
		return delivery{}, p.waitFailedFor(op.ctx, unusedOnly, clock.Since(start))
	}
	p.recycle(e)
	return d, d.err
}

// waitFailed builds the error of a Get whose context ended. It takes mu
// and idleMu.
func (p *Pool) waitFailed(ctx context.Context) error { return p.waitFailedFor(ctx, false, 0) }

// waitFailedFor is waitFailed for a Get that waited for waited, a
// DialContext caller when unusedOnly: its error then also says when
// DialContext clients hold every conn (clientWaitEndedLocked), logged once
// per streak.
func (p *Pool) waitFailedFor(ctx context.Context, unusedOnly bool, waited time.Duration) error {
	p.mu.Lock()
	var hint error
	var warning string
	if unusedOnly {
		warning, hint = p.clientWaitEndedLocked(waited)
	}
	p.idleMu.Lock()
	state := fmt.Sprintf("in use %d, idle %d, dialing %d, waiting %d, max %d",
		p.inUseIdleLocked(), p.idle.Len()+p.numChecking, p.numDialing-p.numGroupWaiting, p.waiters.Len(), p.cfg.maxConns)
	p.idleMu.Unlock()
	if n := p.numGroupWaiting; n > 0 {
		state += fmt.Sprintf(", %d dials waiting at the group's cap of %d (WithGroupMaxConns)", n, p.cfg.limit.size())
	}
	if p.failStreak > 0 {
		state += fmt.Sprintf(", last dial error: %v", p.lastDialErr)
	}
	p.mu.Unlock()
	if unusedOnly && hint == nil {
		hint = p.groupHint()
	}
	if warning != "" {
		p.warnClientsOverCap(warning, hint)
	}
	return withHint(newWaitError(ctx, p.name, state), hint)
}

// idleAsk is what a Get asks of the idle stack (takeIdle); the zero value
// asks for the top conn.
type idleAsk struct {
	unusedOnly bool // a DialContext caller: only a conn never handed out
	// wary: the Get's vetting has rejected several idle conns, so it takes
	// one only when it could not dial instead.
	wary bool
}

// takeIdle is Get's way to the idle stack under mu. It pops the top idle
// conn, in a new wrapper, or the topmost one never handed out, as ask
// says. A DialContext at the cap that finds only used idle conns gets the
// oldest as retired, evicted (moved to closing), for the caller to close
// to make room for a dial. mu must be held; it takes idleMu.
func (p *Pool) takeIdle(ask idleAsk) (c *Conn, retired *poolConn) {
	p.idleMu.Lock()
	if p.idle.Len() == 0 { // a starved Get's way: out without a defer
		p.idleMu.Unlock()
		return nil, nil
	}
	defer p.idleMu.Unlock()
	if ask.wary && p.canDialLocked() {
		return nil, nil
	}
	var pc *poolConn
	ok := false
	if ask.unusedOnly {
		pc, ok = p.idle.PopFunc(neverUsed)
	} else {
		pc, ok = p.idle.Pop()
	}
	if !ok {
		if !p.canDialLocked() {
			if pcs := p.evictIdleLocked(oldest(1)); len(pcs) > 0 {
				retired = pcs[0]
			}
		}
		return nil, retired
	}
	pc.holder = heldLent
	p.idlePops++
	return pc.newWrapper(), nil
}

func neverUsed(pc *poolConn) bool { return !pc.used }
