package connpool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"
)

// DialContext hands out a conn for a client that manages its own
// connections (net/http, gRPC, database/sql drivers): pass it as
// [net/http.Transport.DialContext], or use [Pool.DialAddr].
//
// Such clients close a conn when their protocol session is over (an HTTP/2
// GOAWAY, a PostgreSQL Terminate, a MySQL COM_QUIT, an HTTP body left
// unread), and a conn in that state must not be reused. So a conn from
// DialContext is destroyed when the client closes it, and its slot freed:
// it is never put back. What the pool gives these clients is warm,
// health-checked spare conns (see [WithMinIdle]: no TCP or TLS handshake on
// the request path), one cap shared by every client of the pool, and
// [Pool.Stats].
//
// DialContext only hands out conns no one has used: an idle conn that was
// never borrowed, or a fresh dial. network and address must be the pool's
// (for a pool of a host name, the name, not one of its addresses); for
// any other, DialContext returns [ErrWrongAddress] and never a conn to
// the wrong host. Otherwise it behaves as [Pool.Get], ctx included.
//
// For HTTPS, give DialContext to the Transport and let the Transport do
// TLS: a conn wrapped by DialTLSContext would lose HTTP/2, which needs a
// *tls.Conn.
//
// A client with a pool of its own (go-redis, database/sql, an
// http.Transport) keeps the conns it dialed, idle ones included, until it
// closes them: size it within the pool's cap (see docs/clients.md). When
// it dials while clients hold every conn of the pool, its dial waits at
// the cap as a Get does, for at most the dial timeout ([WithDialTimeout],
// 5s by default), as a [net.Dialer]'s Timeout bounds its dial: a client
// whose dials' contexts never end (net/http's Transport detaches a dial
// from the request that started it, and keeps it going after the request
// was served by another conn) leaves no dial waiting past it. If the wait
// ends first, DialContext returns an
// error that wraps both ctx's error and [ErrClientPoolOverCap] and names
// the settings to change (a conn being dialed counts as a client's). If
// it had waited 100ms or more, the pool also warns, once per streak,
// through [WithLogger] or, when the pool's logger discards (the default),
// through [slog.Default]; and from then until a client closes a conn, a
// DialContext at the cap while clients hold every conn, none being
// dialed, returns an error wrapping ErrClientPoolOverCap at once: no wait
// can succeed before a client closes a conn, and a client whose dials
// each wait out their timeout stalls its own callers. In a [Group], the
// same holds for the group's cap once a dial has waited at it for a second
// with no client registered with [Group.CloseIdleWith].
//
// An error of a dial or a wait is a [*net.OpError] with Op "dial", as a
// [net.Dialer]'s is, so that clients that retry a failed dial do (go-redis
// retries the command); the pool's own errors are inside it, for
// [errors.Is].
//
// On a pool with [WithAdaptiveMaxConns], DialContext returns
// [ErrAdaptiveDialContext]: its conns are never returned, so the adaptive
// cap could not measure them.
func (p *Pool) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if network != p.network || address != p.address {
		return nil, p.refuse(fmt.Errorf("%w: pool dials %s %s, not %s %s",
			ErrWrongAddress, p.network, p.address, network, address))
	}
	if p.adaptive != nil {
		return nil, p.refuse(fmt.Errorf("%w; give a client its conns from a pool without WithAdaptiveMaxConns "+
			"(in a Group, one without it among NewGroup's options), or use Get and Put", ErrAdaptiveDialContext))
	}
	if err := p.groupFailFast(); err != nil {
		return nil, asDialOpError(network, address, p.refuse(err))
	}
	if d := p.cfg.dialTimeout; d > 0 && ctx != nil {
		if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > d {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
	}
	c, err := p.get(ctx, connDestroyOnClose)
	if err != nil {
		return nil, asDialOpError(network, address, err)
	}
	// From here until its close, a client holds it; one handed off from
	// the queue was marked so then (handOffLocked), under mu.
	if !c.pc.client {
		p.clientTook(c.pc)
	}
	return c, nil
}

// refuse counts, and reports to the Get hooks, a DialContext that fails
// with err before it is a Get, and returns err.
func (p *Pool) refuse(err error) error {
	id, start := p.getStarted()
	p.observedDone(&getOp{}, nil, err, id, start)
	return err
}

// DialAddr is [Pool.DialContext] on the pool's network, in the form
// grpc.WithContextDialer and go-sql-driver/mysql's RegisterDialContext
// take: pass p.DialAddr.
func (p *Pool) DialAddr(ctx context.Context, address string) (net.Conn, error) {
	return p.DialContext(ctx, p.network, address)
}

// clientHold is the pool's view of the conns DialContext clients hold:
// conns that come back only when their client closes them, so that a
// DialContext caller waiting while clients hold every conn waits for a
// client to let one go, not for a Put.
type clientHold struct {
	// held counts the conns handed out by DialContext and not closed yet:
	// added when a conn is handed off to a DialContext caller from the
	// queue (under Pool.mu), or by a caller that took one itself after
	// its Get; taken off by closeConn under Pool.mu, or when a caller
	// that had left gives a conn handed to it back. A conn counted is one
	// a client holds or is about to.
	held atomic.Int32
	// streak is set, under Pool.mu, when a DialContext wait of at least
	// clientStreakAfter ran out while clients held every conn: to
	// streakFailFast when no dial was in flight, else to streakWarned. The
	// next close clears it. The pool warns once per streak; while it is
	// streakFailFast, DialContext callers in the same state fail fast.
	streak clientStreak
}

// clientStreak is the state of a streak of DialContext waits that ran out
// while clients held the pool.
type clientStreak uint8

const (
	noStreak       clientStreak = iota
	streakWarned                // warned; a dial in flight may still serve the next caller
	streakFailFast              // warned; no wait can succeed before a client closes a conn
)

// clientsHoldAllLocked reports whether DialContext clients hold every
// conn the cap allows, with no dial in flight: a waiting DialContext
// caller can then be served only once a client closes a conn.
func (p *Pool) clientsHoldAllLocked() bool {
	return p.numDialing == 0 && p.clientsHoldAllButDialsLocked()
}

// clientsFailFastLocked returns, for a DialContext caller about to queue,
// the error it fails fast with while a streak is on and clients still
// hold every conn, or nil.
func (p *Pool) clientsFailFastLocked() error {
	if p.clients.streak != streakFailFast || !p.clientsHoldAllLocked() {
		return nil
	}
	return &waitError{pool: p.name, err: ErrClientPoolOverCap, hint: p.clientOverCapError(),
		state: "failing fast: a DialContext wait already ran out while they did"}
}

// clientStreakAfter is how long a DialContext wait must have lasted, in
// vain while clients held every conn, to start a streak: a wait cut short
// by a tight deadline says little about whether clients let conns go.
const clientStreakAfter = 100 * time.Millisecond

// clientsHoldAllButDialsLocked reports whether DialContext clients hold
// every conn the cap allows that is not being dialed. A dial in flight is
// taken for a client's: in a pool whose clients share it with Get callers
// it may be a Get's, and then the advice it leads to comes one conn early.
func (p *Pool) clientsHoldAllButDialsLocked() bool {
	return p.numOpen >= p.cfg.maxConns && int(p.clients.held.Load()) >= p.numOpen-p.numDialing
}

// clientWaitEndedLocked is called when the ctx of a DialContext caller
// that waited for waited ended in the queue. After a wait of at least
// clientStreakAfter it starts a streak, or makes it fail fast once no
// dial is in flight that could still serve the next caller, and returns
// the warning to log, once per streak, which the caller logs once mu is
// released; "" for none. If clients hold every conn but those being
// dialed, it returns the advice to wrap in the caller's error as hint.
func (p *Pool) clientWaitEndedLocked(waited time.Duration) (warning string, hint error) {
	if !p.clientsHoldAllButDialsLocked() {
		return "", nil
	}
	if waited >= clientStreakAfter {
		was := p.clients.streak
		if p.numDialing == 0 { // clients hold all: no dial can serve the next caller
			p.clients.streak = streakFailFast
		} else if was == noStreak {
			p.clients.streak = streakWarned
		}
		if was == noStreak {
			warning = "connpool: a DialContext wait ran out while DialContext clients held every conn but those being dialed for them"
			if p.clients.streak == streakFailFast {
				warning = "connpool: a DialContext wait ran out while DialContext clients held every conn; " +
					"until a client closes one, DialContext at the cap fails fast"
			}
		}
	}
	return warning, p.clientOverCapError()
}

// clientOverCapError says what the caller of a DialContext met and what to
// change, wrapping ErrClientPoolOverCap. mu must be held.
func (p *Pool) clientOverCapError() error {
	from := "the default, 4 x GOMAXPROCS"
	if p.cfg.maxConnsSet {
		from = "set by WithMaxConns"
	}
	return &adviceError{fmt.Sprintf("all %d conns (MaxConns %d, %s) are held by DialContext clients: "+
		"a client's own pool is larger than MaxConns, or the clients' pools together are; "+
		"cap each client within it and let it close idle conns (go-redis PoolSize and PipelinePoolSize, "+
		"database/sql SetMaxOpenConns and SetMaxIdleConns, http.Transport MaxConnsPerHost and "+
		"MaxIdleConnsPerHost); see %s",
		p.numOpen, p.cfg.maxConns, from, clientsDocs)}
}

// adviceError is the part of a DialContext error that says why clients
// hold every conn and what to change; it wraps ErrClientPoolOverCap
// without repeating its text.
type adviceError struct{ msg string }

func (e *adviceError) Error() string { return e.msg }
func (e *adviceError) Unwrap() error { return ErrClientPoolOverCap }

// clientsDocs is the page that gives each client's settings.
const clientsDocs = "https://github.com/connpool/connpool/blob/main/docs/clients.md"

// warnClientsOverCap logs warning, from clientWaitEndedLocked, with the
// advice hint. It must be called without mu.
func (p *Pool) warnClientsOverCap(warning string, hint error) {
	p.warnLog().Warn(warning, "error", hint)
}

// warnLog is where the pool reports a misconfiguration that stalls its
// users: its logger, or slog.Default when the pool's logger discards (the
// default): a warning nobody sees cannot be acted on.
func (p *Pool) warnLog() *slog.Logger {
	if p.cfg.logger.Handler() == slog.DiscardHandler {
		return slog.Default().With("pool", p.name)
	}
	return p.log
}

// groupHint returns, for a DialContext caller of a pool in a group whose
// wait ran out, the advice to wrap when the group's cap is reached, every
// slot held by conns DialContext clients keep, and no client is
// registered to close its idle ones; else nil. It takes the group's lock:
// call it without mu.
func (p *Pool) groupHint() error {
	l := p.cfg.limit
	if l == nil {
		return nil
	}
	used, size := l.sem.Used()
	if used < size {
		return nil
	}
	held, registered := l.g.clientsHeld()
	if held < size || registered {
		return nil
	}
	return &adviceError{fmt.Sprintf("all %d conns under the group's cap (WithGroupMaxConns(%d)) are held by DialContext clients, "+
		"and no client is registered with Group.CloseIdleWith: the group cannot take back the conns they keep idle; "+
		"register each client (an http.Transport or http.Client) with Group.CloseIdleWith, and bound its idle conns "+
		"(http.Transport IdleConnTimeout, MaxIdleConnsPerHost); see %s",
		held, size, clientsDocs)}
}

// groupFailFast returns, for a DialContext caller of a pool in a group,
// an error wrapping ErrClientPoolOverCap while the group is in a streak of
// dials stuck at its cap with no client to ask (groupLimit.warnStuck) and
// DialContext clients still hold every slot: no slot can free before a
// client closes a conn by itself, and a Transport's request without a
// deadline would wait for that forever. Else nil, at the cost of one
// atomic load.
func (p *Pool) groupFailFast() error {
	l := p.cfg.limit
	if l == nil || !l.g.warned.Load() {
		return nil
	}
	hint := p.groupHint()
	if hint == nil {
		return nil
	}
	return &waitError{pool: p.name, err: ErrClientPoolOverCap, hint: hint,
		state: "failing fast: a dial has waited at the group's cap for a second already"}
}

// clientsHeld returns how many conns DialContext clients hold across the
// group's pools, and whether any client is registered with CloseIdleWith.
func (g *Group) clientsHeld() (held int, registered bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	for _, e := range g.pools {
		held += int(e.pool.clients.held.Load())
	}
	return held, len(g.closers) > 0
}

// asDialOpError returns err, the error of DialContext's Get, as a
// *net.OpError with Op "dial", as net.Dialer's are: clients tell a failed
// dial by it, and some retry it (go-redis retries the command). An error
// that has one inside already, from the pool's dialer, is returned as it
// is.
func asDialOpError(network, address string, err error) error {
	if _, ok := errors.AsType[*net.OpError](err); ok {
		return err
	}
	return &net.OpError{Op: "dial", Net: network, Addr: poolAddr{network, address}, Err: err}
}

// poolAddr is the pool's address as a net.Addr, for the errors of
// DialContext.
type poolAddr struct{ network, address string }

func (a poolAddr) Network() string { return a.network }
func (a poolAddr) String() string  { return a.address }
