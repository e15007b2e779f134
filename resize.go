package connpool

import "fmt"

// Resizing at run time. Raising MaxConns serves the queue at once: the
// waiters get dials (within MaxConnecting) in their order, before any Get
// that arrives later. Lowering it closes idle conns beyond the new cap at
// once, never interrupts a borrowed conn, and while the pool is still over
// the cap (overCap), every conn that comes back while the conns not
// already closing exceed the cap is closed (CloseResized, see ledger.go)
// and no dial starts; a dial that was in flight serves a waiter if one
// waits, else it is closed. So open never exceeds the larger of the new cap
// and what was open, less the idle conns closed, when it was lowered
// (overCapLimit); checkInvariants holds the pool to that.

// SetMaxConns changes the cap on open conns, as [WithMaxConns] sets it,
// without blocking. Raised, it serves the queued Gets at once, first come
// first served, before any that arrive later. Lowered, it closes idle
// conns beyond the new cap at once; a borrowed conn is never interrupted,
// and until the pool is within the cap, every conn that comes back is
// closed (Stats.ResizedClosed) and a dial that finishes serves a waiter
// or is closed.
//
// MaxIdle follows: a MaxIdle left to its default is MaxConns, and one that
// was set ([WithMaxIdle], [Pool.SetMaxIdle]) is kept, acting as n while n
// is lower, and back in force when MaxConns is raised again. So is
// MaxConnecting ([WithMaxConnecting]). n must be at least 1 and at least
// MinIdle: lower MinIdle first with [Pool.SetMinIdle]. A bad n returns an
// error wrapping [ErrInvalidOption] and changes nothing; after Close,
// SetMaxConns returns [ErrClosed].
//
// On a pool with [WithAdaptiveMaxConns], n must lie within its bounds: the
// cap moves to n at once, and the adaptive cap carries on from there (it
// keeps its baseline), so n holds only while what the pool measures agrees.
// Each change is reported to [Hooks].MaxConnsChanged, with [MaxConnsSet].
func (p *Pool) SetMaxConns(n int) error {
	var closing []*poolConn
	p.mu.Lock()
	err := p.resizable()
	old := p.cfg.maxConns
	switch {
	case err != nil:
	case p.cfg.adaptiveSet && (n < p.cfg.adaptiveMin || n > p.cfg.adaptiveMax):
		err = invalidSet("SetMaxConns(%d) is outside WithAdaptiveMaxConns(%d, %d)", n, p.cfg.adaptiveMin, p.cfg.adaptiveMax)
	case n < 1:
		err = invalidSet("SetMaxConns(%d): must be at least 1", n)
	case n < p.cfg.minIdle:
		err = invalidSet("SetMaxConns(%d) is below MinIdle (%d): lower it first with SetMinIdle", n, p.cfg.minIdle)
	default:
		closing = p.resizeTo(n)
	}
	p.mu.Unlock()
	p.closeConns(closing, CloseResized)
	if err == nil && n != old {
		p.emitMaxConnsChanged(old, n, MaxConnsSet)
	}
	return err
}

// resizeTo sets the cap and what follows it (MaxIdle and
// MaxConnecting, each the value wanted bounded by the cap), serves the
// queue when it grew, and returns the idle conns to close when it shrank,
// moved to closing. mu must be held; it takes idleMu.
func (p *Pool) resizeTo(n int) []*poolConn {
	p.idleMu.Lock()
	p.cfg.maxConns = n
	if p.cfg.maxIdleSet {
		p.cfg.maxIdle = min(p.cfg.maxIdleWanted, n)
	} else {
		p.cfg.maxIdle = n
	}
	p.cfg.maxConnecting = min(p.cfg.connectingWanted, n)
	p.idleMu.Unlock()
	closing := p.evictIdle(oldest(p.numOpen - n))
	// The idle conns taken are open until the caller has closed them,
	// after unlocking: till then the pool is over the cap too, so that a
	// conn returned meanwhile is not kept above it.
	if p.numOpen > n {
		p.overCap.Store(true)
		p.overCapLimit = p.numOpen // falls as they close: see checkUnderCapLocked
	} else {
		p.checkUnderCapLocked()
	}
	p.dispatchLocked()
	p.nudgeWarmer()
	return closing
}

// checkUnderCapLocked ends the pool's time over a lowered cap once open is
// within it, and otherwise keeps overCapLimit at what is open.
func (p *Pool) checkUnderCapLocked() {
	if !p.overCap.Load() {
		return
	}
	if p.numOpen <= p.cfg.maxConns {
		p.overCap.Store(false)
		p.overCapLimit = 0
		return
	}
	p.overCapLimit = min(p.overCapLimit, p.numOpen)
}

// SetMinIdle changes the idle conns kept ready, as [WithMinIdle] sets it,
// without blocking: warming starts at once when it grew. n must be between
// 0 and MaxIdle (as MaxConns bounds it): a bad n returns an error wrapping
// [ErrInvalidOption] and changes nothing. After Close it returns
// [ErrClosed].
func (p *Pool) SetMinIdle(n int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.resizable(); err != nil {
		return err
	}
	if n < 0 || n > p.cfg.maxIdle {
		return invalidSet("SetMinIdle(%d): must be between 0 and MaxIdle (%d, with MaxConns %d)", n, p.cfg.maxIdle, p.cfg.maxConns)
	}
	p.idleMu.Lock()
	p.cfg.minIdle = n
	p.idleMu.Unlock()
	p.wakeMaintainer()
	return nil
}

// SetMaxIdle changes the cap on idle conns, as [WithMaxIdle] sets it,
// without blocking: idle conns beyond it close at once (CloseMaxIdle). n
// must be between MinIdle and MaxConns: a bad n returns an error wrapping
// [ErrInvalidOption] and changes nothing. From then on MaxIdle no longer
// follows MaxConns: a later [Pool.SetMaxConns] below n bounds it to the
// new cap, and one back above n restores n. After Close it returns
// [ErrClosed].
func (p *Pool) SetMaxIdle(n int) error {
	var closing []*poolConn
	p.mu.Lock()
	err := p.resizable()
	switch {
	case err != nil:
	case n < p.cfg.minIdle || n > p.cfg.maxConns:
		err = invalidSet("SetMaxIdle(%d): must be between MinIdle (%d) and MaxConns (%d)", n, p.cfg.minIdle, p.cfg.maxConns)
	default:
		p.idleMu.Lock()
		p.cfg.maxIdle, p.cfg.maxIdleWanted, p.cfg.maxIdleSet = n, n, true
		p.idleMu.Unlock()
		closing = p.evictIdle(p.beyond(n))
	}
	p.mu.Unlock()
	p.closeConns(closing, CloseMaxIdle)
	return err
}

// resizable returns ErrClosed once the pool is closed.
func (p *Pool) resizable() error {
	if p.closed.Load() {
		return ErrClosed
	}
	return nil
}

// invalidSet builds the error of a Set call with a bad value.
func invalidSet(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...)
}
