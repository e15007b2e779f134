// Package sockcheck tells, without blocking and without consuming data,
// whether a pooled socket is still usable: whether the peer has closed or
// reset it, and whether bytes are waiting that nobody asked for.
//
// It peeks at the socket (recv with MSG_PEEK on a non-blocking fd) on
// platforms that have it, behind build tags; elsewhere [New] returns nil and
// the pool skips the check. A Checker is set up once per conn, so that a
// check allocates nothing.
//
// A conn that frames its own records over a socket, such as a *tls.Conn,
// is checked through the socket it wraps (its NetConn method). Bytes
// waiting there are the protocol's records (a TLS 1.3 server sends session
// tickets after the handshake, and an alert before it closes), which only
// the protocol may read, so they say nothing; but a peer's close or reset
// is found even behind them where the platform can tell (Linux, through
// POLLRDHUP).
package sockcheck

import (
	"net"
	"syscall"
)

// Checker peeks at one socket. It is not safe for concurrent use: only the
// current holder of a conn checks it.
//
// It keeps the socket's descriptor, read once by New, and calls the system
// directly: going through syscall.RawConn.Control on every check would add
// a reference count around the call, two atomic operations that cost a
// sixth of the peek. That is sound only while nobody but the Checker's
// owner can close the conn: once a socket is closed its number may name
// another socket opened since. An owner that has let the conn out of its
// hands (handed the inner conn to code that might close it) calls
// [Checker.Share], after which every check goes through Control, which
// fails once the conn is closed and never reaches a reused number.
type Checker struct {
	fd     uintptr
	rc     syscall.RawConn // the conn's, for checks after Share
	shared bool            // the conn may be closed by others: check through rc
	framed bool            // the socket carries a protocol's records: see New
	err    error           // the conn was closed before New: every Check reports it
	buf    [1]byte
}

// New returns a Checker for c, or nil when c exposes no socket (a net.Pipe,
// a custom conn with neither [syscall.Conn] nor a NetConn method returning
// one) or the platform cannot peek. A conn that is not a [syscall.Conn]
// but wraps one, as a *tls.Conn does, is checked through the wrapped
// socket, with bytes waiting there left to the protocol.
func New(c net.Conn) *Checker {
	if !supported {
		return nil
	}
	framed := false
	sc, ok := c.(syscall.Conn)
	if !ok {
		w, wraps := c.(interface{ NetConn() net.Conn })
		if !wraps {
			return nil
		}
		if sc, ok = w.NetConn().(syscall.Conn); !ok {
			return nil
		}
		framed = true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	ck := &Checker{rc: rc, framed: framed}
	if err := rc.Control(func(fd uintptr) { ck.fd = fd }); err != nil {
		ck.err = err
	}
	return ck
}

// Check reports the socket's state. It returns io.EOF when the peer has
// closed its side (FIN), the socket's error when it was reset or failed,
// and pending true when bytes are waiting to be read. For a framed conn
// (see New) pending is always false.
func (ck *Checker) Check() (pending bool, err error) {
	if ck.err != nil {
		return false, ck.err
	}
	if !ck.shared {
		return ck.check(ck.fd)
	}
	var p bool
	var perr error
	if err := ck.rc.Control(func(fd uintptr) { p, perr = ck.check(fd) }); err != nil {
		return false, err // closed: the descriptor is no longer the conn's
	}
	return p, perr
}

// check judges socket fd, which is the conn's.
func (ck *Checker) check(fd uintptr) (pending bool, err error) {
	pending, err = classify(ck.peek(fd))
	if !pending || !ck.framed {
		return pending, err
	}
	// Records wait, which are not ours to read; a close may wait behind them.
	return false, hangup(fd)
}

// Share makes every later Check read the descriptor through the conn,
// under its reference count, rather than use the number read at New:
// for a conn that code other than the Checker's owner may close. It costs
// two atomic operations a check.
func (ck *Checker) Share() { ck.shared = true }
