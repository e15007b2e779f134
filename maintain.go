package connpool

import (
	"context"
	"math"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/connpool/connpool/internal/yieldlock"
)

// maxParallelChecks bounds the background checks run at once, so that a
// sweep over many blackholed conns takes a few check timeouts, not one per
// conn, without a goroutine per conn.
const maxParallelChecks = 8

// maintain is the pool's one background goroutine. It sleeps until the
// next thing is due (a conn's idle or lifetime deadline, the health check
// interval, the end of a dial backoff, a resolve or a rebalance round) or
// until woken (warming fell behind MinIdle, a dial failed, a resolve
// answered), and returns when the pool closes.
func (p *Pool) maintain() {
	defer p.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var nextReap, nextCheck int64
	if p.cfg.checkInterval > 0 {
		nextCheck = int64(p.cfg.checkInterval)
	} else {
		nextCheck = math.MaxInt64
	}
	nextLeakScan := int64(math.MaxInt64)
	leakScan := int64(p.cfg.leakThreshold / 4)
	if p.cfg.leakThreshold > 0 {
		leakScan = max(leakScan, int64(time.Millisecond))
		nextLeakScan = leakScan
	}
	for {
		now := p.now()
		if now >= nextReap {
			nextReap = p.reap(now)
		}
		if now >= nextCheck {
			p.checkIdle(now)
			nextCheck = p.now() + int64(p.cfg.checkInterval)
		}
		if p.sweepWanted.Swap(false) {
			p.sweepDead()
		}
		p.idleMu.SetYield(yieldlock.Oversubscribed()) // GOMAXPROCS may have changed
		if now >= nextLeakScan {
			p.findLeaks()
			nextLeakScan = now + leakScan
		}
		next := min(nextReap, nextCheck, nextLeakScan, p.steer(now))
		if retry := p.warm(); retry > 0 {
			next = min(next, retry)
		}
		timer.Reset(max(time.Duration(next-p.now()), time.Millisecond))
		select {
		case <-p.ctx.Done():
			return
		case <-p.wake:
		case <-timer.C:
		}
	}
}

// idleResolution is how late, as a fraction of the idle timeout, an idle
// conn may be closed. Put does not read the clock (it costs as much as the
// rest of Put); the reaper stamps the conns returned since its last run,
// and runs at least every IdleTimeout/idleResolution, so an idle conn is
// closed after between d and d+d/8 of idleness, never before d.
const idleResolution = 8

// reap stamps newly returned idle conns, closes idle conns past their max
// lifetime and conns idle for the idle timeout (oldest first, down to
// MinIdle), and flags conns past their lifetime that are not idle to be
// closed on return. It returns when it is next due.
func (p *Pool) reap(now int64) (next int64) {
	idleTimeout := int64(p.cfg.idleTimeout)
	p.mu.Lock()
	p.idleMu.Lock()
	p.stampIdleLocked(now)
	if p.cfg.maxLifetime > 0 {
		for pc := range p.all {
			if pc.expires != 0 && now >= pc.expires {
				pc.retire = true
			}
		}
	}
	left := p.idle.Len()
	victims := p.evictIdleLocked(func(pc *poolConn) bool {
		if !pc.retire && (idleTimeout == 0 || now-pc.lastUsed < idleTimeout || left <= p.cfg.minIdle) {
			return false
		}
		left--
		return true
	})
	next = p.nextReapIdleLocked(now)
	p.idleMu.Unlock()
	p.mu.Unlock()

	for _, pc := range victims {
		reason := CloseIdle
		if pc.retire {
			reason = pc.retiredReason()
		}
		p.closeConn(pc, reason)
	}
	return next
}

// stampIdleLocked records now as the return time of the idle conns
// returned since the maintainer last ran; they sit on top of the stack,
// unstamped.
func (p *Pool) stampIdleLocked(now int64) {
	all := p.idle.All()
	for i := len(all) - 1; i >= 0 && all[i].lastUsed == 0; i-- {
		all[i].lastUsed = now
	}
}

// nextReapIdleLocked returns when reap is next due: at the latest one
// idle resolution from now, at the oldest idle conn's idle deadline (when
// above MinIdle), at the next lifetime deadline of any open conn, and, for
// conns dialed later, at the shortest lifetime they could have.
func (p *Pool) nextReapIdleLocked(now int64) int64 {
	next := int64(math.MaxInt64)
	if t := int64(p.cfg.idleTimeout); t > 0 {
		next = now + max(t/idleResolution, 1)
		if all := p.idle.All(); len(all) > p.cfg.minIdle {
			next = min(next, all[0].lastUsed+t)
		}
	}
	if p.cfg.maxLifetime > 0 {
		next = min(next, now+int64(p.cfg.maxLifetime-p.cfg.lifetimeJitter))
		for pc := range p.all {
			if !pc.retire {
				next = min(next, pc.expires)
			}
		}
	}
	return next
}

// checkIdle runs the health checker on idle conns that have been neither
// used nor checked for an interval. They leave the idle stack while they
// are checked, so no Get can take one; those that pass go back in their
// place by age, or to a waiter.
func (p *Pool) checkIdle(now int64) {
	interval := int64(p.cfg.checkInterval)
	p.mu.Lock()
	p.idleMu.Lock()
	p.stampIdleLocked(now)
	batch := p.idle.RemoveFunc(func(pc *poolConn) bool {
		return now-max(pc.lastUsed, pc.lastChecked) >= interval
	}, nil)
	p.idleMu.Unlock()
	p.moveAllLocked(batch, heldChecking)
	p.mu.Unlock()

	var g errgroup.Group
	g.SetLimit(maxParallelChecks)
	for _, pc := range batch {
		g.Go(func() error {
			p.checkOne(pc)
			return nil
		})
	}
	_ = g.Wait()
}

// checkOne runs the health checker on pc, held checking, and puts it back
// or closes it.
func (p *Pool) checkOne(pc *poolConn) {
	var start int64
	if p.hooks.HealthCheckDone != nil {
		start = p.now()
	}
	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.checkTimeout)
	deadline, _ := ctx.Deadline()
	err := pc.nc.SetDeadline(deadline)
	if err == nil {
		err = p.cfg.checker.Check(ctx, pc.nc)
	}
	if err == nil {
		err = pc.nc.SetDeadline(time.Time{})
	}
	cancel()
	if p.hooks.HealthCheckDone != nil {
		emit(p, p.hooks.HealthCheckDone, HealthCheckEvent{
			Pool: p.name, ConnID: pc.id, Duration: time.Duration(p.now() - start), Err: err,
		})
	}
	if err != nil {
		if p.ctx.Err() == nil {
			p.log.Debug("connpool: health check failed", "conn", pc.id, "error", err)
		}
		p.closeAside(pc, CloseUnhealthy)
		return
	}
	pc.lastChecked = p.now()
	p.putBack(pc, fromAside)
}

// sweepDead peeks at every idle conn that has a socket, and closes those
// the peer closed or reset, and used ones with bytes waiting. A peek takes
// a fraction of a microsecond, so the sweep runs in the maintainer itself;
// the conns are out of the idle stack only while they are peeked.
func (p *Pool) sweepDead() {
	p.mu.Lock()
	p.idleMu.Lock()
	batch := p.idle.RemoveFunc(func(pc *poolConn) bool { return pc.check != nil }, nil)
	p.idleMu.Unlock()
	p.moveAllLocked(batch, heldChecking)
	p.mu.Unlock()
	for _, pc := range batch {
		if p.healthy(pc, peekInSweep) {
			p.putBack(pc, fromAside)
		} else {
			p.closeAside(pc, CloseUnhealthy)
		}
	}
}

// warm starts dials until idle conns, conns under check and warming dials
// add up to MinIdle, as the cap, the dial limit and a group's free slots
// allow (warmSlotLocked: at a group's cap it waits to be woken); queued
// waiters come first. During a dial backoff it returns when the backoff ends, so
// the maintainer retries then; otherwise it returns 0.
func (p *Pool) warm() (retryAt int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed.Load() {
		return 0
	}
	p.dispatchLocked()
	p.idleMu.Lock()
	need := p.cfg.minIdle - (p.idle.Len() + p.numChecking + p.numWarming)
	p.idleMu.Unlock()
	if need <= 0 {
		return 0
	}
	if now := p.now(); p.backingOffLocked(now) {
		return p.backoffUntil
	}
	for ; need > 0 && p.canDialLocked() && p.warmSlotLocked(); need-- {
		p.startDialLocked(nil, dialWarm)
	}
	return 0
}
