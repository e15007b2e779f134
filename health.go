package connpool

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/connpool/connpool/internal/sockcheck"
)

// HealthChecker checks an idle conn. The pool calls Check in the
// background, never on a borrowed conn, and never hands the conn out while
// its check runs. ctx ends after the check timeout, and the conn's
// deadline is set to the same instant, so a checker that blocks on I/O
// returns when the peer does not answer. Check must leave the conn as it
// found it: it reads exactly the reply to what it wrote. It returns nil
// when the conn is fit for use; any error closes the conn.
//
// The conn is the one the dialer returned, not a [*Conn] wrapper.
// Implementations must be safe for concurrent use on different conns.
type HealthChecker interface {
	Check(ctx context.Context, c net.Conn) error
}

// HealthCheckFunc adapts a function to a [HealthChecker].
type HealthCheckFunc func(ctx context.Context, c net.Conn) error

// Check calls f(ctx, c).
func (f HealthCheckFunc) Check(ctx context.Context, c net.Conn) error { return f(ctx, c) }

// Liveness returns the cheap checker the pool uses by default: a
// non-blocking peek at the socket that fails when the peer has closed or
// reset the conn. It sends nothing, so it cannot find a peer that is
// hung but connected; [PingPong] can. Bytes waiting to be read do not fail
// it (a server's greeting is legitimate); the checkout peek of
// [WithLivenessCheck] deals with those. A *tls.Conn is peeked through the
// socket it wraps, for a close or reset only. On a conn without a socket,
// or a platform without the peek, it passes.
func Liveness() HealthChecker { return HealthCheckFunc(checkLiveness) }

func checkLiveness(_ context.Context, c net.Conn) error {
	ck := sockcheck.New(c)
	if ck == nil {
		return nil
	}
	if _, err := ck.Check(); err != nil {
		return fmt.Errorf("%w: %w", ErrHealthCheck, err)
	}
	return nil
}

// PingPong returns a checker that writes ping and expects to read exactly
// pong back, such as "PING\r\n" and "+PONG\r\n" for Redis. It fails on a
// short, different or late reply. ping and pong are copied. An empty pong
// makes New fail.
func PingPong(ping, pong []byte) HealthChecker {
	return &pingPong{ping: bytes.Clone(ping), pong: bytes.Clone(pong)}
}

type pingPong struct {
	ping, pong []byte
}

func (p *pingPong) Check(ctx context.Context, c net.Conn) error {
	if deadline, ok := ctx.Deadline(); ok {
		if err := c.SetDeadline(deadline); err != nil {
			return err
		}
		defer c.SetDeadline(time.Time{})
	}
	if _, err := c.Write(p.ping); err != nil {
		return fmt.Errorf("%w: write ping: %w", ErrHealthCheck, err)
	}
	got := make([]byte, len(p.pong))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("%w: read pong: %w", ErrHealthCheck, err)
	}
	if !bytes.Equal(got, p.pong) {
		return fmt.Errorf("%w: got %q, want %q", ErrHealthCheck, got, p.pong)
	}
	return nil
}

// The checkout peek, which vet and accept (get.go) run on a conn they
// lend, and the maintainer's sweep on every idle conn (maintain.go).

// peeker says who peeks at a conn's socket (healthy).
type peeker uint8

const (
	peekAtCheckout peeker = iota // a Get, before it lends the conn
	peekInSweep                  // the maintainer's sweep of the idle conns
)

// healthy runs the checkout peek. The time-based checks (idle timeout, max
// lifetime) are not needed here: the maintainer closes idle conns at their
// deadlines, and flags borrowed ones to be closed on return. A checkout's
// peek WithLivenessCheck can turn off; the maintainer's sweep peeks
// regardless.
//
// A conn the peer closed or reset usually means the server restarted or a
// middlebox dropped its flows, so the other idle conns are likely dead too:
// a checkout that finds one asks the maintainer to sweep them all now,
// rather than leave each to a later Get or the next background check.
func (p *Pool) healthy(pc *poolConn, by peeker) bool {
	onGet := by == peekAtCheckout
	if (onGet && !p.cfg.livenessOnGet) || pc.check == nil {
		return true
	}
	pending, err := pc.check.Check()
	if err != nil {
		if onGet && p.sweepWanted.CompareAndSwap(false, true) {
			p.wakeMaintainer()
		}
		return false
	}
	// Bytes waiting on a conn never handed out are the server's greeting,
	// which belongs to the first borrower.
	return !(pending && pc.used)
}
