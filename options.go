package connpool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"
)

// DialFunc opens a new connection. It has the signature of
// [net.Dialer.DialContext], so a dialer's method value can be passed to
// [WithDialer] as it is. The context ends when the dial timeout passes or
// the pool closes; a DialFunc must return soon after it ends.
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// Option configures a [Pool]. Options are applied in order by [New], which
// then validates them together. Every Option is also a [GroupOption]: given
// to [NewGroup], it configures each pool of the group.
type Option interface {
	GroupOption
	applyPool(*config)
}

// GroupOption configures a [Group]: given to [NewGroup], with the
// [Option]s its pools get. [WithGroupMaxConns] and
// [WithGroupIdleTimeout] are GroupOptions only, so [New] does not take
// them.
type GroupOption interface {
	applyGroup(*groupConfig)
}

// poolOption is an Option: a change to a pool's config.
type poolOption func(*config)

func (o poolOption) applyPool(c *config) { o(c) }

// applyGroup keeps o for the group's pools.
func (o poolOption) applyGroup(g *groupConfig) { g.pool = append(g.pool, o) }

// groupOption is a GroupOption that is not an Option.
type groupOption func(*groupConfig)

func (o groupOption) applyGroup(g *groupConfig) { o(g) }

// groupConfig holds a Group's own settings, and the options of its pools.
type groupConfig struct {
	pool      []Option
	maxConns  int // 0: no cap
	idleAfter time.Duration
	invalid   []error
}

// WithGroupMaxConns caps the conns open across every pool of a Group. n
// must be at least 1; without it there is no cap beyond each pool's own.
// It is a [GroupOption] only.
func WithGroupMaxConns(n int) GroupOption {
	return groupOption(func(g *groupConfig) {
		if n < 1 {
			g.invalid = append(g.invalid, fmt.Errorf("%w: WithGroupMaxConns(%d): must be at least 1", ErrInvalidOption, n))
			return
		}
		g.maxConns = n
	})
}

// WithGroupIdleTimeout makes a Group close and forget a pool that nobody
// has used for d and that has no conn borrowed (within d/4 after that:
// lookups read no clock, a sweep every d/4 does). If d is 0, pools are kept
// until the Group closes. The default is 5m. It is a [GroupOption] only.
func WithGroupIdleTimeout(d time.Duration) GroupOption {
	return groupOption(func(g *groupConfig) {
		if d < 0 {
			g.invalid = append(g.invalid, fmt.Errorf("%w: WithGroupIdleTimeout(%v): must not be negative", ErrInvalidOption, d))
			return
		}
		g.idleAfter = d
	})
}

// newGroupConfig applies opts over the group defaults and validates the
// group's options and, once, its pools' options: every problem is
// reported, each naming its option.
func newGroupConfig(opts []GroupOption) (groupConfig, error) {
	g := groupConfig{idleAfter: defaultGroupIdleTimeout}
	for i, o := range opts {
		if o == nil {
			g.invalid = append(g.invalid, fmt.Errorf("%w: option %d is nil", ErrInvalidOption, i))
			continue
		}
		o.applyGroup(&g)
	}
	// The pool options are checked on a placeholder address.
	if _, err := newConfig("tcp", "group:0", g.pool); err != nil {
		g.invalid = append(g.invalid, err)
	}
	return g, errors.Join(g.invalid...)
}

// WithMaxConns caps the conns the pool has open at once, counting conns
// being dialed, idle and borrowed. A Get at the cap waits. n must be at
// least 1. The default is 4 × GOMAXPROCS, and at least 4.
func WithMaxConns(n int) Option {
	return poolOption(func(c *config) { c.maxConns, c.maxConnsSet = n, true })
}

// WithMinIdle keeps n idle conns ready, dialed in the background ahead of
// demand and refilled as soon as the count drops. n must be between 0 and
// MaxIdle. The default is 0: no warming. In a [Group] with a cap
// ([WithGroupMaxConns]), warming takes only slots that are free: at the
// cap the pool stays below n, without evicting another pool's conns,
// until a slot frees.
func WithMinIdle(n int) Option { return poolOption(func(c *config) { c.minIdle = n }) }

// WithMaxIdle caps the idle conns the pool keeps; a conn returned when n
// are idle is closed. n must be between 0 and MaxConns. The default is
// MaxConns, and follows it when [Pool.SetMaxConns] changes it; a MaxIdle
// that was set is kept, and acts as MaxConns while MaxConns is lower.
func WithMaxIdle(n int) Option {
	return poolOption(func(c *config) { c.maxIdle, c.maxIdleSet = n, true })
}

// WithMaxConnecting caps the dials in flight at once, warming dials
// included, so that a burst of Gets or an outage never becomes a dial
// storm. Gets beyond it wait for a returned conn or a finished dial,
// whichever comes first. n must be at least 1; a value above MaxConns acts
// as MaxConns. The default is max(4, 2 × GOMAXPROCS), at most MaxConns.
func WithMaxConnecting(n int) Option {
	return poolOption(func(c *config) { c.maxConnecting, c.connectingSet = n, true })
}

// WithIdleTimeout closes conns that sat idle for d, down to MinIdle. If d
// is 0, conns are never closed for idleness. The default, 90s, is well under
// the idle timeouts after which cloud load balancers silently drop a flow
// (350s on AWS, 4 minutes on Azure).
func WithIdleTimeout(d time.Duration) Option {
	return poolOption(func(c *config) { c.idleTimeout = d })
}

// WithMaxLifetime retires conns older than d, even below MinIdle (warming
// replaces them). Each conn's lifetime is shortened by a random jitter
// (see [WithMaxLifetimeJitter]) so that conns opened together are not
// retired together. If d is 0, conns live forever. The default is 30m.
func WithMaxLifetime(d time.Duration) Option {
	return poolOption(func(c *config) { c.maxLifetime = d })
}

// WithMaxLifetimeJitter sets the window over which conns reaching their
// max lifetime are spread: each conn lives between MaxLifetime-d and
// MaxLifetime. d must be between 0 and MaxLifetime. The default is a tenth
// of MaxLifetime.
func WithMaxLifetimeJitter(d time.Duration) Option {
	return poolOption(func(c *config) { c.lifetimeJitter, c.jitterSet = d, true })
}

// WithDialer sets how new conns are opened: TLS, unix sockets, a proxy, a
// test hook. The default is a [net.Dialer] with TCP keepalive on (15s idle,
// 15s interval, 3 probes). The pool applies its own dial timeout around
// dial.
//
// A pool with its own dialer dials a host name as given, and leaves
// resolving it to the dialer, unless [WithResolver] is given too: then
// the dialer is handed "ip:port", so a TLS dialer needs its
// Config.ServerName set to verify the name. So WithDialer alone turns off
// spreading conns over the addresses of a name, and the failover between
// them: New logs this once, at Info, for a "tcp" pool of a host name. Add
// WithResolver([net.DefaultResolver]) to keep spreading, or
// WithResolver(nil) to say that the dialer resolves (and silence the
// line).
func WithDialer(dial DialFunc) Option {
	return poolOption(func(c *config) {
		if dial == nil {
			c.invalid("WithDialer(nil): the dialer must not be nil")
			return
		}
		c.dialer, c.dialerSet = dial, true
	})
}

// WithResolver sets the resolver a pool uses for a host name. The pool
// of a "tcp", "tcp4" or "tcp6" address whose host is a name (not an IP
// literal) looks up every A and AAAA record of the name through r (only
// A records for "tcp4", AAAA for "tcp6") and spreads its conns over the
// addresses: each dial goes, through the dialer, to "ip:port" of the
// address with the fewest conns open or dialing, so that with every
// address healthy their counts differ by at most one. The pool looks the
// name up again every [WithResolveInterval], and soon after a dial
// fails. An address that leaves the set is drained: its idle conns close
// at the resolve that saw it go (Stats.AddressRemovedClosed), no Get is
// handed a conn to it after that resolve, and borrowed ones close when
// they come back. A new address gets its share as [WithRebalanceRate]
// moves conns to it. A failed lookup keeps the last good set, and the
// first failure of a streak is logged; until a lookup first succeeds,
// dials go to the address as given, and the dialer resolves it (those
// conns are drained once a lookup succeeds). Each
// address backs off on its own after failed dials ([WithDialBackoff]):
// Gets are served by the others, and fail fast only when every address
// backs off. [Stats] reports each address (Stats.Addresses), and each
// conn's RemoteAddr is the address it goes to. The lookup's context ends
// at the dial timeout, or defaultDialTimeout if there is none. The
// default is [net.DefaultResolver] for a pool that dials with its default
// dialer; a pool given [WithDialer] resolves only if WithResolver is
// given too (its dialer may be a proxy, or TLS that needs the name). An
// IP literal, or another network, is dialed as given, with no lookup.
//
// WithResolver(nil) turns resolving off: every dial goes to the address
// as given, and the dialer resolves it as it would without a pool. Use it
// for a dialer that must see the name, such as one through a SOCKS proxy
// or one that pins TLS sessions to the name.
func WithResolver(r Resolver) Option {
	return poolOption(func(c *config) { c.resolver, c.resolverSet = r, true })
}

// WithResolveInterval sets how often a pool of a host name looks the name
// up again ([WithResolver]): each wait is d shortened by up to a tenth at
// random, so that pools do not query in step and a change is seen within
// d; after a failed dial the next lookup comes within d/10. d must be
// positive. The default is 30s. It is also the period of
// [WithRebalanceRate].
func WithResolveInterval(d time.Duration) Option {
	return poolOption(func(c *config) {
		if d <= 0 {
			c.invalid("WithResolveInterval(%v): must be positive", d)
			return
		}
		c.resolveInterval = d
	})
}

// WithRebalanceRate bounds how fast a pool of a host name moves conns to
// an address that has fewer than its share, such as one just added to
// the name's records or one that came back after failed dials: at most n
// conns are retired per resolve interval, from the addresses with the
// most conns, idle ones first (closed at once) and then borrowed ones
// (closed when they come back), each replaced by a dial that goes where
// conns are fewest (Stats.RebalancedClosed). So the addresses end up
// within one conn of each other without a reconnect storm. n must not be
// negative; 0 turns rebalancing off, and a new address then gets only new
// dials. The default is 4 (defaultRebalanceRate).
func WithRebalanceRate(n int) Option {
	return poolOption(func(c *config) {
		if n < 0 {
			c.invalid("WithRebalanceRate(%d): must not be negative", n)
			return
		}
		c.rebalanceRate = n
	})
}

// WithDialTimeout bounds each dial, including a TLS handshake the dialer
// does. The bound is the dial's own: it neither shortens nor extends the
// wait of the Get that asked for the conn. A client's dial through
// [Pool.DialContext] waits at the cap for at most d too. If d is 0, a dial
// ends only when it fails or the pool closes. The default is 5s.
func WithDialTimeout(d time.Duration) Option {
	return poolOption(func(c *config) { c.dialTimeout = d })
}

// WithDialBackoff sets how long the pool waits before dialing again after
// consecutive dial failures: min after the first, doubling up to max, each
// wait jittered to between half and all of it. While a wait runs, Gets that
// would have to dial fail at once with the last dial error, and warming
// pauses; the first dial after it is the probe. min must be positive and
// max at least min. The defaults are 100ms and 5s.
func WithDialBackoff(min, max time.Duration) Option {
	return poolOption(func(c *config) { c.backoffMin, c.backoffMax = min, max })
}

// WithHealthCheck sets the checker the pool runs on idle conns in the
// background every HealthCheckInterval, off the Get path. A conn that
// fails its check is closed. The default is [Liveness].
func WithHealthCheck(h HealthChecker) Option {
	return poolOption(func(c *config) {
		if h == nil {
			c.invalid("WithHealthCheck(nil): the checker must not be nil")
			return
		}
		c.checker = h
	})
}

// WithHealthCheckInterval sets how often idle conns are checked: a conn is
// checked once it has been idle, and unchecked, for d. If d is 0, there
// are no background checks. The default is 30s.
func WithHealthCheckInterval(d time.Duration) Option {
	return poolOption(func(c *config) { c.checkInterval = d })
}

// WithHealthCheckTimeout bounds each background check: the conn's deadline
// and the check's context both end after d. d must be positive and no
// longer than the interval. The default is the shorter of the interval and
// 5s.
func WithHealthCheckTimeout(d time.Duration) Option {
	return poolOption(func(c *config) { c.checkTimeout, c.checkTimeSet = d, true })
}

// WithLivenessCheck turns the checkout peek on or off. When on, every Get
// of an idle conn first peeks at its socket without blocking and drops the
// conn if the peer closed or reset it, or if bytes are waiting that no one
// asked for (left by an earlier borrower, or sent unasked). A conn never
// handed out before may have bytes waiting: a server's greeting belongs to
// its first borrower. The peek costs one syscall (a few hundred
// nanoseconds) and is skipped for conns without a socket, such as a
// net.Pipe. A *tls.Conn (or any conn with a NetConn method) is peeked
// through the socket it wraps: a close or reset by the peer drops it, even
// behind a close_notify alert on Linux, but bytes waiting are TLS records
// that only the conn can read, so they do not. The default is on.
func WithLivenessCheck(enabled bool) Option {
	return poolOption(func(c *config) { c.livenessOnGet = enabled })
}

// WithLogger sets where the pool reports dial failures (once per streak of
// failures, not per attempt), recoveries, and conns closed by health
// checks. The default discards everything.
func WithLogger(l *slog.Logger) Option {
	return poolOption(func(c *config) {
		if l == nil {
			c.invalid("WithLogger(nil): the logger must not be nil")
			return
		}
		c.logger = l
	})
}

// WithName names the pool in its log lines, events, Stats and metrics,
// such as "orders-db primary". The default is the network and address,
// "tcp 10.0.0.7:5432"; in a [Group], each pool is named by its address,
// after the name if one is given. The default names are unique in the
// process, as the exporters need names to be: a second pool of one
// address (even once the first is closed, as a collector may still report
// it), or a Group's pool of an address that a pool of its own also dials,
// gets " #2" after it, or " #3"... Give pools of one address names of
// your own to tell them apart in the metrics.
func WithName(name string) Option {
	return poolOption(func(c *config) {
		if name == "" {
			c.invalid("WithName(%q): the name must not be empty", name)
			return
		}
		c.name = name
	})
}

// WithMaxWaiters caps the Gets queued for a conn at once: a Get that would
// be the n+1st waiter fails at once with [ErrTooManyWaiters], so that one
// slow backend cannot pile up every goroutine of the process. n must not
// be negative; 0, the default, is no limit.
func WithMaxWaiters(n int) Option {
	return poolOption(func(c *config) {
		if n < 0 {
			c.invalid("WithMaxWaiters(%d): must not be negative", n)
			return
		}
		c.maxWaiters = n
	})
}

// WithUseTimeMetrics turns on the use-time histogram of [Stats] (UseTime):
// how long each conn is held, from Get to Put. It costs a clock read on
// each Get and Put, which is why it is off by default.
func WithUseTimeMetrics(enabled bool) Option {
	return poolOption(func(c *config) { c.useTimeMetrics = enabled })
}
