package connpool

// A pool's settings: the config that the options of options.go fill in,
// the defaults, and New's validation, which names every mistake.

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"strings"
	"time"
)

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
	ejection        ejectionConfig // WithOutlierEjection; zero: off
	logger          *slog.Logger
	name            string // "" until set: New names the pool "network address"
	nameDefault     bool   // name is the default, claimed unique (names.go)
	inGroup         bool   // a Group's pool, which gives its default name back when it closes (names.go)
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
	defaultIdleTimeout         = 90 * time.Second
	defaultMaxLifetime         = 30 * time.Minute
	defaultDialTimeout         = 5 * time.Second
	defaultHealthCheckInterval = 30 * time.Second
	defaultHealthCheckTimeout  = 5 * time.Second
	defaultDialBackoffMin      = 100 * time.Millisecond
	defaultDialBackoffMax      = 5 * time.Second
	defaultResolveInterval     = 30 * time.Second
	defaultRebalanceRate       = 4
	defaultKeepAlive           = 15 * time.Second
)

func defaultConfig() config {
	return config{
		maxConns:        max(4, 4*runtime.GOMAXPROCS(0)),
		idleTimeout:     defaultIdleTimeout,
		maxLifetime:     defaultMaxLifetime,
		dialTimeout:     defaultDialTimeout,
		backoffMin:      defaultDialBackoffMin,
		backoffMax:      defaultDialBackoffMax,
		checker:         Liveness(),
		checkInterval:   defaultHealthCheckInterval,
		livenessOnGet:   true,
		dialer:          defaultDialer.DialContext,
		resolver:        net.DefaultResolver,
		resolveInterval: defaultResolveInterval,
		rebalanceRate:   defaultRebalanceRate,
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
		c.name, c.nameDefault = network+" "+address, true
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
		c.checkTimeout = min(c.checkInterval, defaultHealthCheckTimeout)
	}
	c.validate()
	c.connectingWanted = c.maxConnecting
	c.maxConnecting = min(c.maxConnecting, c.maxConns)
	if c.nameDefault && len(c.invalidOptions) == 0 {
		c.name = claimName(c.name) // unique among live pools (names.go)
	}
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
	case c.minIdle > c.maxIdle && c.maxIdle >= 0:
		c.invalid("WithMinIdle(%d) exceeds WithMaxIdle(%d)", c.minIdle, c.maxIdle)
	}
	// A value derived from another option (MaxIdle from MaxConns, the
	// jitter from the lifetime) is checked only where the user set it:
	// the error names the option the user gave.
	if c.minIdle < 0 {
		c.invalid("WithMinIdle(%d): must not be negative", c.minIdle)
	}
	if c.maxIdle < 0 && c.maxIdleSet {
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
		if d.v < 0 && (d.name != "WithMaxLifetimeJitter" || c.jitterSet) {
			c.invalid("%s(%v): must not be negative", d.name, d.v)
		}
	}
	if c.lifetimeJitter > c.maxLifetime && c.jitterSet {
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
		} else if n, err := strconv.Atoi(port); err == nil && (n < 0 || n > 65535) {
			c.invalid("New(%q, %q): port %d is out of range: a port is 0 to 65535", network, address, n)
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
