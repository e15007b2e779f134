package connpool

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/connpool/connpool/internal/slots"
)

// Addr names one pool of a [Group]: a network and an address.
type Addr struct {
	Network, Address string
}

// Group is a set of pools, one per network and address, created on first
// use with the same options: what a [net/http.Transport] that talks to
// many hosts wants as its dialer ([Group.DialContext]). A host name is
// one pool, keyed by the name the client asked for, which spreads its
// conns over the name's addresses ([WithResolver]). Pools unused for a
// while are closed and removed ([WithGroupIdleTimeout]), so a group fed
// many hosts does not grow without bound.
//
// An optional cap bounds the conns of all pools together
// ([WithGroupMaxConns]). A dial that would exceed it makes room: it closes
// the oldest idle conn of another pool, and when no pool has one, it asks
// the clients registered with [Group.CloseIdleWith] to close the conns
// they keep idle; otherwise it waits for a conn to close. Dials waiting at
// the cap are served first come, first served across the pools, whatever
// frees a slot: a raised cap, a conn closed, an idle conn evicted. A dial
// waits only while a Get needs it: when its Get gives up and no other Get
// of its pool waits without a dial, it leaves the queue.
// [Group.GroupStats] reports the cap and the dials waiting at it.
//
// Warming ([WithMinIdle]) takes only free slots: it neither waits at the
// cap nor evicts another pool's idle conn. When the pools' MinIdle add up
// to more than the cap, the pools warm until the cap is reached, and the
// ones left below their MinIdle stay there until a slot frees (a conn
// closes, or the cap is raised); a Get still makes room as above.
//
// A conn handed out by DialContext holds its slot until its client closes
// it, so a Transport that keeps idle keep-alive conns holds slots the
// group cannot take back by itself: register it, or the group can wait at
// its cap for as long as the Transport keeps them (a zero Transport:
// forever; the group logs a warning through [WithLogger] after a second).
// Only idle conns are closed: a request in flight is never broken.
//
// A Group is safe for concurrent use.
type Group struct {
	opts      []Option
	total     *groupLimit // nil without WithGroupMaxConns
	idleAfter time.Duration
	epoch     time.Time // the group clock, for nextAsk
	stop      chan struct{}
	wg        sync.WaitGroup

	// nextAsk is when, on the group clock, the closers may next be asked
	// to close their idle conns: once per evictRetry, whichever of the
	// dials waiting at the cap comes first.
	nextAsk atomic.Int64
	// warned is set by the first dial that warns it has waited at the cap
	// with nothing to close, and cleared by a dial that gets a slot without
	// waiting: one warning per streak of waiting.
	warned atomic.Bool

	// mu guards the fields below; it may be held while taking a Pool's mu,
	// never the reverse. Lookups of an existing pool take it for reading.
	mu    sync.RWMutex
	pools map[Addr]*groupEntry
	// closers only grows, by append, until Close clears it: a reader may
	// keep the slice it read after unlocking.
	closers []IdleCloser
	closed  bool
}

// IdleCloser is a client that keeps idle conns it got from a [Group] and
// can close them: [net/http.Transport], [net/http.Client] and the
// golang.org/x/net/http2 Transport have this method. CloseIdleConnections
// must close only conns that no request is using, and must not wait for a
// dial of the group. See [Group.CloseIdleWith].
type IdleCloser interface {
	CloseIdleConnections()
}

type groupEntry struct {
	pool *Pool
	// used is set by every lookup, under Group.mu for reading; the sweeper
	// clears it and stamps lastUsed, so lookups read no clock.
	used     atomic.Bool
	lastUsed time.Time // guarded by Group.mu
}

// defaultGroupIdleTimeout is how long a Group keeps a pool nobody uses.
const defaultGroupIdleTimeout = 5 * time.Minute

// NewGroup returns an empty group. Its own options ([WithGroupMaxConns],
// [WithGroupIdleTimeout]) configure the group; every [Option] configures
// each pool it will create. NewGroup validates them all once, as [New]
// does, and returns an error wrapping [ErrInvalidOption] that names each
// bad option.
func NewGroup(opts ...GroupOption) (*Group, error) {
	cfg, err := newGroupConfig(opts)
	if err != nil {
		return nil, err
	}
	g := &Group{
		idleAfter: cfg.idleAfter,
		epoch:     time.Now(),
		stop:      make(chan struct{}),
		pools:     make(map[Addr]*groupEntry),
	}
	if cfg.maxConns > 0 {
		g.total = &groupLimit{g: g, sem: slots.New(cfg.maxConns)}
	}
	// Every pool gets the options, then joins the group: the shared cap
	// is attached.
	g.opts = append(cfg.pool, poolOption(func(c *config) { c.limit = g.total }))
	if g.idleAfter > 0 {
		g.wg.Add(1)
		go g.sweep()
	}
	return g, nil
}

// pool returns the pool for network and address, creating it on first use.
func (g *Group) pool(network, address string) (*Pool, error) {
	key := Addr{network, address}
	g.mu.RLock()
	e, ok := g.pools[key]
	closed := g.closed
	if ok && !e.used.Load() { // write only on change: many cores read the line
		e.used.Store(true)
	}
	g.mu.RUnlock()
	switch {
	case closed:
		return nil, ErrClosed
	case ok:
		return e.pool, nil
	}

	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, ErrClosed
	}
	if e, ok := g.pools[key]; ok { // created meanwhile
		e.used.Store(true)
		return e.pool, nil
	}
	p, err := New(network, address, append(g.opts, nameInGroup(address))...)
	if err != nil {
		return nil, err
	}
	g.pools[key] = &groupEntry{pool: p, lastUsed: time.Now()}
	return p, nil
}

// nameInGroup names a pool of a group by its address: after the name the
// group's options gave, if any, else as New would.
func nameInGroup(address string) Option {
	return poolOption(func(c *config) {
		c.inGroup = true
		if c.name != "" {
			c.name += " " + address
		}
	})
}

// Get returns a conn to address on network from its pool, as [Pool.Get].
func (g *Group) Get(ctx context.Context, network, address string) (*Conn, error) {
	p, err := g.pool(network, address)
	if err != nil {
		return nil, err
	}
	return g.getFrom(ctx, p, network, address)
}

// getFrom gets a conn from p, the pool a lookup of network and address
// returned, through retrySwept.
func (g *Group) getFrom(ctx context.Context, p *Pool, network, address string) (*Conn, error) {
	return retrySwept(g, p, network, address, func(p *Pool) (*Conn, error) { return p.Get(ctx) })
}

// dialFrom is getFrom for DialContext.
func (g *Group) dialFrom(ctx context.Context, p *Pool, network, address string) (net.Conn, error) {
	return retrySwept(g, p, network, address, func(p *Pool) (net.Conn, error) { return p.DialContext(ctx, network, address) })
}

// DialContext returns a conn to address on network from its pool, as
// [Pool.DialContext]: give it to a [net/http.Transport] that talks to
// many hosts. The conn holds its slot under the group's cap until the
// Transport closes it, idle keep-alive time included. With a cap, register
// the Transport with [Group.CloseIdleWith] so that the group can take back
// the slots of idle conns, and set its IdleConnTimeout below the pools'
// idle timeout ([WithIdleTimeout]; a zero Transport never closes idle
// conns), its MaxIdleConnsPerHost to at most the pools' MaxConns, and its
// MaxIdleConns to at most the group's cap.
func (g *Group) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	p, err := g.pool(network, address)
	if err != nil {
		return nil, err
	}
	return g.dialFrom(ctx, p, network, address)
}

// CloseIdleWith registers c, a client whose dialer is [Group.DialContext]
// (a [net/http.Transport], or the [net/http.Client] around it), as one
// that keeps idle conns of the group. When a dial for a waiting Get is at
// the group's cap and no pool has an idle conn to evict, the group calls
// c.CloseIdleConnections, and that of every client registered, at most
// once per 20ms whatever the number of waiting dials, holding no lock.
// Each conn the client closes frees its slot at once, for the first dial
// waiting. CloseIdleConnections closes every idle conn of the client, not
// just one: at the cap, keep-alive reuse gives way to the hosts that wait.
// It closes no conn a request is using, so a request in flight is never
// broken. A nil c is ignored. The group keeps c until [Group.Close];
// register each client once.
func (g *Group) CloseIdleWith(c IdleCloser) {
	if c == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closed {
		g.closers = append(g.closers, c)
	}
}

// SetGroupMaxConns changes the cap on the conns open across the group's
// pools, as [WithGroupMaxConns] sets it, without blocking. Raised, it lets
// the dials waiting for a slot go at once, first come first served.
// Lowered, it closes idle conns of the pools, oldest first, until the
// group is within the new cap or no pool has an idle conn; borrowed conns
// are never interrupted, and no dial starts until enough of them have
// closed. n must be at least 1, and the group must have been created with
// WithGroupMaxConns: otherwise it returns an error wrapping
// [ErrInvalidOption] and changes nothing. After Close it returns
// [ErrClosed].
func (g *Group) SetGroupMaxConns(n int) error {
	g.mu.RLock()
	closed := g.closed
	g.mu.RUnlock()
	switch {
	case closed:
		return ErrClosed
	case g.total == nil:
		return invalidSet("SetGroupMaxConns(%d): the group has no cap to change; create it WithGroupMaxConns", n)
	case n < 1:
		return invalidSet("SetGroupMaxConns(%d): must be at least 1", n)
	}
	g.total.sem.Resize(n)
	if g.total.sem.Free() {
		g.total.wakeHungry() // the pools below their MinIdle warm into the room
	}
	for {
		used, size := g.total.sem.Used()
		if used <= size || !g.evictIdle(nil) {
			return nil
		}
	}
}

// Stats returns the stats of every pool the group holds now; what the
// pools share, the group's cap, is in [Group.GroupStats].
func (g *Group) Stats() map[Addr]Stats {
	g.mu.RLock()
	defer g.mu.RUnlock()
	out := make(map[Addr]Stats, len(g.pools))
	for k, e := range g.pools {
		out[k] = e.pool.Stats()
	}
	return out
}

// GroupStats is a snapshot of what a [Group]'s pools share, from
// [Group.GroupStats]: its cap, and the dials waiting for a slot under it.
// Gauges are values now; counters only grow from the group's creation.
type GroupStats struct {
	Pools int // pools the group holds now
	// MaxConns is the cap on the conns open across the pools
	// (WithGroupMaxConns, SetGroupMaxConns), 0 when the group has none.
	MaxConns int
	// OpenConns is the conns open across the pools now, each dial in
	// flight included, the dials waiting for a slot not (they are in
	// Waiting). With a cap, it is the slots held; it may exceed MaxConns
	// after the cap was lowered, until enough conns have closed.
	OpenConns int
	// Waiting is the dials waiting for a slot under the cap now, across
	// the pools, served first come, first served, whichever pool they are
	// for. A pool's [Stats] counts them in neither Dialing (dials in
	// flight) nor OpenConns.
	Waiting int
	// OldestWait is how long the dial that has waited longest for a slot
	// has been waiting, 0 when none waits: the sign that the cap is too
	// low, or that a client keeps idle conns it was not asked to close
	// ([Group.CloseIdleWith]).
	OldestWait time.Duration
	// WaitCount counts the dials that waited for a slot and are done
	// waiting (served, or left: their pool closed, or no Get needed them
	// any more), and WaitDuration is the total time they waited.
	WaitCount    int64
	WaitDuration time.Duration
}

// GroupStats returns the group's own stats: its cap and the dials waiting
// at it. Each pool's stats are in [Group.Stats].
func (g *Group) GroupStats() GroupStats {
	g.mu.RLock()
	st := GroupStats{Pools: len(g.pools)}
	if g.total == nil {
		for _, e := range g.pools {
			st.OpenConns += int(e.pool.openHint.Load())
		}
	}
	g.mu.RUnlock()
	if l := g.total; l != nil {
		st.OpenConns, st.MaxConns = l.sem.Used()
		var oldest int64
		if st.Waiting, oldest = l.sem.Waiting(); st.Waiting > 0 {
			st.OldestWait = max(time.Since(g.epoch)-time.Duration(oldest), 0)
		}
		st.WaitCount = l.waits.Load()
		st.WaitDuration = time.Duration(l.waited.Load())
	}
	return st
}

// Close closes every pool, as [Pool.Close] does, and stops the group's
// sweeper. Later calls return [ErrClosed].
func (g *Group) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return ErrClosed
	}
	g.closed = true
	pools := g.pools
	g.pools = nil
	g.closers = nil
	g.mu.Unlock()
	close(g.stop)
	g.wg.Wait()
	for _, e := range pools {
		_ = e.pool.Close()
	}
	return nil
}

// evictIdle closes the oldest idle conn of any pool but except, to make
// room under the group's cap. It reports whether it found one.
func (g *Group) evictIdle(except *Pool) bool {
	g.mu.RLock()
	var victim *Pool
	var oldest time.Time
	for _, e := range g.pools {
		if e.pool == except {
			continue
		}
		if t, ok := e.pool.oldestIdle(); ok && (victim == nil || t.Before(oldest)) {
			victim, oldest = e.pool, t
		}
	}
	g.mu.RUnlock()
	return victim != nil && victim.closeOldestIdle()
}
