package connpoolfleet

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/connpool/connpool"
)

// ErrFenced is returned by a Gate's dialer while its member holds no valid
// lease: before its first grant, after its lease could have ended, and
// after Leave. A pool that gets it backs off and fails its Gets with it
// (connpool.WithDialBackoff).
var ErrFenced = errors.New("connpoolfleet: no valid lease: the member is joining, fenced or gone; dials wait for a renewed grant")

// Gate refuses dials outside a member's valid lease. Give its Dialer to
// every pool of the member (connpool.WithDialer) and the Gate to Join
// (WithGate): then a process that wakes from a pause past its lease dials
// nothing on its old grant, even before its fence timer has run, and a
// member that waits for its first grant dials nothing at all. It checks the
// monotonic clock on each dial, not on Get or Put. A Gate serves one member;
// it is safe for concurrent use.
type Gate struct {
	base time.Time
	// open is the end, in nanoseconds since base, of the time dials may
	// start: the fence time of the lease, or the end of the reserve hold
	// once the fence is applied; 0 while closed.
	open atomic.Int64
}

// NewGate returns a closed gate: its dialer refuses until a member it is
// given to holds a lease.
func NewGate() *Gate { return &Gate{base: time.Now()} }

// Dialer returns a connpool.DialFunc that dials with next (a net.Dialer when
// nil) while the gate is open, and returns ErrFenced otherwise.
func (g *Gate) Dialer(next connpool.DialFunc) connpool.DialFunc {
	if next == nil {
		var d net.Dialer
		next = d.DialContext
	}
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		if !g.Open() {
			return nil, ErrFenced
		}
		return next(ctx, network, address)
	}
}

// Open reports whether a dial may start now.
func (g *Gate) Open() bool {
	return int64(time.Since(g.base)) < g.open.Load()
}

// openUntil lets dials start until t; a zero t closes the gate.
func (g *Gate) openUntil(t time.Time) {
	if t.IsZero() {
		g.open.Store(0)
		return
	}
	g.open.Store(int64(t.Sub(g.base)))
}
