package connpool

import (
	"context"
	"runtime"
	"time"

	"github.com/connpool/connpool/internal/clock"
	"github.com/connpool/connpool/internal/waitq"
)

// waiter is a Get waiting in the queue for a conn. Its fields are set
// under mu when it queues, and read under mu while it is queued.
type waiter struct {
	ch         chan delivery   // capacity 1: sent to exactly once per use, by whoever dequeues the waiter (under mu, or just after: send)
	use        uint64          // counts the uses of this record: see newWaiterElem
	ctx        context.Context // the Get's context, whose values a dial started for it sees
	dialing    bool            // a dial started on this waiter's behalf has not finished
	unusedOnly bool            // a DialContext caller: takes only a conn never handed out
	since      int64           // clock.Ticks just before it took mu to queue, for Stats.OldestWait and its wait time
}

// newWaiterElem makes a waiter record for Pool.freeWaiters, which
// recycles the records and their channels, so that a wait allocates
// nothing once the pool is warm. Each pool has its own: a record is read
// and written under its pool's mu.
//
// Why a recycled record never receives a delivery meant for an earlier
// use: only whoever takes a record out of the queue, under mu, may send
// to it, and it sends once, under mu or just after releasing it (send).
// The record goes back only when its channel is empty and nobody can
// send to it any more: after its owner received that one delivery, or
// after the owner took it out of the queue itself (leave), before anyone
// else could; an owner whose ctx ended but who finds itself already out
// of the queue waits for the delivery on its way, and puts the conn
// back, before giving the record back. A dial started for a waiter holds
// the record without dequeuing it, so it remembers the record's use and
// treats the record as its waiter only while the use is the same: a
// record taken by a later Get is never mistaken for the one the dial was
// for (dialOp.forWaiterLocked). TestHammerHandOffAtCancel and
// TestRecycledWaiterMissesTheDialOfItsEarlierUse pin both.
func newWaiterElem() any { return &waitq.Elem[waiter]{Value: waiter{ch: make(chan delivery, 1)}} }

// recycle gives back a record whose wait is over, its channel empty.
func (p *Pool) recycle(e *waitq.Elem[waiter]) {
	e.Value.ctx = nil // keep nothing of the Get alive
	p.freeWaiters.Put(e)
}

// delivery is what a waiter is served: a conn, in a new wrapper, or an
// error.
type delivery struct {
	c     *Conn
	fresh bool // just dialed: never idle, so not vetted
	err   error
}

// deliverLocked serves waiter e, already out of the queue, with pc, which
// is lent from now on. It sends under mu; a path that can, hands off with
// handOffLocked and send instead, so that the wake-up is not in mu.
func (p *Pool) deliverLocked(e *waitq.Elem[waiter], pc *poolConn, from comeback) {
	p.handOffLocked(e, pc, from)
	send(e, pc, from)
}

// handOffLocked records pc as lent to waiter e, which its caller took out
// of the queue, from where it came; the caller sends it with send, after
// unlocking mu if it likes. A DialContext caller's conn counts as its
// client's from here, not from when the caller runs, which on a loaded
// machine can be long after.
func (p *Pool) handOffLocked(e *waitq.Elem[waiter], pc *poolConn, from comeback) {
	if e.Value.unusedOnly {
		p.clientTook(pc)
	}
	if from == fromDial {
		return // lent already: dialOverLocked made it so
	}
	p.moveLocked(pc, heldLent)
	p.handoffs++
}

// send delivers pc, handed off to waiter e, in a new wrapper. It may run
// without mu: whoever took e out of the queue is the only one that sends
// to it, once; the channel has room for that one delivery, so send never
// blocks; and e is not recycled before its owner has received it (see
// newWaiterElem and leave). Until then pc is lent, held by the sender and
// then by the waiter, and neither touches the ledger for it.
func send(e *waitq.Elem[waiter], pc *poolConn, from comeback) {
	e.Value.ch <- delivery{c: pc.newWrapper(), fresh: from == fromDial}
}

// sendAndYield is send for a caller that holds no lock, followed by a
// yield of its P, so that the Get it served runs now, with the conn.
//
// A goroutine woken by a channel send waits in the sender's P's runnext
// slot, which other Ps steal from last, and only after a pause: it runs
// when the sender parks or is preempted (jackc/puddle#46). Meanwhile the
// conn it was handed is held by nobody who runs. How long that lasts
// depends on what the sender does next and on whether its thread keeps a
// core, so the starved throughput swung by 2.5x from one run to the next
// with the machine's load; a sender that keeps working after Put left
// the conn unused for all of it. The yield (as vitess's smartconnpool
// does) puts the sender at the back of the run queue and runs the waiter
// in its place. It costs a Put that hands off one trip through the
// scheduler; a Put that finds no waiter, the common case, never yields.
// TestPutRunsTheServedWaiterFirst pins it.
func sendAndYield(e *waitq.Elem[waiter], pc *poolConn, from comeback) {
	send(e, pc, from)
	runtime.Gosched()
}

// failLocked serves waiter e, already out of the queue, with err.
func (p *Pool) failLocked(e *waitq.Elem[waiter], err error) {
	e.Value.ch <- delivery{err: err}
}

// dequeueLocked takes e out of the queue, if it is still there.
func (p *Pool) dequeueLocked(e *waitq.Elem[waiter]) bool {
	if !p.waiters.Remove(e) {
		return false
	}
	p.queued.Add(-1)
	p.getLeftLocked()
	return true
}

// popWaiterLocked takes the first waiter out of the queue, or returns nil.
func (p *Pool) popWaiterLocked() *waitq.Elem[waiter] {
	e := p.waiters.PopFront()
	if e != nil {
		p.queued.Add(-1)
		p.getLeftLocked()
	}
	return e
}

// waiterForLocked takes out of the queue the first waiter that can take
// pc, and returns it, or nil: a used conn skips DialContext callers. Under
// a queue policy (WithQueuePolicy) the policy picks (pickWaiterLocked).
func (p *Pool) waiterForLocked(pc *poolConn) *waitq.Elem[waiter] {
	if p.overload != nil {
		return p.pickWaiterLocked(pc)
	}
	e := p.waiters.Front()
	for pc.used && e != nil && e.Value.unusedOnly {
		e = e.Next()
	}
	if e != nil {
		p.dequeueLocked(e)
	}
	return e
}

// takerLocked finds who in the queue takes pc, a conn coming back: it
// returns the first waiter that can take it (waiterForLocked), out of the
// queue, or none, and reports whether pc must rather be closed to free
// its slot: a used conn no waiter can take, while every waiter is a
// DialContext caller (which takes only unused conns) and one of them
// needs a dial. mu must be held.
func (p *Pool) takerLocked(pc *poolConn) (e *waitq.Elem[waiter], closeForDial bool) {
	if e = p.waiterForLocked(pc); e != nil {
		return e, false
	}
	return nil, pc.used && p.waiters.Len() > 0 && p.waitersWithoutDialLocked() > 0
}

// waitersWithoutDialLocked counts the queued waiters that have no dial in
// flight for them.
func (p *Pool) waitersWithoutDialLocked() int {
	n := 0
	for e := p.waiters.Front(); e != nil; e = e.Next() {
		if !e.Value.dialing {
			n++
		}
	}
	return n
}

// leave takes waiter e, whose ctx ended, out of the queue. If it was
// served at that instant, the delivery is in its channel or on its way
// (send runs after its sender releases mu): leave waits for it, and the
// conn goes back. Either way its channel is empty after, and it is
// recycled.
func (p *Pool) leave(e *waitq.Elem[waiter]) {
	p.mu.Lock()
	removed := p.dequeueLocked(e)
	p.mu.Unlock()
	if !removed {
		if d := <-e.Value.ch; d.c != nil {
			p.refuseDelivery(d)
		}
	}
	p.recycle(e)
}

// refuseDelivery puts back the conn of delivery d, served to a waiter
// that left as it was served.
func (p *Pool) refuseDelivery(d delivery) {
	p.clientGaveBack(d.c.pc)
	from := fromAside
	if d.fresh {
		from = fromDial
	} else {
		p.handoffsLost.Add(1)
	}
	p.putBack(d.c.pc, from)
}

// oldestWaitLocked returns how long the first waiter has been queued.
func (p *Pool) oldestWaitLocked() time.Duration {
	if e := p.waiters.Front(); e != nil {
		return clock.Since(e.Value.since)
	}
	return 0
}

// turnAwayLocked ends, with err, a Get that may not queue: it takes the
// Get off queued, releases mu and gives its waiter record e back.
func (p *Pool) turnAwayLocked(e *waitq.Elem[waiter], err error) (delivery, error) {
	p.queued.Add(-1)
	p.mu.Unlock()
	p.recycle(e)
	return delivery{}, err
}
