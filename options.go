package connpool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
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
	g := groupConfig{idleAfter: DefaultGroupIdleTimeout}
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

// config holds every setting of a pool. maxConns, maxIdle, minIdle and
// maxConnecting can change at run time (resize.go): they are written with
// Pool.mu and Pool.idleMu held, so either lock suffices to read them.
// The rest is read-only after New. Fields marked "set" record whether
// the user chose a value, for defaults that derive from other settings.
type config struct {
	maxConns      int
	maxConnsSet   bool
	minIdle       int
	maxIdle       int
	maxIdleSet    bool
	maxIdleWanted int // MaxIdle as set; maxIdle is it bounded by MaxConns (resize.go)
	maxConnecting int
	connectingSet bool
	// connectingWanted is MaxConnecting before it was bounded by
	// MaxConns, for SetMaxConns to bound again.
	connectingWanted int

	idleTimeout    time.Duration
	maxLifetime    time.Duration
	lifetimeJitter time.Duration
	jitterSet      bool
	dialTimeout    time.Duration
	backoffMin     time.Duration
	backoffMax     time.Duration

	checker         HealthChecker
	checkInterval   time.Duration
	checkTimeout    time.Duration
	checkTimeSet    bool
	livenessOnGet   bool
	dialer          DialFunc
	dialerSet       bool // WithDialer was given: resolve only if WithResolver was too
	resolverSet     bool
	resolver        Resolver
	resolveInterval time.Duration
	rebalanceRate   int
	logger          *slog.Logger
	name            string // "" until set: New names the pool "network address"
	maxWaiters      int    // 0: no limit
	useTimeMetrics  bool
	leakThreshold   time.Duration // 0: no leak detection
	// WithAdaptiveMaxConns's bounds (adaptive.go).
	adaptiveMin, adaptiveMax int
	adaptiveSet              bool
	hooks                    Hooks
	invalidOptions           []error // found while applying options, reported by New

	limit *groupLimit // the cap of the pool's group, or nil

	queuePolicy QueuePolicy // WithQueuePolicy's, defaults filled in (overload.go)
}

// Defaults, each documented on its option.
const (
	DefaultIdleTimeout         = 90 * time.Second
	DefaultMaxLifetime         = 30 * time.Minute
	DefaultDialTimeout         = 5 * time.Second
	DefaultHealthCheckInterval = 30 * time.Second
	DefaultHealthCheckTimeout  = 5 * time.Second
	DefaultDialBackoffMin      = 100 * time.Millisecond
	DefaultDialBackoffMax      = 5 * time.Second
	DefaultResolveInterval     = 30 * time.Second
	DefaultRebalanceRate       = 4
	defaultKeepAlive           = 15 * time.Second
)

func defaultConfig() config {
	return config{
		maxConns:        max(4, 4*runtime.GOMAXPROCS(0)),
		idleTimeout:     DefaultIdleTimeout,
		maxLifetime:     DefaultMaxLifetime,
		dialTimeout:     DefaultDialTimeout,
		backoffMin:      DefaultDialBackoffMin,
		backoffMax:      DefaultDialBackoffMax,
		checker:         Liveness(),
		checkInterval:   DefaultHealthCheckInterval,
		livenessOnGet:   true,
		dialer:          defaultDialer.DialContext,
		resolver:        net.DefaultResolver,
		resolveInterval: DefaultResolveInterval,
		rebalanceRate:   DefaultRebalanceRate,
		logger:          slog.New(slog.DiscardHandler),
	}
}

// defaultDialer turns TCP keepalive on, so that a peer that vanished
// without a FIN is found even on a conn nobody uses.
var defaultDialer = &net.Dialer{
	KeepAliveConfig: net.KeepAliveConfig{
		Enable:   true,
		Idle:     defaultKeepAlive,
		Interval: defaultKeepAlive,
		Count:    3,
	},
}

// WithMaxConns caps the conns the pool has open at once, counting conns
// being dialed, idle and borrowed. A Get at the cap waits. n must be at
// least 1. The default is 4 × GOMAXPROCS, and at least 4.
func WithMaxConns(n int) Option {
	return poolOption(func(c *config) { c.maxConns, c.maxConnsSet = n, true })
}

// WithMinIdle keeps n idle conns ready, dialed in the background ahead of
// demand and refilled as soon as the count drops. n must be between 0 and
// MaxIdle. The default is 0: no warming.
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
// at the dial timeout, or DefaultDialTimeout if there is none. The
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
// dials. The default is 4 (DefaultRebalanceRate).
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
// wait of the Get that asked for the conn. If d is 0, a dial ends only when
// it fails or the pool closes. The default is 5s.
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

// WithName names the pool in its log lines, events and Stats, such as
// "orders-db primary". The default is the network and address, "tcp
// 10.0.0.7:5432"; in a [Group], each pool is named by its address, after
// the name if one is given.
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

func (c *config) invalid(format string, args ...any) {
	c.invalidOptions = append(c.invalidOptions,
		fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...))
}

// newConfig applies opts over the defaults, fills the derived defaults and
// validates the result. Every problem is reported, each naming its option.
func newConfig(network, address string, opts []Option) (config, error) {
	c := defaultConfig()
	for i, o := range opts {
		if o == nil {
			c.invalid("option %d is nil", i)
			continue
		}
		o.applyPool(&c)
	}
	c.applyAdaptive()
	if c.name == "" {
		c.name = network + " " + address
	}
	if network == "" {
		c.invalid("New: empty network")
	}
	if address == "" {
		c.invalid("New: empty address")
	} else {
		c.checkAddress(network, address)
	}
	if !c.maxIdleSet {
		c.maxIdle = c.maxConns
	}
	c.maxIdleWanted = c.maxIdle
	if !c.connectingSet {
		c.maxConnecting = max(4, 2*runtime.GOMAXPROCS(0))
	}
	if !c.jitterSet {
		c.lifetimeJitter = c.maxLifetime / 10
	}
	if !c.checkTimeSet {
		c.checkTimeout = min(c.checkInterval, DefaultHealthCheckTimeout)
	}
	c.validate()
	c.connectingWanted = c.maxConnecting
	c.maxConnecting = min(c.maxConnecting, c.maxConns)
	return c, errors.Join(c.invalidOptions...)
}

func (c *config) validate() {
	switch {
	case c.maxConns < 1:
		c.invalid("WithMaxConns(%d): must be at least 1", c.maxConns)
	case c.maxIdle > c.maxConns:
		c.invalid("WithMaxIdle(%d) exceeds %s", c.maxIdle, c.maxConnsOrigin(c.maxIdle))
	case c.minIdle > c.maxConns:
		c.invalid("WithMinIdle(%d) exceeds %s", c.minIdle, c.maxConnsOrigin(c.minIdle))
	case c.minIdle > c.maxIdle:
		c.invalid("WithMinIdle(%d) exceeds WithMaxIdle(%d)", c.minIdle, c.maxIdle)
	}
	if c.minIdle < 0 {
		c.invalid("WithMinIdle(%d): must not be negative", c.minIdle)
	}
	if c.maxIdle < 0 {
		c.invalid("WithMaxIdle(%d): must not be negative", c.maxIdle)
	}
	if c.maxConnecting < 1 {
		c.invalid("WithMaxConnecting(%d): must be at least 1", c.maxConnecting)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"WithIdleTimeout", c.idleTimeout},
		{"WithMaxLifetime", c.maxLifetime},
		{"WithMaxLifetimeJitter", c.lifetimeJitter},
		{"WithDialTimeout", c.dialTimeout},
		{"WithHealthCheckInterval", c.checkInterval},
	} {
		if d.v < 0 {
			c.invalid("%s(%v): must not be negative", d.name, d.v)
		}
	}
	if c.lifetimeJitter > c.maxLifetime {
		c.invalid("WithMaxLifetimeJitter(%v) exceeds WithMaxLifetime(%v)", c.lifetimeJitter, c.maxLifetime)
	}
	if c.backoffMin <= 0 || c.backoffMax < c.backoffMin {
		c.invalid("WithDialBackoff(%v, %v): min must be positive and max at least min", c.backoffMin, c.backoffMax)
	}
	if c.checkTimeSet && (c.checkTimeout <= 0 || (c.checkInterval > 0 && c.checkTimeout > c.checkInterval)) {
		c.invalid("WithHealthCheckTimeout(%v): must be positive and at most WithHealthCheckInterval(%v)", c.checkTimeout, c.checkInterval)
	}
	if p, ok := c.checker.(*pingPong); ok && len(p.pong) == 0 {
		c.invalid("WithHealthCheck(PingPong(%q, %q)): pong must not be empty", p.ping, p.pong)
	}
}

// maxConnsOrigin names MaxConns in an error about a setting of need that
// exceeds it: the option that set it, or the default and where it comes
// from, with what to do about it.
func (c *config) maxConnsOrigin(need int) string {
	switch {
	case c.maxConnsSet:
		return fmt.Sprintf("WithMaxConns(%d)", c.maxConns)
	case c.adaptiveSet:
		return fmt.Sprintf("MaxConns %d, the min of WithAdaptiveMaxConns(%d, %d)", c.maxConns, c.adaptiveMin, c.adaptiveMax)
	default:
		return fmt.Sprintf("the default MaxConns %d (4 × GOMAXPROCS, which is %d here, and at least 4): add WithMaxConns(%d) or more",
			c.maxConns, runtime.GOMAXPROCS(0), need)
	}
}

// checkAddress reports an address that the networks of package net
// cannot dial, so that the mistake shows at New rather than at the first
// Get. A network net does not know is left to the dialer, if there is
// one.
func (c *config) checkAddress(network, address string) {
	switch network {
	case "tcp", "tcp4", "tcp6", "udp", "udp4", "udp6":
		_, port, err := net.SplitHostPort(address)
		why := "missing port"
		if err != nil {
			why = err.Error()
			if ae, ok := err.(*net.AddrError); ok {
				why = ae.Err
			}
		}
		if err != nil || port == "" {
			c.invalid("New(%q, %q): %s: a %s address is host:port, such as \"localhost:6379\", \"10.0.0.7:5432\" or \"[::1]:6379\"",
				network, address, why, network)
		}
	case "unix", "unixgram", "unixpacket", "ip", "ip4", "ip6":
		// A unix address is a path or an abstract name, an ip one a host.
	default:
		if strings.HasPrefix(network, "ip") && strings.Contains(network, ":") || c.dialerSet {
			return // "ip4:icmp" and the like, or a network the dialer knows
		}
		c.invalid("New(%q, %q): unknown network: the default dialer knows tcp, tcp4, tcp6, udp, udp4, udp6, unix, unixgram, unixpacket and ip; give WithDialer for another",
			network, address)
	}
}
