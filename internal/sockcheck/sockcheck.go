// Package sockcheck tells, without blocking and without consuming data,
// whether a pooled socket is still usable: whether the peer has closed or
// reset it, and whether bytes are waiting that nobody asked for.
//
// It peeks at the socket (recv with MSG_PEEK on a non-blocking fd) on
// platforms that have it, behind build tags; elsewhere [New] returns nil and
// the pool skips the check. A Checker is set up once per conn, so that a
// check allocates nothing.
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
	err    error           // the conn was closed before New: every Check reports it
	buf    [1]byte
}

// New returns a Checker for c, or nil when c exposes no socket (a *tls.Conn,
// a net.Pipe, a custom conn without [syscall.Conn]) or the platform cannot
// peek.
func New(c net.Conn) *Checker {
	if !supported {
		return nil
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	ck := &Checker{rc: rc}
	if err := rc.Control(func(fd uintptr) { ck.fd = fd }); err != nil {
		ck.err = err
	}
	return ck
}

// Check reports the socket's state. It returns io.EOF when the peer has
// closed its side (FIN), the socket's error when it was reset or failed,
// and pending true when bytes are waiting to be read.
func (ck *Checker) Check() (pending bool, err error) {
	if ck.err != nil {
		return false, ck.err
	}
	if !ck.shared {
		return classify(ck.peek(ck.fd))
	}
	var n int
	var perr error
	if err := ck.rc.Control(func(fd uintptr) { n, perr = ck.peek(fd) }); err != nil {
		return false, err // closed: the descriptor is no longer the conn's
	}
	return classify(n, perr)
}

// Share makes every later Check read the descriptor through the conn,
// under its reference count, rather than use the number read at New:
// for a conn that code other than the Checker's owner may close. It costs
// two atomic operations a check.
func (ck *Checker) Share() { ck.shared = true }
