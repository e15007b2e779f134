package connpool

// The way out: Get, TryGet and DialContext's checkout, from the idle
// stack without mu (idle.go), under mu, from a dial, or from the queue
// (wait.go).

import (
	"context"
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
	if p.observed {
		return p.getObserved(ctx, flags)
	}
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
	if c != nil {
		p.lent(c)
	} else {
		p.getFailed(err)
	}
	if p.hooks.GetDone != nil {
		p.emitGetDone(&op, c, err, id, start)
	}
	return c, err
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
// one is vetted like any idle conn. Either is closed if its fate (fate.go)
// changed since it was handed off.
func (p *Pool) accept(d delivery, op *getOp) bool {
	pc := d.c.pc
	if op.flags&connDestroyOnClose != 0 && pc.used {
		panic("connpool: a used conn was handed to a DialContext caller")
	}
	// A conn refused here is closed; a returned one that was handed off
	// is then a lost hand-off, not a hit.
	refuse := func(reason CloseReason) bool {
		if !d.fresh {
			p.handoffsLost.Add(1)
		}
		p.closeConn(pc, reason)
		return false
	}
	if reason := p.fate(pc, atLend); reason != keep { // a Reset or a resolve since it was handed off
		return refuse(reason)
	}
	switch {
	case d.fresh:
		p.misses.Add(1)
		op.served = ServedDial
	case !p.healthy(pc, peekAtCheckout):
		op.rejects++
		return refuse(CloseUnhealthy)
	default:
		op.served = ServedHandoff // counted in handoffs when it was handed off
	}
	checkout(d.c, op.flags)
	return true
}

// TryGet returns an idle conn that passes its checks, or [ErrNoIdleConn]
// at once. It never waits and never dials in the caller's path (it does
// nudge the warmer when MinIdle is set). After Close it returns
// [ErrClosed].
func (p *Pool) TryGet() (*Conn, error) {
	op := getOp{ctx: context.Background()}
	id, start := p.getStarted()
	c, err := p.tryCheckOut()
	if c != nil {
		op.served = ServedIdle
		p.lent(c)
	} else {
		p.getFailed(err)
	}
	if p.hooks.GetDone != nil {
		p.emitGetDone(&op, c, err, id, start)
	}
	return c, err
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

func (p *Pool) tryCheckOut() (*Conn, error) {
	for {
		c := p.popIdle()
		if c == nil {
			p.mu.Lock()
			if p.closed.Load() {
				p.mu.Unlock()
				return nil, ErrClosed
			}
			c, _ = p.takeIdle(idleAsk{})
			p.nudgeWarmer()
			p.mu.Unlock()
			if c == nil {
				return nil, ErrNoIdleConn
			}
		}
		if p.vet(c, 0) {
			return c, nil
		}
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

// The checkout peek, which vet and accept run on a conn they lend, and
// the maintainer's sweep on every idle conn (maintain.go).

// peeker says who peeks at a conn's socket (healthy).
type peeker uint8

const (
	peekAtCheckout peeker = iota // a Get, before it lends the conn
	peekInSweep                  // the maintainer's sweep of the idle conns
)

// healthy runs the checkout peek. The time-based checks (idle timeout, max
// lifetime) are not needed here: the maintainer closes idle conns at their
// deadlines, and flags borrowed ones to be closed on return. A checkout's
// peek WithLivenessCheck can turn off; the maintainer's sweep peeks
// regardless.
//
// A conn the peer closed or reset usually means the server restarted or a
// middlebox dropped its flows, so the other idle conns are likely dead too:
// a checkout that finds one asks the maintainer to sweep them all now,
// rather than leave each to a later Get or the next background check.
func (p *Pool) healthy(pc *poolConn, by peeker) bool {
	onGet := by == peekAtCheckout
	if (onGet && !p.cfg.livenessOnGet) || pc.check == nil {
		return true
	}
	pending, err := pc.check.Check()
	if err != nil {
		if onGet && p.sweepWanted.CompareAndSwap(false, true) {
			p.wakeMaintainer()
		}
		return false
	}
	// Bytes waiting on a conn never handed out are the server's greeting,
	// which belongs to the first borrower.
	return !(pending && pc.used)
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
