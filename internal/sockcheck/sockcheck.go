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
// sixth of the peek. So a Checker must not be used once its conn is
// closed, when the descriptor may name another file. The pool checks only
// conns it holds, which nobody else closes.
type Checker struct {
	fd  uintptr
	err error // the conn was closed before New: every Check reports it
	buf [1]byte
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
	ck := &Checker{}
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
	return classify(ck.peek())
}
