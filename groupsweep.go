package connpool

import (
	"errors"
	"time"
)

// A Group's sweeper closes the pools nobody used for its idle timeout;
// a Get or DialContext that looked a pool up just before the sweeper
// closed it retries on the address's new pool.

// retrySwept calls get on p, the pool a lookup of network and address
// returned. If the sweeper closed p after that lookup (the caller stalled
// longer than the idle timeout in between), the pool is gone, not the
// group: it calls get again on the address's new pool.
func retrySwept[T any](g *Group, p *Pool, network, address string, get func(*Pool) (T, error)) (T, error) {
	for retries := 0; ; retries++ {
		c, err := get(p)
		if retries == sweptRetries || !g.swept(err, network, address, p) {
			return c, err
		}
		if p, err = g.pool(network, address); err != nil {
			var zero T
			return zero, err
		}
	}
}

// sweptRetries bounds the retries of retrySwept. Each starts
// from a fresh pool that the sweeper leaves alone for a whole idle
// timeout, and while it queues a Get or dials, so a second retry already
// means a caller stalled that long twice.
const sweptRetries = 3

// swept reports whether err is the ErrClosed of a pool the sweeper closed
// and forgot after the lookup that returned p: the group is open and no
// longer maps the address to p.
func (g *Group) swept(err error, network, address string, p *Pool) bool {
	if !errors.Is(err, ErrClosed) {
		return false
	}
	g.mu.RLock()
	defer g.mu.RUnlock()
	e, ok := g.pools[Addr{network, address}]
	return !g.closed && (!ok || e.pool != p)
}

// sweep closes pools nobody used for idleAfter and that lend no conn,
// queue no Get and dial nothing. It runs every idleAfter/4 and stamps the
// pools used since its last run with the time of this one, so a pool is
// closed between idleAfter and 5/4 idleAfter after its last use, never
// before.
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
				if now.Sub(e.lastUsed) >= g.idleAfter && !e.pool.busy() {
					unused = append(unused, e.pool)
					delete(g.pools, k)
				}
			}
			g.mu.Unlock()
			for _, p := range unused {
				_ = p.Close()
				if g.total != nil {
					g.total.forget(p)
				}
			}
		}
	}
}
