package connpool

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/connpool/connpool/internal/adaptive"
	"github.com/connpool/connpool/internal/clock"
)

// The adaptive cap (WithAdaptiveMaxConns). Each Put on the observed path
// adds the time the conn was held to a few atomic counters; a goroutine of
// the pool's own samples them every adaptTick, asks the controller
// (package internal/adaptive, where the algorithm is documented and
// tested) for a cap, and applies it through resizeTo, the path
// SetMaxConns takes, so every guarantee of a resize holds.

// WithAdaptiveMaxConns lets the pool move its cap on open conns between
// min and max by itself, from what it measures: how long conns are held
// from Get to Put (the backend's service time, as the pool sees it), how
// many come back broken (timeouts, failed I/O), and whether Gets queue at
// the cap. It finds the concurrency beyond which the backend only queues:
//   - The cap grows while Gets wait for conns and the held time stays near
//     its baseline (the lowest recent mean, re-measured every 10s).
//   - When the held time rises past 1.05 times the baseline, beyond the
//     samples' noise, the cap is cut to the higher of the conns the
//     backend kept busy (throughput times baseline) and the cap over that
//     rise, so that a burst below the backend's capacity does not cut it
//     below the backend's concurrency.
//   - A held time can also rise because the client itself got slower (its
//     own CPU load). So while Gets wait and the held time stays high, the
//     cap is raised by half for a trial, and kept, with the baseline moved
//     up, if the backend served the extra conns; if not, the next trial
//     waits longer, unless Gets start to queue faster (the load changed).
//     The time the pool's own goroutine waited for CPU is taken out of
//     the held time.
//   - When over 20% of the returns in a window (100ms at least) are
//     broken, the cap is cut by a fifth.
//
// Cuts are bounded (at most halving every 2s) and recover at once when the
// cause passes. A cap that Gets do not reach never grows.
//
// The cap starts at [WithMaxConns] if given, which must then lie between
// min and max, else at the default of WithMaxConns (4 × GOMAXPROCS, at
// least 4) within min and max; from there it doubles each window while
// Gets queue. A cut goes no lower than the most conns recently served
// without queueing, so that noise does not dip the cap below the
// backend's concurrency. min must be at least 1, at least MinIdle, and
// at least MaxIdle if set; max at least min. [Stats] shows the current cap
// (MaxConns), the bounds and the baseline; [Hooks].MaxConnsChanged reports
// each move. [Pool.SetMaxConns] moves the cap within the bounds, and the
// controller carries on from there.
//
// It suits request/reply use, where a conn is held for one exchange of
// milliseconds to seconds: the held time is then the backend's latency.
// It does not suit conns held for a session (subscriptions, streams,
// transactions held while the caller does other work), whose held time
// says nothing of the backend, nor [Pool.DialContext], whose conns are
// never returned: DialContext on an adaptive pool fails with
// [ErrAdaptiveDialContext]. It costs a clock read on each Get and Put,
// as [WithUseTimeMetrics] does.
func WithAdaptiveMaxConns(min, max int) Option {
	return poolOption(func(c *config) { c.adaptiveMin, c.adaptiveMax, c.adaptiveSet = min, max, true })
}

// ErrAdaptiveDialContext is returned by [Pool.DialContext] on a pool with
// [WithAdaptiveMaxConns]: a DialContext conn is never returned, so its
// held time cannot drive the cap.
var ErrAdaptiveDialContext = errors.New("connpool: DialContext on a pool with WithAdaptiveMaxConns: its conns are never returned to drive the cap")

// applyAdaptive checks WithAdaptiveMaxConns against the other options and
// sets the initial cap. newConfig calls it before deriving the defaults
// that follow MaxConns.
func (c *config) applyAdaptive() {
	if !c.adaptiveSet {
		return
	}
	lo, hi := c.adaptiveMin, c.adaptiveMax
	switch {
	case lo < 1:
		c.invalid("WithAdaptiveMaxConns(%d, %d): min must be at least 1", lo, hi)
		return
	case hi < lo:
		c.invalid("WithAdaptiveMaxConns(%d, %d): max must be at least min", lo, hi)
		return
	case c.maxConnsSet && (c.maxConns < lo || c.maxConns > hi):
		c.invalid("WithMaxConns(%d) is outside WithAdaptiveMaxConns(%d, %d)", c.maxConns, lo, hi)
	case c.minIdle > lo:
		c.invalid("WithMinIdle(%d) exceeds the min of WithAdaptiveMaxConns(%d, %d)", c.minIdle, lo, hi)
	case c.maxIdleSet && c.maxIdle > lo:
		c.invalid("WithMaxIdle(%d) exceeds the min of WithAdaptiveMaxConns(%d, %d)", c.maxIdle, lo, hi)
	}
	if !c.maxConnsSet {
		// Where a user expects a pool to start: at the default cap,
		// within the bounds; not at min, from where the cap would take
		// windows of Gets timing out to grow to a load already there.
		c.maxConns = min(max(c.maxConns, lo), hi)
	}
}

// adaptTick is how often the pool samples its counters for the controller,
// whose windows are 100ms at least.
const adaptTick = 25 * time.Millisecond

// adaptiveCap is a pool's adaptive state. The counters are added to by
// every Put of the observed path, from any goroutine, and swapped out by
// the adapt goroutine; the rest is that goroutine's alone, but baseline,
// which Stats reads.
type adaptiveCap struct {
	returns atomic.Int64
	held    atomic.Int64 // nanoseconds
	heldSq  atomic.Int64 // microseconds squared
	drops   atomic.Int64
	_       [64]byte // the counters above are written by every Put; keep them off the fields below

	baseline atomic.Int64 // the controller's baseline, in nanoseconds, for Stats
	// probeFrom is clock.Ticks when the controller's probe window began,
	// or 0 outside probes: record leaves out conns lent before it (see
	// adaptive.Sample). Written by the adapt goroutine, read by Puts.
	probeFrom atomic.Int64

	// Owned by the adapt goroutine.
	ctl       *adaptive.Controller
	applied   int   // the cap it last saw or set
	lastWaits int64 // Pool.waitCount when it last sampled
}

func newAdaptiveCap(cfg *config) *adaptiveCap {
	if !cfg.adaptiveSet {
		return nil
	}
	return &adaptiveCap{
		ctl:     adaptive.New(adaptive.DefaultConfig(cfg.adaptiveMin, cfg.adaptiveMax, cfg.maxConns)),
		applied: cfg.maxConns,
	}
}

// record adds a conn lent at lentAt (clock.Ticks) and returned after
// being held for held, broken or not; during a probe, only if it was lent
// after the probe began.
func (a *adaptiveCap) record(held time.Duration, lentAt int64, broken bool) {
	if from := a.probeFrom.Load(); from != 0 && lentAt < from {
		return
	}
	a.returns.Add(1)
	a.held.Add(int64(held))
	us := int64(held / time.Microsecond)
	a.heldSq.Add(us * us)
	if broken {
		a.drops.Add(1)
	}
}

// adapt is the adaptive cap's goroutine: it samples and applies the
// controller's cap every adaptTick, until the pool closes. It sleeps
// adaptTick from the end of one sample to the next, and how much longer
// it slept is the process's own scheduling delay (adaptive.Sample.Lag):
// a process starved of CPU holds every conn longer, with no part of it
// the backend's.
func (p *Pool) adapt() {
	defer p.wg.Done()
	t := time.NewTimer(adaptTick)
	defer t.Stop()
	slept := time.Now()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
			p.adaptOnce(max(time.Since(slept)-adaptTick, 0))
			slept = time.Now()
			t.Reset(adaptTick)
		}
	}
}

// adaptOnce takes one sample, the process having woken lag late for it,
// and moves the cap if the controller says so. It takes mu (and idleMu,
// for the conns in use).
func (p *Pool) adaptOnce(lag time.Duration) {
	a := p.adaptive
	s := adaptive.Sample{
		Returns: a.returns.Swap(0),
		Held:    time.Duration(a.held.Swap(0)),
		HeldSq:  a.heldSq.Swap(0),
		Drops:   a.drops.Swap(0),
		Lag:     lag,
	}
	p.mu.Lock()
	if p.closed.Load() {
		p.mu.Unlock()
		return
	}
	cur := p.cfg.maxConns
	p.idleMu.Lock()
	inUse := p.inUseIdleLocked()
	p.idleMu.Unlock()
	s.Queued = p.waitCount - a.lastWaits
	s.Saturated = s.Queued != 0 || p.waiters.Len() > 0 || inUse >= cur
	a.lastWaits = p.waitCount
	p.mu.Unlock()

	if cur != a.applied { // SetMaxConns moved it
		a.ctl.SetLimit(cur)
		a.applied = cur
	}
	n, why := a.ctl.Observe(time.Duration(p.now()), s)
	a.baseline.Store(int64(a.ctl.Baseline()))
	if !a.ctl.Probing() {
		a.probeFrom.Store(0)
	} else if a.probeFrom.Load() == 0 { // the probe's first tick
		a.probeFrom.Store(max(clock.Ticks(), 1))
	}
	if why == adaptive.Unchanged || n == cur {
		return
	}
	p.mu.Lock()
	if p.closed.Load() || p.cfg.maxConns != cur { // a SetMaxConns came first: its cap stands
		p.mu.Unlock()
		return
	}
	closing := p.resizeTo(n)
	p.mu.Unlock()
	a.applied = n
	p.closeConns(closing, CloseResized)
	p.emitMaxConnsChanged(cur, n, adaptiveReasons[why])
}

var adaptiveReasons = [...]MaxConnsReason{
	adaptive.Demand:  MaxConnsDemand,
	adaptive.Latency: MaxConnsLatency,
	adaptive.Drops:   MaxConnsBroken,
	adaptive.Probe:   MaxConnsProbe,
}
