package connpool

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"
)

// Addr names one pool of a [Group]: a network and an address.
type Addr struct {
	Network, Address string
}

// Group is a set of pools, one per network and address, created on first
// use with the same options: what an [net/http.Transport] that talks to
// many hosts wants as its dialer ([Group.DialContext]). An optional cap
// bounds the conns of all pools together ([WithGroupMaxConns]); a dial that
// would exceed it first closes the oldest idle conn of another pool. Pools
// unused for a while are closed and removed ([WithGroupIdleTimeout]), so a
// group fed many hosts does not grow without bound.
//
// A Group is safe for concurrent use.
type Group struct {
	opts      []Option
	total     *groupLimit // nil without WithGroupMaxConns
	idleAfter time.Duration
	stop      chan struct{}
	wg        sync.WaitGroup

	// mu guards the fields below; it may be held while taking a Pool's mu,
	// never the reverse. Lookups of an existing pool take it for reading.
	mu     sync.RWMutex
	pools  map[Addr]*groupEntry
	closed bool
}

type groupEntry struct {
	pool *Pool
	// used is set by every lookup, under Group.mu for reading; the sweeper
	// clears it and stamps lastUsed, so lookups read no clock.
	used     atomic.Bool
	lastUsed time.Time // guarded by Group.mu
}

// DefaultGroupIdleTimeout is how long a Group keeps a pool nobody uses.
const DefaultGroupIdleTimeout = 5 * time.Minute

// WithGroupMaxConns caps the conns open across every pool of a Group. n
// must be at least 1; without it there is no cap beyond each pool's own.
// It is an option of [NewGroup] only; [New] rejects it.
func WithGroupMaxConns(n int) Option {
	return func(c *config) { c.groupMaxConns, c.groupOption = n, "WithGroupMaxConns" }
}

// WithGroupIdleTimeout makes a Group close and forget a pool that nobody
// has used for d and that has no conn borrowed (within d/4 after that:
// lookups read no clock, a sweep every d/4 does). If d is 0, pools are kept
// until the Group closes. The default is 5m. It is an option of
// [NewGroup] only; [New] rejects it.
func WithGroupIdleTimeout(d time.Duration) Option {
	return func(c *config) { c.groupIdle, c.groupIdleSet, c.groupOption = d, true, "WithGroupIdleTimeout" }
}

// NewGroup returns an empty group whose pools will use opts. It validates
// the options as [New] does.
func NewGroup(opts ...Option) (*Group, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	if cfg.groupMaxConns < 0 || (cfg.groupOption == "WithGroupMaxConns" && cfg.groupMaxConns == 0) {
		return nil, fmt.Errorf("%w: WithGroupMaxConns(%d): must be at least 1", ErrInvalidOption, cfg.groupMaxConns)
	}
	if cfg.groupIdle < 0 {
		return nil, fmt.Errorf("%w: WithGroupIdleTimeout(%v): must not be negative", ErrInvalidOption, cfg.groupIdle)
	}
	g := &Group{
		idleAfter: DefaultGroupIdleTimeout,
		stop:      make(chan struct{}),
		pools:     make(map[Addr]*groupEntry),
	}
	if cfg.groupIdleSet {
		g.idleAfter = cfg.groupIdle
	}
	if cfg.groupMaxConns > 0 {
		g.total = &groupLimit{g: g, sem: semaphore.NewWeighted(int64(cfg.groupMaxConns))}
	}
	// Every pool gets the options, then joins the group: the group options
	// are consumed and the shared cap attached.
	g.opts = append(append([]Option{}, opts...), func(c *config) {
		c.groupOption = ""
		c.limit = g.total
	})
	// Check the pool options once, on a placeholder address.
	if _, err := newConfig("tcp", "group:0", g.opts); err != nil {
		return nil, err
	}
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
	p, err := New(network, address, g.opts...)
	if err != nil {
		return nil, err
	}
	g.pools[key] = &groupEntry{pool: p, lastUsed: time.Now()}
	return p, nil
}

// Get returns a conn to address on network from its pool, as [Pool.Get].
func (g *Group) Get(ctx context.Context, network, address string) (*Conn, error) {
	p, err := g.pool(network, address)
	if err != nil {
		return nil, err
	}
	return p.Get(ctx)
}

// DialContext returns a conn to address on network from its pool, as
// [Pool.DialContext]: give it to an [net/http.Transport] that talks to
// many hosts.
func (g *Group) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	p, err := g.pool(network, address)
	if err != nil {
		return nil, err
	}
	return p.DialContext(ctx, network, address)
}

// Stats returns the stats of every pool the group holds now.
func (g *Group) Stats() map[Addr]Stats {
	g.mu.RLock()
	defer g.mu.RUnlock()
	out := make(map[Addr]Stats, len(g.pools))
	for k, e := range g.pools {
		out[k] = e.pool.Stats()
	}
	return out
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
	g.mu.Unlock()
	close(g.stop)
	g.wg.Wait()
	for _, e := range pools {
		_ = e.pool.Close()
	}
	return nil
}

// sweep closes pools nobody used for idleAfter and that lend no conn. It
// runs every idleAfter/4 and stamps the pools used since its last run
// with the time of this one, so a pool is closed between idleAfter and
// 5/4 idleAfter after its last use, never before.
func (g *Group) sweep() {
	defer g.wg.Done()
	t := time.NewTicker(max(g.idleAfter/4, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case now := <-t.C:
			var unused []*Pool
			g.mu.Lock()
			for k, e := range g.pools {
				if e.used.Swap(false) {
					e.lastUsed = now
					continue
				}
				if now.Sub(e.lastUsed) >= g.idleAfter && e.pool.Stats().InUse == 0 {
					unused = append(unused, e.pool)
					delete(g.pools, k)
				}
			}
			g.mu.Unlock()
			for _, p := range unused {
				_ = p.Close()
			}
		}
	}
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

// groupLimit is the group's cap as the pools see it: a permit per open
// conn, taken before a dial and given back when the conn closes.
type groupLimit struct {
	g   *Group
	sem *semaphore.Weighted
}

// evictRetry is how often a dial blocked on the group's cap looks again
// for an idle conn to evict elsewhere; conns that go idle meanwhile do not
// signal it.
const evictRetry = 20 * time.Millisecond

// acquire takes a permit for a dial of p, evicting idle conns of other
// pools when the cap is reached. It fails only when ctx ends.
func (l *groupLimit) acquire(ctx context.Context, p *Pool) error {
	for {
		if l.sem.TryAcquire(1) {
			return nil
		}
		if l.g.evictIdle(p) {
			continue
		}
		wait, cancel := context.WithTimeout(ctx, evictRetry)
		err := l.sem.Acquire(wait, 1)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

func (l *groupLimit) release() { l.sem.Release(1) }
