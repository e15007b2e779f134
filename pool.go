package connpool

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/connpool/connpool/internal/admission"
	"github.com/connpool/connpool/internal/clock"
	"github.com/connpool/connpool/internal/idlestack"
	"github.com/connpool/connpool/internal/waitq"
	"github.com/connpool/connpool/internal/yieldlock"
)

// Pool is a pool of connections to one network address. It is safe for
// concurrent use. For a host name it spreads its conns over every
// address the name resolves to ([WithResolver]). Create one with [New];
// release it with [Pool.Close] or [Pool.Shutdown].
type Pool struct {
	// Lock naming: a method whose name ends in Locked is called with mu
	// held and returns with it held, and takes no other lock. One ending
	// in IdleLocked is called with both mu and idleMu held. Any other
	// method that needs mu, or takes idleMu under it, says so in its
	// first doc line.

	// idleMu guards the idle stack and the fields below it: all that a Get
	// or a Put of an idle conn touches, so that neither takes mu when no
	// Get waits (idle.go). Padding keeps it off the other fields' cache
	// lines. Lock order: mu, then idleMu. idleMu is held for a few steps
	// at a time, never across I/O, a channel operation or a callback; only
	// the maintainer's sweeps hold it for a walk over the idle stack.
	//
	// A yieldlock rather than a sync.Mutex: with more threads than cores,
	// a sync.Mutex parks its contenders and the hand-over costs
	// microseconds; see package yieldlock. It yields only while GOMAXPROCS
	// exceeds the CPU count, which New and each maintainer run check.
	idleMu   yieldlock.Mutex
	idle     idlestack.Stack[*poolConn] // most recently returned on top; who may push: see idle.go
	idlePops int64                      // Gets that took an idle conn, before vetting
	_        [64]byte

	// Read by every Get and Put, written under mu (gen under mu and
	// idleMu): on a line of their own, shared by every core that reads
	// them.
	closed atomic.Bool
	queued atomic.Int32 // waiters.Len() plus the Gets about to queue: see idle.go
	// openHint is numOpen, stored under mu, so that a Get that leaves
	// fewer than MinIdle conns idle can tell without mu whether the cap
	// leaves room to warm more.
	openHint atomic.Int32
	gen      atomic.Uint64 // Resets so far; a conn of an older generation is closed (reset.go)
	overCap  atomic.Bool   // open > MaxConns after the cap was lowered: returned conns close (resize.go)
	observed bool          // read-only: Gets and Puts have hooks to call or loans to record, not the plain path
	timeUse  bool          // read-only: WithUseTimeMetrics; the plain path stamps Gets and times Puts (stampUse)
	adaptive *adaptiveCap  // read-only pointer, nil unless WithAdaptiveMaxConns; its counters are atomic (adaptive.go)
	_        [64]byte

	// mu guards the fields below it; it is never held across I/O, a dial
	// or a user callback.
	mu          sync.Mutex
	waiters     waitq.Queue[waiter] // FIFO; served by direct hand-off under mu (wait.go)
	freeWaiters sync.Pool           // of *waitq.Elem[waiter], recycled (wait.go)

	// overload is WithQueuePolicy's controller, which orders and sheds
	// the waiters; nil: first come, first served (overload.go).
	overload *admission.Controller

	// The custody ledger's counts (ledger.go), changed only there:
	//   numOpen = numDialing + lent + idle.Len() + numChecking + numClosing
	// and numOpen <= cfg.maxConns; lent is derived (inUseIdleLocked).
	// numWarming counts the dials of numDialing that the maintainer
	// started for MinIdle.
	numOpen     int
	numDialing  int
	numWarming  int
	numChecking int
	numClosing  int
	// numGroupWaiting counts the dials of numDialing waiting for a slot
	// under the group's cap (group.go): not in flight yet.
	numGroupWaiting int

	all map[*poolConn]struct{} // every open conn
	// overCapLimit is, while overCap is set, the most conns that may be
	// open: those open when the cap was lowered, less the idle ones it
	// closed. It only falls, as conns close, until open is within the cap.
	overCapLimit int
	drained      chan struct{} // made by close; closed, and set to nil, once no conn is borrowed or closing
	clients      clientHold    // the conns DialContext clients hold (dialcontext.go)
	nextID       uint64        // the id of the last dial started

	// Dial failures: a streak of consecutive failures sets a backoff during
	// which Gets that need a dial fail fast with lastDialErr.
	failStreak   int
	lastDialErr  error
	backoffUntil int64 // pool clock

	// The addresses dials go to (resolve.go): eps is the set, in the
	// order first seen, and draining the addresses removed from it that
	// still have conns open or dialing. Each endpoint's counts are
	// guarded by mu too.
	eps           []*endpoint
	draining      []*endpoint
	resolving     bool  // a resolve is in flight
	nextResolve   int64 // pool clock
	resolveStreak int   // consecutive failed resolves, logged once per streak
	nextRebalance int64 // pool clock; 0 when no round is scheduled
	lastRebalance int64 // pool clock of the last round that retired a conn

	// Counters; Stats adds them up.
	dials         int64
	dialErrors    int64
	resolves      int64
	resolveErrors int64
	waitCount     int64
	closes        [numCloseReasons]int64
	// handoffs counts the returned (not fresh) conns handed to waiters,
	// when they are handed off (handOffLocked), so that the waiter that
	// keeps one touches no counter; handoffsLost, not guarded, counts
	// those its waiter did not keep: rejected by its checks, or the
	// waiter had left. Stats' Hits counts the difference.
	handoffs int64

	// Distributions and counters updated without a lock.
	waitTime, dialTime, useTime histogram
	leaks                       atomic.Int64

	// Not guarded.
	sweepWanted  atomic.Bool // a checkout found a dead conn: peek at every idle conn
	hookPanicked atomic.Bool // a hook panicked: logged once
	events       eventOrder  // keeps events that span goroutines in order (hooks.go)
	handoffsLost atomic.Int64
	misses       atomic.Int64
	getFailures  [numGetFailures]atomic.Int64 // failed Gets by GetFailure: getFailed, on the failure paths only

	// Read-only after New.
	network, address string
	name             string
	cfg              config
	hooks            Hooks
	stampLent        bool // a Put hook or the use-time histogram wants the time a conn was held
	log              *slog.Logger
	epoch            time.Time          // the pool clock: monotonic nanoseconds since epoch
	ctx              context.Context    // ends when the pool closes; parent of background dials and checks
	cancel           context.CancelFunc // ends ctx
	wake             chan struct{}      // capacity 1: asks the maintainer to run now
	wg               sync.WaitGroup     // the maintainer, and every dial and check in flight

	// Read-only after New too (resolve.go). host is the name the pool resolves, with the port its addresses
	// get and the resolver's network; "" for an address it dials as
	// given. resolvedOnce is closed when the first resolve has answered.
	host, port, lookupNet string
	resolvedOnce          chan struct{}
}

// addOpenLocked adds delta to numOpen; only the ledger calls it.
func (p *Pool) addOpenLocked(delta int) {
	p.numOpen += delta
	p.openHint.Store(int32(p.numOpen))
}

// inUseIdleLocked returns how many conns are lent: borrowed, or handed to
// a waiter that has not taken them yet. mu and idleMu must be held.
func (p *Pool) inUseIdleLocked() int {
	return p.numOpen - p.numDialing - p.idle.Len() - p.numChecking - p.numClosing
}

// maxRejects is how many idle conns in a row one Get lets the checkout peek
// reject before it stops trusting the idle set and dials a fresh conn.
const maxRejects = 3

// New returns a pool of connections to address on network ("tcp",
// "tcp4", "unix", or whatever the dialer understands). The address must
// suit the network: host:port for "tcp", "tcp4", "tcp6", "udp", "udp4"
// and "udp6" ("localhost:6379", "[::1]:6379"), a path for "unix"; a
// network that package net does not dial needs [WithDialer]. When network
// is "tcp", "tcp4" or "tcp6" and address is a host name with a port, the
// pool resolves the name itself and spreads its conns over every address
// it gets, re-resolving on an interval; see [WithResolver].
//
// New validates the address and the options together: when any is wrong
// it returns a nil pool and an error wrapping [ErrInvalidOption] that
// names each mistake. New does not dial: warming starts in the
// background.
func New(network, address string, opts ...Option) (*Pool, error) {
	cfg, err := newConfig(network, address, opts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pool{
		network:   network,
		address:   address,
		name:      cfg.name,
		cfg:       cfg,
		hooks:     cfg.hooks,
		overload:  newOverload(cfg.queuePolicy),
		stampLent: cfg.hooks.Put != nil || cfg.useTimeMetrics || cfg.adaptiveSet,
		timeUse:   cfg.useTimeMetrics,
		observed: cfg.hooks.GetStarted != nil || cfg.hooks.GetDone != nil || cfg.hooks.Put != nil ||
			cfg.leakThreshold > 0 || cfg.adaptiveSet,
		log:    cfg.logger.With("pool", cfg.name),
		epoch:  time.Now(),
		ctx:    ctx,
		cancel: cancel,
		wake:   make(chan struct{}, 1),
		all:    make(map[*poolConn]struct{}),
	}
	if cfg.resolver != nil && (!cfg.dialerSet || cfg.resolverSet) {
		p.host, p.port, p.lookupNet = resolvable(network, address)
	} else if host, _, _ := resolvable(network, address); host != "" && !cfg.resolverSet {
		p.log.Info("connpool: WithDialer without WithResolver: the dialer resolves the name, so conns are not spread over its addresses; "+
			"add WithResolver(net.DefaultResolver) to spread them, or WithResolver(nil) to keep this without the log line",
			"address", address)
	}
	if p.host == "" {
		p.eps = []*endpoint{p.newEndpoint(netip.Addr{})}
	} else {
		p.resolvedOnce = make(chan struct{})
		p.lastRebalance = -int64(cfg.resolveInterval)
	}
	p.freeWaiters.New = newWaiterElem
	p.adaptive = newAdaptiveCap(&cfg)
	p.idleMu.SetYield(yieldlock.Oversubscribed())
	p.emitReady()
	p.wg.Add(1)
	go p.maintain()
	if p.adaptive != nil {
		p.wg.Add(1)
		go p.adapt()
	}
	return p, nil
}

// Network returns the network the pool dials, as given to New.
func (p *Pool) Network() string { return p.network }

// Address returns the address the pool dials, as given to New.
func (p *Pool) Address() string { return p.address }

// now reads the pool clock. time.Since on a monotonic epoch reads only the
// monotonic clock, half the cost of time.Now.
func (p *Pool) now() int64 { return int64(time.Since(p.epoch)) }

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
	p.doneWaiting(&op)
	if c != nil {
		p.stampUse(c)
	} else {
		p.getFailed(err)
	}
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
		c, retired := p.takeIdle(unusedOnly, op.rejects < maxRejects)
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
		if retired != nil {
			p.moveLocked(retired, heldClosing)
		}
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
// one is vetted like any idle conn. Either is closed if a Reset came after
// its dial (see reset.go).
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
	switch {
	case pc.gen != p.gen.Load():
		return refuse(CloseReset)
	case pc.ep.removed.Load(): // handed over before a resolve drained its address
		return refuse(CloseAddressRemoved)
	case d.fresh:
		p.misses.Add(1)
		op.served = ServedDial
	case !p.healthy(pc, true):
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
			c, _ = p.takeIdle(false, true)
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

// nudgeWarmer wakes the maintainer when warming is behind MinIdle and a
// dial is possible; at the cap there is nothing for it to do, and waking it
// on every Get would make it contend for mu. mu must be held; it takes
// idleMu for the idle count.
func (p *Pool) nudgeWarmer() {
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
