package connpool

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"time"

	"github.com/connpool/connpool/internal/sockcheck"
	"github.com/connpool/connpool/internal/waitq"
)

// canDialLocked reports whether the cap and the dial limit allow a dial.
func (p *Pool) canDialLocked() bool {
	return p.numOpen < p.cfg.maxConns && p.numDialing < p.cfg.maxConnecting
}

// backingOffLocked reports whether dials are paused after failures.
func (p *Pool) backingOffLocked(now int64) bool {
	return p.failStreak > 0 && now < p.backoffUntil
}

func (p *Pool) backoffErrorLocked(now int64) error {
	return fmt.Errorf("connpool: %s unreachable, retrying in %v after %d failed dials: %w",
		p.address, time.Duration(p.backoffUntil-now).Round(time.Millisecond), p.failStreak, p.lastDialErr)
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
				e.Value.ch <- delivery{err: p.backoffErrorLocked(now)}
			} else {
				p.startDialLocked(e, false)
			}
		}
		e = next
	}
}

// startDialLocked takes a permit and a dial slot and dials in the
// background, on behalf of waiter e if it is not nil, or for warming.
func (p *Pool) startDialLocked(e *waitq.Elem[waiter], warm bool) {
	p.addOpenLocked(1)
	p.numDialing++
	ctx := p.ctx
	if warm {
		p.numWarming++
	}
	if e != nil {
		e.Value.dialing = true
		ctx = e.Value.ctx
	}
	p.wg.Add(1)
	go p.dial(ctx, e, warm)
}

// dial opens a conn and delivers it: to the waiter it was started for if
// that one still waits, else to the first waiter, else to the idle stack.
// A failed dial's error goes to its own waiter only; other waiters keep
// waiting for a returned conn or another dial.
func (p *Pool) dial(parent context.Context, e *waitq.Elem[waiter], warm bool) {
	defer p.wg.Done()
	var nc net.Conn
	err := p.acquireGroupSlot()
	limited := err != nil // the pool closed while waiting for the group's cap
	if !limited {
		nc, err = p.dialConn(parent)
	}
	var pc *poolConn
	if err == nil {
		pc = p.newPoolConn(nc)
	}

	p.mu.Lock()
	p.numDialing--
	if warm {
		p.numWarming--
	}
	if e != nil {
		e.Value.dialing = false
	}
	if p.closed.Load() || limited {
		// No new dial can start once closed, so the permit may go first.
		p.addOpenLocked(-1)
		if !limited {
			p.releaseGroupSlot()
		}
		if nc != nil {
			p.dials++
			p.closes[closePool]++
		}
		p.mu.Unlock()
		if nc != nil {
			_ = nc.Close()
		}
		return
	}
	if err != nil {
		p.dialFailedLocked(err, e)
		return
	}
	p.dials++
	recovered, streak := p.lastDialErr, p.failStreak
	p.failStreak, p.lastDialErr = 0, nil
	p.all[pc] = struct{}{}
	kept := true
	if e != nil && p.dequeueLocked(e) {
		p.deliverLocked(e, pc, true)
	} else if kept = p.giveLocked(pc, true, true); !kept {
		p.numClosing++
	}
	p.dispatchLocked()
	p.wantWarmLocked()
	p.mu.Unlock()

	if !kept {
		p.destroy(pc, &p.numClosing, closeMaxIdle, false)
	}
	if streak > 0 {
		p.log.Info("connpool: dial recovered", "failed_dials", streak, "last_error", recovered)
	}
}

// dialFailedLocked records a failed dial, starts or extends the backoff,
// and fails the waiter the dial was for. It releases mu.
func (p *Pool) dialFailedLocked(err error, e *waitq.Elem[waiter]) {
	p.addOpenLocked(-1)
	p.releaseGroupSlot()
	p.dialErrors++
	p.failStreak++
	streak := p.failStreak
	p.lastDialErr = err
	now := p.now()
	pause := p.backoff(streak)
	p.backoffUntil = now + int64(pause)
	if e != nil && p.dequeueLocked(e) {
		e.Value.ch <- delivery{err: err}
	}
	p.dispatchLocked()
	p.mu.Unlock()
	p.wakeMaintainer() // to retry warming when the backoff ends
	if streak == 1 {
		p.log.Warn("connpool: dial failed; backing off", "error", err, "retry_in", pause)
	}
}

// dialConn calls the dialer under its own bound: it keeps the values of
// parent but not its cancellation, ends at the dial timeout, and ends when
// the pool closes. The caller's deadline neither cuts it short nor is
// extended by it: a caller that stops waiting just leaves.
func (p *Pool) dialConn(parent context.Context) (nc net.Conn, err error) {
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
	nc, err = p.cfg.dialer(ctx, p.network, p.address)
	switch {
	case err != nil:
		if nc != nil {
			_ = nc.Close()
		}
		return nil, fmt.Errorf("connpool: dial %s %s: %w", p.network, p.address, err)
	case nc == nil:
		return nil, fmt.Errorf("connpool: dial %s %s: %w", p.network, p.address, errNilConn)
	}
	return nc, nil
}

var errNilConn = errors.New("dialer returned neither a conn nor an error")

func (p *Pool) newPoolConn(nc net.Conn) *poolConn {
	now := p.now()
	pc := &poolConn{pool: p, nc: nc, check: sockcheck.New(nc), lastUsed: now}
	if life := p.cfg.maxLifetime; life > 0 {
		life -= rand.N(p.cfg.lifetimeJitter + 1)
		pc.expires = now + int64(life)
	}
	return pc
}

// acquireGroupSlot takes a slot under the group's cap for a dial, when the
// pool belongs to a group that has one. It waits for as long as the pool
// is open: waiting for the cap is not a dial failure.
func (p *Pool) acquireGroupSlot() error {
	if p.cfg.limit == nil {
		return nil
	}
	return p.cfg.limit.acquire(p.ctx, p)
}

// releaseGroupSlot gives back the slot of a conn that closed or a dial
// that failed.
func (p *Pool) releaseGroupSlot() {
	if p.cfg.limit != nil {
		p.cfg.limit.release()
	}
}

// oldestIdle returns when the pool's oldest idle conn was returned, as a
// time comparable across pools: each pool's clock counts from its own
// creation. A conn the reaper has not stamped yet was returned since its
// last run; it counts as returned now.
func (p *Pool) oldestIdle() (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.idleMu.Lock()
	defer p.idleMu.Unlock()
	if p.closed.Load() || p.idle.Len() == 0 {
		return time.Time{}, false
	}
	at := p.idle.All()[0].lastUsed
	if at == 0 {
		at = p.now()
	}
	return p.epoch.Add(time.Duration(at)), true
}

// closeOldestIdle closes the pool's oldest idle conn, to make room under
// its group's cap, and reports whether there was one.
func (p *Pool) closeOldestIdle() bool {
	p.mu.Lock()
	var pc *poolConn
	ok := false
	if !p.closed.Load() {
		p.idleMu.Lock()
		pc, ok = p.idle.PopBottom()
		p.idleMu.Unlock()
	}
	if !ok {
		p.mu.Unlock()
		return false
	}
	p.numClosing++
	p.mu.Unlock()
	p.destroy(pc, &p.numClosing, closeIdle, false)
	return true
}
