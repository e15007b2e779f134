package connpool

// The cap of a Group as its pools see it: a permit per open conn, a queue
// for dials at the cap across the pools, and the eviction of idle conns to
// make room.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/connpool/connpool/internal/slots"
)

// groupLimit is the group's cap as the pools see it: a permit per open
// conn, taken before a dial and given back when the conn closes. Dials
// that find the cap reached queue for a permit in one queue across the
// pools, first come first served (wait); warming never queues
// (takeWarmSlot).
type groupLimit struct {
	g   *Group
	sem *slots.Slots // resized by SetGroupMaxConns

	// evicting counts the waiting dials that are evicting an idle conn
	// now. evictFor lets no more evict at once than dials wait: each
	// eviction serves the first of them, so more would close conns
	// nobody needs.
	evicting atomic.Int32
	// waits and waited count the dials that queued for a permit and their
	// total time queued, for GroupStats.
	waits  atomic.Int64
	waited atomic.Int64

	// hungryMu guards hungry: the pools that found no free slot to warm
	// into (takeWarmSlot), woken to warm again when a slot is free for a
	// newcomer (wakeHungry). numHungry is its size, which release reads
	// without the lock. hungryMu is taken under a Pool's mu, and no other
	// lock is taken under it.
	hungryMu  sync.Mutex
	hungry    map[*Pool]struct{}
	numHungry atomic.Int32
}

// size returns the cap.
func (l *groupLimit) size() int {
	_, n := l.sem.Used()
	return n
}

// evictRetry is how often a dial blocked on the group's cap looks again
// for an idle conn to evict elsewhere, and the least time between two
// calls of the closers; conns that go idle meanwhile do not signal it.
const evictRetry = 20 * time.Millisecond

// warnAfter is how long a dial waits at the group's cap, with no idle conn
// to evict and no closer to ask, before the group warns.
const warnAfter = time.Second

// tryAcquire takes a permit for a dial if one is free and no dial waits.
func (l *groupLimit) tryAcquire() bool {
	if !l.sem.TryAcquire() {
		return false
	}
	l.gotSlotAtOnce()
	return true
}

// gotSlotAtOnce ends the streak of waiting the group warns about.
func (l *groupLimit) gotSlotAtOnce() {
	if l.g.warned.Load() {
		l.g.warned.Store(false) // a slot at once: the streak is over
	}
}

// join takes a permit for a dial if one is free and no dial waits, and
// returns nil; otherwise it queues the dial and returns its place, which
// wait then waits on.
func (l *groupLimit) join() *slots.Waiter {
	w := l.sem.Join(int64(time.Since(l.g.epoch)))
	if granted(w) {
		l.gotSlotAtOnce()
		return nil
	}
	return w
}

// errDialNotNeeded ends a dial that left the group's queue because no
// Get needed it any more (Pool.keepWaitingForSlot).
var errDialNotNeeded = errors.New("not needed: no Get waited for it any more while it waited at the group's cap")

// wait waits for the permit that dial d of p queued for (join). While it
// waits, it makes room, in this order: the oldest idle conn of another
// pool, the closers' idle conns; otherwise a conn closes by itself. The
// permit any of these frees goes to the first dial queued, which may be
// another: this one keeps its place, so that the group serves its dials
// in the order they came, across its pools, whatever frees the permit (a
// raised cap, a conn closed, an idle conn evicted).
//
// A dial waits only while a Get needs it: when the Get it was for has
// left (gave up, or was served another conn) and no other Get of p waits
// without a dial of its own, it leaves the queue (p.keepWaitingForSlot)
// and wait returns errDialNotNeeded. It asks again whenever a Get of p
// leaves the queue, and at each retry. Otherwise it fails only when ctx
// ends.
func (l *groupLimit) wait(ctx context.Context, p *Pool, d *dialOp) error {
	w := d.slot
	defer func() {
		l.waits.Add(1)
		l.waited.Add(int64(time.Since(l.g.epoch)) - w.At())
	}()
	var retryAt *time.Timer
	defer func() {
		if retryAt != nil {
			retryAt.Stop()
		}
	}()
	for getLeftOnly := false; ; {
		if granted(w) {
			return nil
		}
		wanted, getLeft := p.keepWaitingForSlot(d)
		if !wanted {
			return errDialNotNeeded
		}
		if !getLeftOnly { // woken by a Get that left, it only asks, and waits out its retry
			if l.evictFor(p) {
				continue
			}
			// Only for a Get that waits: a dial nobody waits for any
			// more takes no conn from the clients.
			retry := evictRetry
			if p.queued.Load() > 0 && !granted(w) {
				if asked, again := l.g.askClosers(); asked {
					retry = again
				} else {
					l.warnStuck(p, time.Since(l.g.epoch)-time.Duration(w.At()))
				}
			}
			if retryAt == nil {
				retryAt = time.NewTimer(retry)
			} else {
				retryAt.Reset(retry)
			}
		}
		getLeftOnly = false
		select {
		case <-w.Granted():
			return nil
		case <-retryAt.C:
		case <-getLeft:
			getLeftOnly = true
		case <-ctx.Done():
			if !l.sem.Leave(w) {
				return nil // granted as ctx ended: the dial goes on, and finds its pool closed
			}
			return ctx.Err()
		}
	}
}

// leave takes w out of the queue; a permit granted to it meanwhile is
// given back.
func (l *groupLimit) leave(w *slots.Waiter) {
	if !l.sem.Leave(w) {
		l.release()
	}
}

// granted reports whether w was granted its permit.
func granted(w *slots.Waiter) bool {
	select {
	case <-w.Granted():
		return true
	default:
		return false
	}
}

// evictFor closes the oldest idle conn of a pool other than p, for the
// dials waiting at the cap, unless as many evictions are under way as
// dials wait. It reports whether it closed one.
func (l *groupLimit) evictFor(p *Pool) bool {
	defer l.evicting.Add(-1)
	if n, _ := l.sem.Waiting(); int(l.evicting.Add(1)) > n {
		return false
	}
	return l.g.evictIdle(p)
}

// release gives back a permit; when it is free for a newcomer, the
// pools waiting to warm are woken.
func (l *groupLimit) release() {
	l.sem.Release()
	if l.numHungry.Load() > 0 && l.sem.Free() {
		l.wakeHungry()
	}
}

// warnStuck logs, once per streak, that a dial of p has waited at the cap
// for warnAfter with no idle conn to evict and no client to ask: the
// slots are most likely held by conns idle in a client that nobody
// registered.
func (l *groupLimit) warnStuck(p *Pool, waited time.Duration) {
	if waited < warnAfter || l.g.warned.Load() || !l.g.warned.CompareAndSwap(false, true) {
		return
	}
	p.warnLog().Warn("connpool: dial waiting at the group's cap with no idle conn to close",
		"waited", waited.Round(time.Millisecond),
		"group_max_conns", l.size(),
		"remedy", "register the client that holds the group's conns with Group.CloseIdleWith, "+
			"or bound its idle conns (http.Transport IdleConnTimeout, MaxIdleConns)")
}

// askClosers asks every client registered with CloseIdleWith to close its
// idle conns, unless the group asked less than evictRetry ago. It reports
// whether any client is registered, and how long until the group may ask
// again: a dial that was turned away waits no longer than that. It holds
// no lock while it asks: each conn a client closes takes its pool's mu and
// frees a slot, and a client may hold locks of its own around its dials.
func (g *Group) askClosers() (registered bool, again time.Duration) {
	g.mu.RLock()
	closers := g.closers
	g.mu.RUnlock()
	if len(closers) == 0 {
		return false, 0
	}
	now := int64(time.Since(g.epoch))
	next := g.nextAsk.Load()
	if now < next || !g.nextAsk.CompareAndSwap(next, now+int64(evictRetry)) {
		// Asked lately, or another dial asks now.
		return true, max(time.Duration(g.nextAsk.Load()-now), time.Microsecond)
	}
	for _, c := range closers {
		c.CloseIdleConnections()
	}
	return true, evictRetry
}

// The pool side of a group: its slot under the cap, and its idle conns
// as the group's eviction sees them.

// joinGroupLocked takes a slot under the group's cap for dial d as it
// starts, when the pool is in a group with a cap: at once if one is free
// and no dial waits, else a place in the group's queue (d.slot), which
// acquireGroupSlot waits on. A warm dial took its slot already
// (warmSlotLocked). Until it holds its slot, d is not in flight: it
// counts in numGroupWaiting and its address's GroupWaiting, raised here
// under the same hold of mu as numDialing, so that Stats.Dialing and
// AddressStats.Dialing never count it. mu must be held.
func (p *Pool) joinGroupLocked(d *dialOp) {
	if p.cfg.limit == nil || d.kind == dialWarm {
		return
	}
	if d.slot = p.cfg.limit.join(); d.slot != nil {
		p.numGroupWaiting++
		if d.ep != nil {
			d.ep.GroupWaiting++
		}
	}
}

// acquireGroupSlot waits for the slot under the group's cap that dial d
// queued for when it started (joinGroupLocked), if it did not get one at
// once. It waits for as long as the pool is open and a Get needs the
// dial; waiting for the cap is not a dial failure. With a slot, d counts
// as in flight from here. Without, it returns the dial's error: its pool
// closed, or no Get needed it any more; d then still counts as waiting,
// until the dial's end takes it off numDialing in the same hold of mu
// (dial), so that it never counts as in flight.
func (p *Pool) acquireGroupSlot(d *dialOp) error {
	if d.slot == nil {
		return nil
	}
	err := p.cfg.limit.wait(p.ctx, p, d)
	if err == nil {
		p.mu.Lock()
		p.slotWaitOverLocked(d)
		p.mu.Unlock()
		return nil
	}
	if !errors.Is(err, errDialNotNeeded) {
		err = ErrClosed // the pool closed while the dial waited
	}
	return fmt.Errorf("connpool: dial %s %s: %w", p.network, p.address, err)
}

// slotWaitOverLocked ends d's wait for a group slot in numGroupWaiting
// and its address's GroupWaiting: it holds its slot, or it ends without
// one (dial, in the hold of mu that ends its reservation). mu must be
// held.
func (p *Pool) slotWaitOverLocked(d *dialOp) {
	p.numGroupWaiting--
	if d.ep != nil {
		d.ep.GroupWaiting--
	}
	d.slot = nil
}

// keepWaitingForSlot reports whether dial d, waiting at the group's cap,
// is still needed: the pool is closing (wait's ctx ends it), the Get it
// was started for still waits, or another Get of the pool waits without
// a dial of its own, which d's conn will serve (dialed offers it to the
// first waiter). If not, d leaves the group's queue there, under mu, so
// that no Get that queues meanwhile counts on it; a slot granted to it at
// that instant is given back. While d waits, it also returns a channel
// closed when a Get of the pool leaves the queue (getLeftLocked), for d
// to ask again.
func (p *Pool) keepWaitingForSlot(d *dialOp) (wanted bool, getLeft <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed.Load() || d.forWaiterLocked() && d.e.Queued() || p.waitersWithoutDialLocked() > 0 {
		if p.getLeft == nil {
			p.getLeft = make(chan struct{})
		}
		return true, p.getLeft
	}
	p.cfg.limit.leave(d.slot)
	return false, nil
}

// getLeftLocked wakes the dials waiting at the group's cap, when a Get
// leaves the queue (gave up, or was served), to ask whether they are
// still needed (keepWaitingForSlot). mu must be held.
func (p *Pool) getLeftLocked() {
	if p.getLeft != nil {
		close(p.getLeft)
		p.getLeft = nil
	}
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
	return p.epoch.Time(at), true
}

// closeOldestIdle closes the pool's oldest idle conn, to make room under
// its group's cap, and reports whether there was one.
func (p *Pool) closeOldestIdle() bool {
	return p.evict(oldest(1), CloseIdle) > 0
}

// busy reports whether the pool lends a conn, queues a Get or dials (for
// a slot under the group's cap too): whether its group's sweeper must
// keep it however long ago it was last looked up.
func (p *Pool) busy() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.idleMu.Lock()
	defer p.idleMu.Unlock()
	return p.inUseIdleLocked() > 0 || p.numDialing > 0 || p.waiters.Len() > 0
}
