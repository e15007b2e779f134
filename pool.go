package connpool

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/connpool/connpool/internal/idlestack"
	"github.com/connpool/connpool/internal/waitq"
	"github.com/connpool/connpool/internal/yieldlock"
)

// Pool is a pool of connections to one network address. It is safe for
// concurrent use. Create one with [New]; release it with [Pool.Close] or
// [Pool.Shutdown].
type Pool struct {
	// idleMu guards the idle stack and the fields below it: all that a Get
	// or a Put of an idle conn touches, so that neither takes mu when no
	// Get waits. Padding keeps it off the other fields' cache lines. Lock
	// order: mu, then idleMu. idleMu is held for a few steps at a time,
	// never across I/O, a channel operation or a callback; only the
	// maintainer's sweeps hold it for a walk over the idle stack.
	//
	// A yieldlock rather than a sync.Mutex: with more threads than cores,
	// a sync.Mutex parks its contenders and the hand-over costs
	// microseconds; see package yieldlock. It yields only while GOMAXPROCS
	// exceeds the CPU count, which New and each maintainer run check.
	idleMu yieldlock.Mutex
	// idle holds the idle conns, most recently returned on top. A conn is
	// pushed only when no Get is queued, or about to queue (queued == 0),
	// or by a Put that then serves the queue (see putIdle); the exception
	// is a Get whose checks rejected several idle conns and that waits on
	// its own fresh dial.
	idle     idlestack.Stack[*poolConn]
	idlePops int64 // Gets that took an idle conn, before vetting
	_        [64]byte

	// Read by every Get and Put, written only under mu: on a line of
	// their own, shared by every core that reads them.
	closed atomic.Bool
	// queued is waiters.Len() plus the Gets that hold mu and are about to
	// queue. A Get adds itself before it looks at the idle stack, and a
	// Put that pushed a conn reads it after; so one of the two sees the
	// other (see putIdle).
	queued atomic.Int32
	// openHint is numOpen, stored under mu, so that a Get that leaves
	// fewer than MinIdle conns idle can tell without mu whether the cap
	// leaves room to warm more.
	openHint atomic.Int32
	_        [64]byte

	// mu guards the fields below it; it is never held across I/O, a dial
	// or a user callback.
	mu      sync.Mutex
	waiters waitq.Queue[waiter] // FIFO; served by direct hand-off under mu

	// Every permit is in exactly one of these states:
	//   numOpen = numDialing + in use + idle.Len() + numChecking + numClosing
	// and numOpen <= cfg.maxConns. In use (borrowed, or handed to a waiter
	// that has not taken it yet) is not counted but derived, so that Get
	// and Put need not update a counter under mu; see inUseLocked.
	// numWarming counts the dials of numDialing that the maintainer
	// started for MinIdle.
	numOpen     int
	numDialing  int
	numWarming  int
	numChecking int // out of the idle stack for a background health check
	numClosing  int // taken out of the idle stack to be closed

	all     map[*poolConn]struct{} // every open conn
	drained chan struct{}          // made by close; closed, and set to nil, once no conn is borrowed or closing

	// Dial failures: a streak of consecutive failures sets a backoff during
	// which Gets that need a dial fail fast with lastDialErr.
	failStreak   int
	lastDialErr  error
	backoffUntil int64 // pool clock

	// Counters; Stats adds them up.
	dials       int64
	dialErrors  int64
	idleRejects int64 // Gets' idle conns that the vetting closed
	waitCount   int64
	timeouts    int64
	closes      [numCloseReasons]int64

	// Not guarded.
	sweepWanted atomic.Bool // a checkout found a dead conn: peek at every idle conn
	handoffHits atomic.Int64
	misses      atomic.Int64
	waitNanos   atomic.Int64

	// Read-only after New.
	network, address string
	cfg              config
	log              *slog.Logger
	epoch            time.Time          // the pool clock: monotonic nanoseconds since epoch
	ctx              context.Context    // ends when the pool closes; parent of background dials and checks
	cancel           context.CancelFunc // ends ctx
	wake             chan struct{}      // capacity 1: asks the maintainer to run now
	wg               sync.WaitGroup     // the maintainer, and every dial and check in flight
}

// waiter is a Get waiting in the queue for a conn.
type waiter struct {
	ch         chan delivery   // capacity 1: sent to exactly once, under mu, by whoever dequeues the waiter
	ctx        context.Context // the Get's context, whose values a dial started for it sees
	dialing    bool            // a dial started on this waiter's behalf has not finished
	unusedOnly bool            // a DialContext caller: takes only a conn never handed out
}

// delivery is what a waiter is served: a conn, in a new wrapper, or an
// error.
type delivery struct {
	c     *Conn
	fresh bool // just dialled: never idle, so not vetted
	err   error
}

// deliverLocked serves waiter e, already out of the queue, with pc.
func (p *Pool) deliverLocked(e *waitq.Elem[waiter], pc *poolConn, fresh bool) {
	e.Value.ch <- delivery{c: pc.newWrapper(), fresh: fresh}
}

// dequeueLocked takes e out of the queue, if it is still there.
func (p *Pool) dequeueLocked(e *waitq.Elem[waiter]) bool {
	if !p.waiters.Remove(e) {
		return false
	}
	p.queued.Add(-1)
	return true
}

// popWaiterLocked takes the first waiter out of the queue, or returns nil.
func (p *Pool) popWaiterLocked() *waitq.Elem[waiter] {
	e := p.waiters.PopFront()
	if e != nil {
		p.queued.Add(-1)
	}
	return e
}

// addOpenLocked adds delta to numOpen.
func (p *Pool) addOpenLocked(delta int) {
	p.numOpen += delta
	p.openHint.Store(int32(p.numOpen))
}

// inUseLocked returns how many conns are borrowed, or handed to a waiter
// that has not taken them yet. mu and idleMu must be held.
func (p *Pool) inUseLocked() int {
	return p.numOpen - p.numDialing - p.idle.Len() - p.numChecking - p.numClosing
}

// closeReason says why a conn was closed; each has a Stats counter.
type closeReason int

const (
	keep closeReason = iota // not closed
	closeIdle
	closeLifetime
	closeUnhealthy
	closeBroken
	closeMaxIdle
	closeReleased
	closePool
	numCloseReasons
)

// maxRejects is how many idle conns in a row one Get lets the checkout peek
// reject before it stops trusting the idle set and dials a fresh conn.
const maxRejects = 3

// New returns a pool of connections to address on network ("tcp",
// "tcp4", "unix", or whatever the dialer understands). It validates the
// options and returns a nil pool and an error wrapping [ErrInvalidOption],
// naming each bad option, when they are wrong. New does not dial: warming
// starts in the background.
func New(network, address string, opts ...Option) (*Pool, error) {
	cfg, err := newConfig(network, address, opts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pool{
		network: network,
		address: address,
		cfg:     cfg,
		log:     cfg.logger.With("network", network, "address", address),
		epoch:   time.Now(),
		ctx:     ctx,
		cancel:  cancel,
		wake:    make(chan struct{}, 1),
		all:     make(map[*poolConn]struct{}),
	}
	p.idleMu.SetYield(yieldlock.Oversubscribed())
	p.wg.Add(1)
	go p.maintain()
	return p, nil
}

// now reads the pool clock. time.Since on a monotonic epoch reads only the
// monotonic clock, half the cost of time.Now.
func (p *Pool) now() int64 { return int64(time.Since(p.epoch)) }

// Get returns a conn, in this order of preference: the most recently
// returned idle conn that passes its checks, a conn from a new dial, or the
// first conn returned or dialled while the Get waits at the cap. Waiters
// are served first come, first served.
//
// When ctx ends first, Get returns an error that wraps ctx's error and
// says what the pool was doing. A dial started for the Get is not
// cancelled with it: it runs to its own timeout and its conn joins the
// pool. A Get that must dial and fails returns the dial error; during the
// backoff after failed dials it returns the last one at once. After Close,
// Get returns [ErrClosed].
func (p *Pool) Get(ctx context.Context) (*Conn, error) { return p.get(ctx, 0) }

// get implements Get; flags are the initial state bits of the Conn.
func (p *Pool) get(ctx context.Context, flags uint32) (*Conn, error) {
	if ctx.Err() != nil {
		return nil, p.waitFailed(ctx)
	}
	rejects := 0
	if flags == 0 {
		for ; rejects < maxRejects; rejects++ {
			c := p.popIdle()
			if c == nil {
				break
			}
			if p.vetIdle(c, 0) {
				return c, nil
			}
		}
	}
	unusedOnly := flags&connDestroyOnClose != 0
	for {
		p.mu.Lock()
		if p.closed.Load() {
			p.mu.Unlock()
			return nil, ErrClosed
		}
		p.queued.Add(1) // before looking at the idle stack: see putIdle
		c, retired := p.takeIdleLocked(unusedOnly, rejects < maxRejects)
		if c != nil || retired != nil {
			p.queued.Add(-1)
			if retired != nil {
				p.numClosing++
			}
			p.wantWarmLocked()
			p.mu.Unlock()
			if retired != nil {
				p.destroy(retired, &p.numClosing, closeIdle, false)
			} else if p.vetIdle(c, flags) {
				return c, nil
			} else {
				rejects++
			}
			continue
		}
		d, err := p.waitLocked(ctx, unusedOnly)
		if err != nil {
			return nil, err
		}
		c = d.c
		if unusedOnly && c.pc.used {
			panic("connpool: a used conn was handed to a DialContext caller")
		}
		if d.fresh {
			p.misses.Add(1)
			return checkout(c, flags), nil
		}
		// A returned conn handed straight over is vetted like any other.
		if !p.healthy(c.pc, true) {
			p.destroy(c.pc, nil, closeUnhealthy, false)
			rejects++
			continue
		}
		p.handoffHits.Add(1)
		return checkout(c, flags), nil
	}
}

// TryGet returns an idle conn that passes its checks, or [ErrNoIdleConn]
// at once. It never waits and never dials in the caller's path (it does
// nudge the warmer when MinIdle is set). After Close it returns
// [ErrClosed].
func (p *Pool) TryGet() (*Conn, error) {
	for {
		c := p.popIdle()
		if c == nil {
			p.mu.Lock()
			if p.closed.Load() {
				p.mu.Unlock()
				return nil, ErrClosed
			}
			c, _ = p.takeIdleLocked(false, true)
			p.wantWarmLocked()
			p.mu.Unlock()
			if c == nil {
				return nil, ErrNoIdleConn
			}
		}
		if p.vetIdle(c, 0) {
			return c, nil
		}
	}
}

// vetIdle checks a conn just taken from the idle stack. It readies c for
// its borrower, or closes the conn and reports false.
func (p *Pool) vetIdle(c *Conn, flags uint32) bool {
	if !p.healthy(c.pc, true) {
		p.destroy(c.pc, nil, closeUnhealthy, true)
		return false
	}
	checkout(c, flags)
	return true
}

// healthy runs the checkout peek. The time-based checks (idle timeout, max
// lifetime) are not needed here: the maintainer closes idle conns at their
// deadlines, and flags borrowed ones to be closed on return. onGet says
// the peek is the checkout's, which WithLivenessCheck can turn off; the
// maintainer's sweep peeks regardless.
//
// A conn the peer closed or reset usually means the server restarted or a
// middlebox dropped its flows, so the other idle conns are likely dead too:
// a checkout that finds one asks the maintainer to sweep them all now,
// rather than leave each to a later Get or the next background check.
func (p *Pool) healthy(pc *poolConn, onGet bool) bool {
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

func checkout(c *Conn, flags uint32) *Conn {
	if !c.pc.used { // write only on change: the line may be shared with another core
		c.pc.used = true
	}
	if flags != 0 {
		c.state.Store(flags)
	}
	return c
}

// waitLocked queues the Get, starting a dial for it when the cap and the
// dial limit allow, and waits for a delivery or the end of ctx; with
// unusedOnly it is served only conns never handed out. It is called with
// mu held and the Get counted in queued, and returns with mu released.
func (p *Pool) waitLocked(ctx context.Context, unusedOnly bool) (delivery, error) {
	e := &waitq.Elem[waiter]{Value: waiter{ch: make(chan delivery, 1), ctx: ctx, unusedOnly: unusedOnly}}
	counted := false
	if p.canDialLocked() {
		if now := p.now(); p.backingOffLocked(now) {
			err := p.backoffErrorLocked(now)
			p.queued.Add(-1)
			p.mu.Unlock()
			return delivery{}, err
		}
		p.waiters.PushBack(e)
		p.startDialLocked(e, false)
	} else {
		p.waiters.PushBack(e)
		p.waitCount++
		counted = true
	}
	p.mu.Unlock()

	var start int64
	if counted {
		start = p.now()
		defer func() { p.waitNanos.Add(p.now() - start) }()
	}
	done := ctx.Done()
	if done == nil { // a context that never ends: a plain receive is cheaper than a select
		d := <-e.Value.ch
		return d, d.err
	}
	select {
	case d := <-e.Value.ch:
		return d, d.err
	case <-done:
	}
	p.mu.Lock()
	removed := p.dequeueLocked(e)
	p.mu.Unlock()
	if !removed {
		// Served at the instant ctx ended: the delivery is in the channel.
		if d := <-e.Value.ch; d.c != nil {
			p.putBack(d.c.pc, nil, d.fresh, true)
		}
	}
	return delivery{}, p.waitFailed(ctx)
}

// waitFailed counts a Get whose context ended and builds its error.
func (p *Pool) waitFailed(ctx context.Context) error {
	p.mu.Lock()
	p.timeouts++
	p.idleMu.Lock()
	state := fmt.Sprintf("in use %d, idle %d, dialing %d, waiting %d, max %d",
		p.inUseLocked(), p.idle.Len()+p.numChecking, p.numDialing, p.waiters.Len(), p.cfg.maxConns)
	p.idleMu.Unlock()
	if p.failStreak > 0 {
		state += fmt.Sprintf(", last dial error: %v", p.lastDialErr)
	}
	p.mu.Unlock()
	return newWaitError(ctx, p.address, state)
}

// Put returns c to the pool; c.Close does the same. The conn goes to the
// first waiter, or back to the idle stack, or is closed if it is broken
// (a failed Read or Write, [Conn.MarkUnusable]), past its max lifetime,
// beyond MaxIdle, or the pool is closed. After Put, c is dead to its
// holder. Put returns [ErrConnReturned] for a conn already returned and
// [ErrForeignConn] for a nil conn or one from another pool.
func (p *Pool) Put(c *Conn) error {
	if c == nil || c.pc == nil || c.pc.pool != p {
		return ErrForeignConn
	}
	return p.release(c)
}

func (p *Pool) release(c *Conn) error {
	old := c.state.Or(connReturned)
	if old&connReturned != 0 {
		return ErrConnReturned
	}
	pc := c.pc
	if old&connExposed != 0 && pc.check != nil {
		pc.check.Share()
	}
	switch {
	case old&connDestroyOnClose != 0:
		p.destroy(pc, nil, closeReleased, false)
	case old&(connPoisoned|connUnusable) != 0:
		p.destroy(pc, nil, closeBroken, false)
	case old&(connDeadlineSet|connExposed) != 0 && pc.nc.SetDeadline(time.Time{}) != nil:
		// Clearing the holder's deadlines failed, or found the inner conn
		// closed through Unwrap.
		p.destroy(pc, nil, closeBroken, false)
	case !p.putIdle(pc):
		p.putBack(pc, nil, false, false)
	}
	return nil
}

// putBack gives a conn to the first waiter or the idle stack, or closes
// it. from is the counter under mu that holds pc, or nil for a conn in
// use; sorted says pc may be older than the top of the stack.
func (p *Pool) putBack(pc *poolConn, from *int, fresh, sorted bool) {
	p.mu.Lock()
	if from != nil {
		*from--
	}
	reason := closeLifetime
	if !pc.retire {
		if reason = p.offerLocked(pc, fresh, sorted); reason == keep {
			p.mu.Unlock()
			return
		}
	}
	p.numClosing++
	p.mu.Unlock()
	p.destroy(pc, &p.numClosing, reason, false)
}

// giveLocked is offerLocked for a conn that only MaxIdle can turn away,
// such as a fresh one: it reports whether the pool kept pc.
func (p *Pool) giveLocked(pc *poolConn, fresh, sorted bool) bool {
	return p.offerLocked(pc, fresh, sorted) == keep
}

// offerLocked hands pc to the first waiter that can take it, or keeps it
// idle if MaxIdle allows, and returns keep. Otherwise it returns why the
// caller must close pc, which is then counted nowhere: the pool is closed,
// MaxIdle conns are idle, or pc was used and every waiter is a DialContext
// caller, which takes only unused conns, and one of them needs pc's slot
// for its dial (kept idle, pc would hold the slot while they wait at the
// cap: the livelock TestDialContextWaitersBehindUsedConns pins).
func (p *Pool) offerLocked(pc *poolConn, fresh, sorted bool) closeReason {
	if p.closed.Load() {
		return closePool
	}
	if e := p.waiterForLocked(pc); e != nil {
		p.deliverLocked(e, pc, fresh)
		return keep
	}
	if pc.used && p.waiters.Len() > 0 && p.waitersWithoutDialLocked() > 0 {
		return closeIdle
	}
	p.idleMu.Lock()
	defer p.idleMu.Unlock()
	if p.idle.Len() >= p.cfg.maxIdle {
		return closeMaxIdle
	}
	if sorted {
		p.idle.Insert(pc, returnedBefore)
	} else {
		if pc.lastUsed != 0 {
			pc.lastUsed = 0 // returned now: the reaper stamps the time
		}
		p.idle.Push(pc)
	}
	return keep
}

// waiterForLocked takes out of the queue the first waiter that can take
// pc, and returns it, or nil: a used conn skips DialContext callers.
func (p *Pool) waiterForLocked(pc *poolConn) *waitq.Elem[waiter] {
	e := p.waiters.Front()
	for pc.used && e != nil && e.Value.unusedOnly {
		e = e.Next()
	}
	if e != nil {
		p.dequeueLocked(e)
	}
	return e
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

func returnedBefore(a, b *poolConn) bool { return a.returnedAt() < b.returnedAt() }

// destroy closes pc's socket and then frees its permit, in that order, so
// that the server has seen the close before the permit allows a new dial.
// from is the counter under mu that holds pc, or nil for a conn in use;
// rejected says pc was popped from the idle stack by a Get and failed its
// vetting.
func (p *Pool) destroy(pc *poolConn, from *int, reason closeReason, rejected bool) {
	_ = pc.nc.Close()
	p.mu.Lock()
	if from != nil {
		*from--
	}
	if rejected {
		p.idleRejects++
	}
	p.addOpenLocked(-1)
	p.releaseGroupSlot()
	delete(p.all, pc)
	p.closes[reason]++
	p.dispatchLocked()
	p.wantWarmLocked()
	p.drainedLocked()
	p.mu.Unlock()
}

// wantWarmLocked wakes the maintainer when warming is behind MinIdle and a
// dial is possible; at the cap there is nothing for it to do, and waking it
// on every Get would make it contend for mu.
// It takes idleMu for the idle count.
func (p *Pool) wantWarmLocked() {
	n := p.cfg.minIdle
	if n == 0 || p.numChecking+p.numWarming >= n || !p.canDialLocked() {
		return
	}
	p.idleMu.Lock()
	idle := p.idle.Len()
	p.idleMu.Unlock()
	if idle+p.numChecking+p.numWarming < n {
		p.wakeMaintainer()
	}
}

// wakeMaintainer asks the maintainer to run now. It never blocks.
func (p *Pool) wakeMaintainer() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}
