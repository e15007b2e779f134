package connpoolfleet

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Defaults of the options.
const (
	// DefaultTTL is the lease length; members renew every third of it.
	DefaultTTL = 10 * time.Second
	// DefaultDamping is the fall of a target, in conns, that is held back.
	DefaultDamping = 1
	// DefaultSmoothing is the weight of the newest demand sample in the
	// demand a member reports (an exponential moving average).
	DefaultSmoothing = 0.5
)

// ErrInvalidOption is wrapped by the error Join returns for a bad option
// or argument; the message names it.
var ErrInvalidOption = errors.New("connpoolfleet: invalid option")

// Option configures a Member, given to Join.
type Option func(*config)

type config struct {
	ttl         time.Duration
	floor       int // 0: one per target
	safe        int // -1: the floor
	reserveHold time.Duration
	holdSet     bool
	margin      time.Duration
	marginSet   bool
	damping     int
	smoothing   float64
	id          string
	gate        *Gate
	logger      *slog.Logger
	events      func(Event)
	errs        []error
}

func defaults() config {
	return config{ttl: DefaultTTL, safe: -1, damping: DefaultDamping, smoothing: DefaultSmoothing, logger: slog.Default()}
}

func (c *config) bad(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...))
}

// WithTTL sets the lease length. Members renew every ttl/3 and fence
// themselves a margin before a lease they could not renew ends. It must be
// at least 30ms. The default is DefaultTTL (10s).
func WithTTL(ttl time.Duration) Option {
	return func(c *config) {
		if ttl < 30*time.Millisecond {
			c.bad("WithTTL(%v): must be at least 30ms", ttl)
			return
		}
		c.ttl = ttl
	}
}

// WithFloor sets the conns the member keeps whatever its demand, counted
// against the budget. It must be at least the number of targets (a pool's
// cap cannot go below 1). The default is one per target.
func WithFloor(n int) Option {
	return func(c *config) {
		if n < 1 {
			c.bad("WithFloor(%d): must be at least 1", n)
			return
		}
		c.floor = n
	}
}

// WithSafeShare sets the caps the member falls back on when it cannot
// renew its lease (fenced). It must be at least the number of targets and
// at most the floor, which it defaults to: the floor is reserved for it in
// Redis, so it may keep using it.
func WithSafeShare(n int) Option {
	return func(c *config) {
		if n < 1 {
			c.bad("WithSafeShare(%d): must be at least 1", n)
			return
		}
		c.safe = n
	}
}

// WithReserveHold sets how long after a lease expires the ledger keeps the
// member's safe share reserved, and so how long a fenced member with a Gate
// may still dial within it. If d is 0, the safe share is released with the
// lease and a fenced member dials nothing. The default is the TTL.
func WithReserveHold(d time.Duration) Option {
	return func(c *config) {
		if d < 0 {
			c.bad("WithReserveHold(%v): must not be negative", d)
			return
		}
		c.reserveHold, c.holdSet = d, true
	}
}

// WithFenceMargin sets how long before a lease could have ended the member
// fences itself, to cover clocks that run at different rates and the time a
// fence takes. It must be below a third of the TTL. The default is a tenth
// of the TTL.
func WithFenceMargin(d time.Duration) Option {
	return func(c *config) {
		if d <= 0 {
			c.bad("WithFenceMargin(%v): must be positive", d)
			return
		}
		c.margin, c.marginSet = d, true
	}
}

// WithDamping sets the fall of a target, in conns, that the ledger holds
// back so that shares do not flap. If n is 0, every change is taken. The
// default is DefaultDamping (1).
func WithDamping(n int) Option {
	return func(c *config) {
		if n < 0 {
			c.bad("WithDamping(%d): must not be negative", n)
			return
		}
		c.damping = n
	}
}

// WithSmoothing sets the weight, in (0, 1], of the newest interval's peak
// demand in the demand the member reports; 1 reports each interval's peak as
// it is. The default is DefaultSmoothing (0.5).
func WithSmoothing(alpha float64) Option {
	return func(c *config) {
		if !(alpha > 0 && alpha <= 1) {
			c.bad("WithSmoothing(%v): must be in (0, 1]", alpha)
			return
		}
		c.smoothing = alpha
	}
}

// WithID names the member in the ledger; two live members must not share
// an ID. The default is the host name, the process ID and a random suffix.
func WithID(id string) Option {
	return func(c *config) {
		if id == "" {
			c.bad("WithID(%q): must not be empty", id)
			return
		}
		c.id = id
	}
}

// WithGate ties the member to a Gate whose dialer its pools use, so that
// they dial nothing outside a valid lease (see Gate).
func WithGate(g *Gate) Option {
	return func(c *config) { c.gate = g }
}

// WithLogger sets where the member logs its fences and lost renews. The
// default is slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.logger = l
		}
	}
}

// WithEvents sets a function the member calls, on its own goroutine and
// holding no lock, on each change of its state, grant or target.
func WithEvents(f func(Event)) Option {
	return func(c *config) { c.events = f }
}

// finish fills the defaults that depend on other options and validates
// them together.
func (c *config) finish(targets int) error {
	if targets < 1 {
		c.bad("Join needs at least one target")
	}
	if c.floor == 0 {
		c.floor = max(targets, 1)
	} else if c.floor < targets {
		c.bad("WithFloor(%d) is below the %d targets: each pool keeps at least 1 conn", c.floor, targets)
	}
	if c.safe < 0 {
		c.safe = c.floor
	} else if c.safe > c.floor {
		c.bad("WithSafeShare(%d) is above the floor %d (WithFloor, or one per target by default)", c.safe, c.floor)
	} else if c.safe < targets {
		c.bad("WithSafeShare(%d) is below the %d targets", c.safe, targets)
	}
	if !c.holdSet {
		c.reserveHold = c.ttl
	}
	if !c.marginSet {
		c.margin = c.ttl / 10
	} else if c.margin >= c.ttl/3 {
		c.bad("WithFenceMargin(%v) must be below a third of WithTTL(%v)", c.margin, c.ttl)
	}
	return errors.Join(c.errs...)
}
