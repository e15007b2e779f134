package connpool

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"time"

	"github.com/connpool/connpool/internal/clock"
	"github.com/connpool/connpool/internal/slots"
	"github.com/connpool/connpool/internal/sockcheck"
	"github.com/connpool/connpool/internal/waitq"
)

// canDialLocked reports whether the cap and the dial limit allow a dial.
func (p *Pool) canDialLocked() bool {
	return p.numOpen < p.cfg.maxConns && p.numDialing < p.cfg.maxConnecting
}

// backingOffLocked reports whether dials are paused after failures: for
// a pool of several addresses, whether every one of them backs off (see
// refreshBackoffLocked).
func (p *Pool) backingOffLocked(now int64) bool {
	return p.failStreak > 0 && now < p.backoffUntil
}

// backoffErrorLocked is the error of a Get that fails fast during a
// backoff: it says how many dials failed, when the next one comes, and
// what to do, and wraps the last dial error.
func (p *Pool) backoffErrorLocked(now int64) error {
	dials := "dials"
	if p.failStreak == 1 {
		dials = "dial"
	}
	return fmt.Errorf("connpool: %s %s unreachable after %d failed %s; retrying in %v, and until then a Get that needs a new conn fails at once (WithDialBackoff sets the pause): %w",
		p.network, p.address, p.failStreak, dials, time.Duration(p.backoffUntil-now).Round(time.Millisecond), p.lastDialErr)
}

// backoff returns the pause after the n-th consecutive dial failure: the
// minimum doubled n-1 times, capped, then jittered into [d/2, d] so that a
// fleet of pools does not retry in step.
func (p *Pool) backoff(n int) time.Duration {
	d := p.cfg.backoffMax
	if n-1 < 32 {
		if b := p.cfg.backoffMin << (n - 1); b > 0 && b < d {
			d = b
		}
	}
	return d/2 + rand.N(d/2+1)
}

// dispatchLocked starts dials for queued waiters that have none, while the
// cap and the dial limit allow, oldest first. During a backoff it fails
// those waiters fast instead: no dial would be made for them.
func (p *Pool) dispatchLocked() {
	if p.waiters.Len() == 0 || p.closed.Load() {
		return
	}
	now := int64(-1)
	for e := p.waiters.Front(); e != nil && p.canDialLocked(); {
		next := e.Next()
		if !e.Value.dialing {
			if now < 0 {
				now = p.now()
			}
			if p.backingOffLocked(now) {
				p.dequeueLocked(e)
				p.failLocked(e, p.backoffErrorLocked(now))
			} else {
				p.startDialLocked(e, dialOnDemand)
			}
		}
		e = next
	}
}

// dialKind says whom a dial is for, which decides what it counts toward.
type dialKind uint8

const (
	// dialOnDemand: for a waiting Get, or to replace a conn a rebalance
	// retired.
	dialOnDemand dialKind = iota
	// dialWarm: by the maintainer, for MinIdle; counted in numWarming.
	dialWarm
)

// startDialLocked takes a permit and a dial slot and dials in the
// background, on behalf of waiter e if it is not nil, or for warming. A
// dial under a group's cap takes its slot, or its place in the group's
// queue, here (joinGroupLocked); a warm dial has taken its slot already
// (warmSlotLocked).
func (p *Pool) startDialLocked(e *waitq.Elem[waiter], kind dialKind) {
	p.reserveLocked(kind)
	p.nextID++
	d := dialOp{id: p.nextID, gen: p.gen.Load(), e: e, kind: kind, ctx: p.ctx, ep: p.pickLocked()}
	if e != nil {
		e.Value.dialing = true
		d.ctx, d.use = e.Value.ctx, e.Value.use
	}
	p.joinGroupLocked(&d)
	p.wg.Add(1)
	go p.dial(d)
}

// dialOp is one dial the pool started.
type dialOp struct {
	id   uint64              // the conn's id
	gen  uint64              // the pool's Reset generation when it started, then when its connect began (dial)
	e    *waitq.Elem[waiter] // the waiter it is for, or nil; see forWaiterLocked (dial sets it nil once the record serves a later Get)
	use  uint64              // e's use when the dial started
	kind dialKind            // whom it is for
	ctx  context.Context     // whose values the dialer sees
	ep   *endpoint           // the address it dials; nil until the first resolve answers (awaitEndpoint)
	// slot is its place in the queue of the group's cap while it waits
	// for a slot there (joinGroupLocked, acquireGroupSlot); nil once it
	// holds one, or left, or when the pool has no group cap. Only the
	// dial's goroutine changes it after the start, under mu.
	slot *slots.Waiter
}

// addr returns the address d dials, as its events report it.
func (d *dialOp) addr(p *Pool) string {
	if d.ep == nil {
		return p.address
	}
	return d.ep.Addr
}

// forWaiterLocked reports whether d's waiter record is still the Get it
// was started for: records are recycled (see newWaiterElem), and a later Get's
// use of the record is not this dial's.
func (d *dialOp) forWaiterLocked() bool { return d.e != nil && d.e.Value.use == d.use }

// dial opens a conn and delivers it: to the waiter it was started for if
// that one still waits, else to the first waiter, else to the idle stack.
// A failed dial's error goes to its own waiter only; other waiters keep
// waiting for a returned conn or another dial. A conn that arrives after
// the pool closed or was reset is closed, through closeConn, so that its
// socket is closed before its group slot is freed.
func (p *Pool) dial(d dialOp) {
	defer p.wg.Done()
	addressed := d.ep != nil || p.awaitEndpoint(&d)
	if p.hooks.DialStarted != nil {
		emit(p, p.hooks.DialStarted, DialStartedEvent{Pool: p.name, ConnID: d.id, Address: d.addr(p)})
	}
	var nc net.Conn
	var took time.Duration // the dialer's own time, without the wait for a group slot
	var err error
	// skipped: the dial ends without dialing, because the pool closed
	// before the first resolve answered or while it waited at the group's
	// cap, or because no Get needed it any more there. held: it holds its
	// slot under the group's cap, if the pool has one.
	skipped, held := false, p.cfg.limit != nil
	if !addressed {
		err = fmt.Errorf("connpool: dial %s %s: %w", p.network, p.address, ErrClosed)
		skipped = true
		if d.slot != nil {
			p.cfg.limit.leave(d.slot)
			held = false
		}
	} else if err = p.acquireGroupSlot(&d); err != nil {
		skipped, held = true, false
	}
	if !skipped {
		// The conn is of the generation its connect begins in: a Reset
		// before it, since the dial's start (a wait for the first resolve
		// or the group's cap), does not retire it. Read after DialStarted
		// (CMAP's ConnectionCreated), so that no conn whose DialStarted
		// comes after a PoolReset is retired by that Reset: the Reset
		// moved the generation before it emitted its event.
		d.gen = p.gen.Load()
		start := clock.Ticks()
		nc, err = p.dialConn(d.ctx, d.ep.Addr)
		took = clock.Since(start)
		if err == nil {
			p.dialTime.observe(took)
		}
	}
	if p.hooks.DialDone != nil {
		emit(p, p.hooks.DialDone, DialDoneEvent{Pool: p.name, ConnID: d.id, Address: d.addr(p), Duration: took, Err: err})
	}
	if err != nil {
		p.emitDialFailed(&d) // before the Get it was for learns of the failure
	}
	var pc *poolConn
	if err == nil {
		pc = p.newPoolConn(nc, d)
	}

	p.mu.Lock()
	if d.forWaiterLocked() {
		d.e.Value.dialing = false
	} else {
		d.e = nil // from here on, under this hold of mu, d.e is its waiter's record
	}
	if d.slot != nil { // it got no slot under the group's cap
		p.slotWaitOverLocked(&d)
	}
	streak := p.dialOverLocked(&d, pc, !held)
	switch {
	case skipped, err != nil && p.closed.Load():
		// Failed because the pool closed, or not needed: no backoff, no
		// waiter to fail. A Get that queued meanwhile without a dial
		// (its pool at its cap) gets one now.
		p.dialErrors++
		p.slotFreedLocked()
		p.mu.Unlock()
	case err != nil:
		p.dialFailed(err, d)
	default:
		p.dialed(pc, d, streak)
	}
}

// dialed takes a fresh conn into the pool: to the waiter it was dialed
// for, or to whoever offer finds, or closed if the pool closed or was
// reset meanwhile. streak is the run of failed dials to its address that
// it ended (dialOverLocked). mu must be held; dialed releases it.
func (p *Pool) dialed(pc *poolConn, d dialOp, streak int) {
	p.dials++
	ep := d.ep
	recovered := p.lastDialErr
	p.failStreak, p.lastDialErr = 0, nil
	// An unwanted conn (ledger.go) is closed; its waiter, if any, stays
	// queued for another dial (elsewhere, if its address is gone or
	// ejected).
	reason := p.fate(pc, atDialed)
	switch {
	case reason != keep:
	case d.e != nil && p.dequeueLocked(d.e):
		p.deliverLocked(d.e, pc, fromDial)
	default:
		reason = p.offer(pc, fromDial)
	}
	if reason != keep {
		p.moveLocked(pc, heldClosing)
	}
	p.slotFreedLocked()
	p.mu.Unlock()

	if reason != keep {
		p.closeConn(pc, reason)
	}
	if streak > 0 {
		p.log.Info("connpool: dial recovered", "address", ep.Addr, "failed_dials", streak, "last_error", recovered)
	}
}

// dialFailed records a failed dial, starts or extends its address's
// backoff, and fails the waiter the dial was for, unless another address
// can be dialed for it: the waiter then stays queued and dispatchLocked
// dials for it there. mu must be held; dialFailed releases it.
func (p *Pool) dialFailed(err error, d dialOp) {
	p.dialErrors++
	p.failStreak++
	p.lastDialErr = err
	now := p.now()
	ep := d.ep
	streak, pause := p.endpointDialFailedLocked(ep, now)
	if d.e != nil && !p.addrs.OthersDialable(ep, now) && p.dequeueLocked(d.e) {
		p.failLocked(d.e, err)
	}
	p.dispatchLocked()
	p.resolveSoonLocked(now)
	p.mu.Unlock()
	p.wakeMaintainer() // to retry warming when the backoff ends
	if streak == 1 {
		p.log.Warn("connpool: dial failed; backing off", "address", ep.Addr, "error", err, "retry_in", time.Duration(pause))
	}
}

// dialConn calls the dialer under its own bound: it keeps the values of
// parent but not its cancellation, ends at the dial timeout, and ends when
// the pool closes. The caller's deadline neither cuts it short nor is
// extended by it: a caller that stops waiting just leaves.
func (p *Pool) dialConn(parent context.Context, address string) (nc net.Conn, err error) {
	ctx := context.WithoutCancel(parent)
	var cancel context.CancelFunc
	if p.cfg.dialTimeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, p.cfg.dialTimeout)
	} else {
		ctx, cancel = context.WithCancel(ctx)
	}
	defer cancel()
	stop := context.AfterFunc(p.ctx, cancel)
	defer stop()
	nc, err = p.cfg.dialer(ctx, p.network, address)
	where := address
	if address != p.address {
		where += " (" + p.address + ")"
	}
	switch {
	case err != nil:
		if nc != nil {
			_ = nc.Close()
		}
		return nil, &dialError{network: p.network, where: where, dialed: address, err: err}
	case nc == nil:
		return nil, &dialError{network: p.network, where: where, dialed: address, err: errNilConn}
	}
	return nc, nil
}

// dialError is a failed dial. It names the network and address once: the
// "dial tcp 10.0.0.7:5432" of a [net.OpError] for the same address is not
// repeated, though the error still unwraps to it. Its type tells a Get
// that failed to dial from the pool's other failures (getFailure),
// whatever the dialer's error wraps.
type dialError struct {
	network string
	where   string // the address dialed, and the pool's own if it differs
	dialed  string
	err     error
}

func (e *dialError) Error() string {
	msg := e.err.Error()
	if op, ok := e.err.(*net.OpError); ok && op.Op == "dial" && op.Net == e.network && op.Err != nil &&
		(op.Addr == nil || op.Addr.String() == e.dialed) {
		msg = op.Err.Error()
	}
	return "connpool: dial " + e.network + " " + e.where + ": " + msg
}

func (e *dialError) Unwrap() error { return e.err }

var errNilConn = errors.New("dialer returned neither a conn nor an error")

// newPoolConn wraps nc, the conn dial d made.
func (p *Pool) newPoolConn(nc net.Conn, d dialOp) *poolConn {
	now := p.now()
	pc := &poolConn{pool: p, nc: nc, check: sockcheck.New(nc), id: d.id, gen: d.gen, ep: d.ep, born: now, lastUsed: now,
		ownWrappers: p.cfg.leakThreshold > 0}
	if life := p.cfg.maxLifetime; life > 0 {
		life -= rand.N(p.cfg.lifetimeJitter + 1)
		pc.expires = now + int64(life)
	}
	return pc
}
