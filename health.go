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
