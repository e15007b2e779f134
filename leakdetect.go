package connpool

import (
	"cmp"
	"fmt"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/connpool/connpool/internal/callstack"
	"github.com/connpool/connpool/internal/clock"
)

// Leak detection (WithLeakDetection). Each Get records a loan: when, and
// the program counters of the code that called it, symbolized only if it
// is ever reported. The maintainer looks at the loans every threshold/4
// and reports those held past the threshold once each, one log line per
// call site. A Conn that becomes unreachable while lent (its borrower
// dropped it without Close) is reclaimed by a cleanup the runtime runs
// after a garbage collection: its socket is closed and its slot freed.
//
// The cleanup is one per Get, on the Conn it hands out, because that
// wrapper is new to each Get (what makes a returned Conn dead to its old
// holder) and its death is what "dropped without Close" means. One per
// slab of wrappers, or per conn, would run only once every wrapper it
// covers was dead, so that a returned handle an earlier borrower kept
// would hide a leak for as long as it lived; reusing wrappers would
// revive such handles. The return stops the cleanup: a dead wrapper's
// cleanup would otherwise sit in its memory span's sorted list until the
// next collection, making each registration walk past all of them, and
// the collector would run one no-op cleanup per Get.

// leakStackDepth is how many callers of Get a loan records.
const leakStackDepth = 16

// loan is one borrow of a conn under leak detection. Its fields are set
// before it is published (Conn.loan, poolConn.loan) and never change but
// for the flags.
type loan struct {
	pc       *poolConn
	at       int64 // clock.Ticks when the Get returned: the cheapest clock, as only differences are needed
	depth    int
	stack    [leakStackDepth]uintptr // return addresses (callstack.Capture), from lend's caller
	cleanup  runtime.Cleanup         // reclaims pc if the Conn is dropped; stopped by its return
	returned atomic.Bool             // by Put, Close or Detach, or reclaimed: set once
	reported atomic.Bool             // logged as held past the threshold
}

// WithLeakDetection reports conns borrowed for longer than threshold: a
// WARN through the pool's logger (WithLogger) with the stack of the code
// that borrowed them, how long they have been held, and the pool's in-use,
// max and waiting counts; one line per call site and scan, with the number
// of conns it holds. A reported conn that comes back logs one INFO line.
// Reports come at most threshold/4 after the threshold; each counts in
// Stats.Leaks and emits a [LeakEvent].
//
// With detection on, a Conn dropped without Close is found by the garbage
// collector, reported, and its slot freed (Stats.LeakedClosed), so that a
// leak does not leave the pool one conn short for ever.
//
// It costs each Get and its Put a few hundred nanoseconds (about 300 on
// a 2.6 GHz amd64: BenchmarkGetPutObserved) and four allocations: the
// borrower's stack, walked by its frame pointers on amd64 and arm64
// (runtime.Callers elsewhere, several times slower), and a cleanup that
// the runtime registers at Get and drops at Put. If threshold is 0, the
// default, there is no detection; it must not be negative.
func WithLeakDetection(threshold time.Duration) Option {
	return poolOption(func(c *config) {
		if threshold < 0 {
			c.invalid("WithLeakDetection(%v): must not be negative", threshold)
			return
		}
		c.leakThreshold = threshold
	})
}

// lend records c's loan to the caller of Get.
func (p *Pool) lend(c *Conn) {
	l := &loan{pc: c.pc, at: clock.Ticks()}
	l.depth = callstack.Capture(l.stack[:]) // from lend's caller: callSite trims the pool's frames
	l.cleanup = runtime.AddCleanup(c, reclaimLoan, l)
	c.pc.loan.Store(l)
}

// reclaimLoan is the cleanup of a lent Conn: a function, not the method
// value p.reclaim, which would cost an allocation per Get.
func reclaimLoan(l *loan) { l.pc.pool.reclaim(l) }

// endLoan records that c, the holder of its conn, came back. It reports
// whether c's loan was reported as a leak, and if so how long it was held.
func (c *Conn) endLoan() (reported bool, held time.Duration) {
	l := c.pc.loan.Load() // the holder's own: only the holder ends it, or the cleanup, which c's being here rules out
	if l == nil || !l.returned.CompareAndSwap(false, true) {
		return false, 0
	}
	l.pc.loan.CompareAndSwap(l, nil)
	// Stopped now, the cleanup costs the garbage collector nothing when c
	// dies, and leaves the next Get fewer cleanups to pass in the
	// runtime's sorted list of c's memory span.
	l.cleanup.Stop()
	runtime.KeepAlive(c) // c is live until its cleanup is gone: see runtime.Cleanup.Stop
	if !l.reported.Load() {
		return false, 0 // the common case reads no clock
	}
	return true, clock.Since(l.at)
}

// reclaim frees the conn of a loan whose Conn became unreachable without
// being returned: nothing else can reach the conn, so it is the pool's
// again, to close. It runs on a goroutine of the runtime's.
func (p *Pool) reclaim(l *loan) {
	if !l.returned.CompareAndSwap(false, true) {
		return
	}
	l.pc.loan.CompareAndSwap(l, nil)
	p.log.Warn("connpool: a borrowed conn was dropped without Close; its slot is reclaimed",
		"conn", l.pc.id, "held", clock.Since(l.at).Round(time.Millisecond),
		"borrowed_at", l.callSite())
	p.closeConn(l.pc, CloseLeaked)
}

// findLeaks reports the loans held past the threshold that are not yet
// reported. The maintainer calls it every threshold/4. It takes mu.
func (p *Pool) findLeaks() {
	now := clock.Ticks()
	p.mu.Lock()
	var found []*loan
	for pc := range p.all {
		l := pc.loan.Load()
		if l != nil && !l.returned.Load() && clock.Between(l.at, now) >= p.cfg.leakThreshold && l.reported.CompareAndSwap(false, true) {
			found = append(found, l)
		}
	}
	if len(found) == 0 {
		p.mu.Unlock()
		return
	}
	p.idleMu.Lock()
	inUse := p.inUseIdleLocked()
	p.idleMu.Unlock()
	waiting := p.waiters.Len()
	p.mu.Unlock()

	p.leaks.Add(int64(len(found)))
	sites := make(map[[leakStackDepth]uintptr][]*loan)
	var order [][leakStackDepth]uintptr
	for _, l := range found {
		if sites[l.stack] == nil {
			order = append(order, l.stack)
		}
		sites[l.stack] = append(sites[l.stack], l)
	}
	for _, key := range order {
		ls := sites[key]
		p.log.Warn("connpool: conn held past the leak threshold",
			"conns", len(ls), "first_conn", ls[0].pc.id,
			"held", clock.Between(ls[0].at, now).Round(time.Millisecond),
			"in_use", inUse, "max", p.cfg.maxConns, "waiting", waiting,
			"borrowed_at", ls[0].callSite())
	}
	if p.hooks.LeakDetected != nil {
		for _, l := range found {
			emit(p, p.hooks.LeakDetected, LeakEvent{
				Pool: p.name, ConnID: l.pc.id, Held: clock.Between(l.at, now), Stack: l.callSite(),
			})
		}
	}
}

// callSite symbolizes the loan's stack, without the pool's own frames or
// the compiler's wrappers (which runtime.Callers would have left out):
// "function\n\tfile:line" for each caller, innermost first.
func (l *loan) callSite() string {
	var b strings.Builder
	frames := runtime.CallersFrames(l.stack[:l.depth])
	for {
		f, more := frames.Next()
		if f.Function != "" && !isPoolFrame(f.Function) && !callstack.Wrapper(f) {
			fmt.Fprintf(&b, "%s\n\t%s:%d\n", f.Function, f.File, f.Line)
		}
		if !more {
			break
		}
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// isPoolFrame reports whether fn is this package's, not its tests'.
func isPoolFrame(fn string) bool {
	const pkg = "github.com/connpool/connpool."
	return strings.HasPrefix(fn, pkg) || fn == "runtime.goexit"
}

// BorrowedConn is one conn out of the pool, as [Pool.Borrowed] sees it.
type BorrowedConn struct {
	ID         uint64
	Age        time.Duration // since its dial
	Held       time.Duration // since its Get; 0 without WithLeakDetection
	RemoteAddr net.Addr
	Stack      string // the borrower's call site; "" without WithLeakDetection
}

// Borrowed returns the conns borrowed now, oldest loan first where known:
// for a debug endpoint.
func (p *Pool) Borrowed() []BorrowedConn {
	// It takes mu and idleMu.
	p.mu.Lock()
	p.idleMu.Lock() // the fast path moves holders under idleMu alone
	var out []BorrowedConn
	var loans []*loan
	now, ticks := p.now(), clock.Ticks()
	for pc := range p.all {
		if pc.holder != heldLent {
			continue
		}
		b := BorrowedConn{ID: pc.id, Age: time.Duration(now - pc.born), RemoteAddr: pc.nc.RemoteAddr()}
		l := pc.loan.Load()
		if l != nil {
			b.Held = clock.Between(l.at, ticks)
		}
		out = append(out, b)
		loans = append(loans, l)
	}
	p.idleMu.Unlock()
	p.mu.Unlock()
	for i, l := range loans {
		if l != nil {
			out[i].Stack = l.callSite()
		}
	}
	slices.SortStableFunc(out, func(a, b BorrowedConn) int {
		return cmp.Or(cmp.Compare(b.Held, a.Held), cmp.Compare(b.Age, a.Age))
	})
	return out
}
