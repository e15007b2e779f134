package connpool

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/connpool/connpool/internal/addrset"
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
	// under the group's cap (grouplimit.go): not in flight yet. A dial
	// counts in it from its start (joinGroupLocked) until it holds its
	// slot or leaves the group's queue (slotWaitOverLocked).
	numGroupWaiting int
	// getLeft is closed, and set to nil, when a Get leaves the queue
	// (dequeueLocked, popWaiterLocked), to wake the dials waiting at the
	// group's cap that asked for it (keepWaitingForSlot): a dial no Get
	// needs leaves the group's queue. nil while none asked.
	getLeft chan struct{}

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

	// The addresses dials go to (internal/addrset; addrs.go, resolve.go,
	// ejection.go): the set and the draining addresses, each endpoint's
	// counts, backoff and ejection. Guarded by mu, but for the endpoints'
	// Status, which is safe without it.
	addrs         *addrset.Set
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
	// hitsSeen is the Hits the last Stats reported, the least the next
	// may report: Hits never goes back (Stats).
	hitsSeen int64

	// Distributions and counters updated without a lock.
	waitTime, dialTime, useTime histogram
	leaks                       atomic.Int64

	// Not guarded.
	sweepWanted  atomic.Bool // a checkout found a dead conn: peek at every idle conn
	hookPanicked atomic.Bool // a hook panicked: logged once
	events       eventOrder  // keeps events that span goroutines in order (emit.go)
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
	epoch            clock.Epoch        // the pool clock: monotonic nanoseconds since New
	now              func() int64       // reads the pool clock: epoch.Now, set once by New
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
		epoch:  clock.NewEpoch(),
		ctx:    ctx,
		cancel: cancel,
		wake:   make(chan struct{}, 1),
		all:    make(map[*poolConn]struct{}),
	}
	p.now = p.epoch.Now // a method value, so that a clock read is one call into internal/clock
	if cfg.resolver != nil && (!cfg.dialerSet || cfg.resolverSet) {
		p.host, p.port, p.lookupNet = resolvable(network, address)
	} else if host, _, _ := resolvable(network, address); host != "" && !cfg.resolverSet {
		p.log.Info("connpool: WithDialer without WithResolver: the dialer resolves the name, so conns are not spread over its addresses; "+
			"add WithResolver(net.DefaultResolver) to spread them, or WithResolver(nil) to keep this without the log line",
			"address", address)
	}
	p.addrs = newAddrSet(address, p.port, p.cfg.ejection)
	if p.host == "" {
		p.addrs.Given()
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
