package connpool

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/connpool/connpool/internal/sockcheck"
)

// poolConn is one open connection the pool owns. Exactly one party holds
// it at a time (see ledger.go): the idle stack (under Pool.idleMu), one
// borrower, one waiter being served, one background check, or the closer.
// The holder alone reads and writes the mutable fields; hand-over happens
// under Pool.idleMu or Pool.mu, which orders it.
type poolConn struct {
	pool    *Pool
	nc      net.Conn
	check   *sockcheck.Checker // nil when nc has no socket to peek at
	id      uint64             // unique within the pool, increasing in dial order
	gen     uint64             // the pool's Reset generation when its dial started
	born    int64              // pool clock when its dial ended
	expires int64              // pool clock; 0 = no max lifetime
	ep      *endpoint          // the address it was dialed to (resolve.go)

	// Mutable, owned by the holder.
	holder      holder // who holds it; written by the mover under mu or idleMu, read by checkInvariants under both
	lastChecked int64  // pool clock when last passed a background check
	lentAt      int64  // clock.Ticks when last checked out, kept only for Put hooks and the use-time histogram
	used        bool   // handed to a borrower at least once
	client      bool   // handed out by DialContext: its client holds it until it closes it (clientHold)
	ownWrappers bool   // under leak detection: a wrapper of its own for each Get, not from a slab
	slab        *[wrapperSlab]Conn
	slabNext    int // next unused wrapper in slab

	loan atomic.Pointer[loan] // the current loan, under leak detection

	// Guarded by Pool.idleMu while pc is idle; written by the holder
	// before it pushes pc on the idle stack.
	lastUsed int64 // pool clock when last returned; 0 until the reaper stamps it

	// Written with Pool.mu and Pool.idleMu held, so read under either.
	retire bool // past its max lifetime while not idle, or flagged by a drain or a rebalance: close on return
	// why is, with retire, the reason a drain or a rebalance flagged it
	// for (CloseAddressRemoved, CloseRebalanced), counted in its
	// endpoint's leaving; 0 for one past its lifetime.
	why CloseReason

	// ejection is, for a conn closed as CloseEjected, its address's
	// ejections at the close: its ConnClosed event follows the event of
	// that ejection (emitConnClosed). Written under Pool.mu by closeConn's
	// goroutine, which alone reads it after.
	ejection int64
}

// address is the address pc was dialed to.
func (pc *poolConn) address() string {
	if pc.ep == nil {
		return pc.pool.address
	}
	return pc.ep.Addr
}

// retiredReason is why a conn flagged retire is closed.
func (pc *poolConn) retiredReason() CloseReason {
	if pc.why != 0 {
		return pc.why
	}
	return CloseLifetime
}

// wrapperSlab is how many Conn wrappers a conn allocates at once. Each Get
// still gets a wrapper no one held before (that is what makes a returned
// Conn dead to its holder); the slab only spreads one allocation over
// several Gets. Each conn has its own, taken by its holder without a lock,
// so that the wrappers of conns held on different cores do not share a
// cache line. A wrapper kept by a caller keeps its slab, 128 bytes,
// reachable.
const wrapperSlab = 8

// newWrapper returns a new Conn for pc, from pc's slab.
func (pc *poolConn) newWrapper() *Conn {
	if pc.ownWrappers {
		// Leak detection watches each wrapper for its own collection: a
		// slab would keep a dropped one reachable.
		return &Conn{pc: pc}
	}
	if pc.slab == nil || pc.slabNext == wrapperSlab {
		pc.slab, pc.slabNext = new([wrapperSlab]Conn), 0
	}
	c := &pc.slab[pc.slabNext]
	pc.slabNext++
	c.pc = pc
	return c
}

// returnedAt is when pc was last returned, for ordering the idle stack: a
// conn not yet stamped by the reaper was returned after every stamped one.
func (pc *poolConn) returnedAt() int64 {
	if pc.lastUsed == 0 {
		return math.MaxInt64
	}
	return pc.lastUsed
}

// Conn state bits, kept in one atomic word so that Put learns every flag
// and marks the conn returned in a single operation.
const (
	connReturned       uint32 = 1 << iota // given back: dead to its holder
	connPoisoned                          // a Read or Write failed
	connUnusable                          // MarkUnusable was called
	connDeadlineSet                       // the holder set a deadline
	connDestroyOnClose                    // handed out by DialContext: Close destroys
	connExposed                           // Unwrap or SyscallConn let the inner conn out

	// ioUnit counts, in the upper half of the word, the holder's Reads and
	// Writes running (enter): a return that finds one running closes the
	// socket, which ends it, rather than hand the socket on.
	ioUnit    uint32 = 1 << 16
	ioRunning        = ^(ioUnit - 1) // the bits that count them
)

// Conn is a borrowed connection. It implements [net.Conn]; Close returns
// it to the pool, like [Pool.Put].
//
// A Conn is safe for concurrent use as a net.Conn is (a Read and a Write at
// once). Once returned, its methods fail with [net.ErrClosed] and never
// touch the socket, which another borrower may hold by then (LocalAddr and
// RemoteAddr still answer: they read addresses kept since the dial). A
// Close while a Read or Write of its own still runs ends that call, as a
// net.Conn's does: the socket is closed, not kept. A Read or Write that
// fails (including a deadline timeout) poisons the Conn: its return closes
// the socket instead of keeping it. Deadlines the holder set are cleared
// before the next borrower gets the socket.
type Conn struct {
	pc    *poolConn
	state atomic.Uint32 // conn* bits
}

// errReturned is what a returned Conn's I/O methods wrap.
func (c *Conn) errReturned(op string) error {
	return &net.OpError{Op: op, Net: "connpool", Err: net.ErrClosed}
}

// live reports whether c may still touch its socket.
func (c *Conn) live() bool { return c != nil && c.pc != nil && c.state.Load()&connReturned == 0 }

// enter counts an I/O call of the holder on c and reports whether it may
// touch the socket; exit ends it. The count and the returned bit share
// one word, so either the call sees c returned and fails, or the return
// sees the call running and closes the socket (brokenReason): a holder
// that closes its Conn to end its own blocked Read, as one does a
// net.Conn, never leaves that Read running on the next borrower's socket
// (TestCloseEndsTheHoldersBlockedRead).
func (c *Conn) enter() bool {
	if c == nil || c.pc == nil {
		return false
	}
	if c.state.Add(ioUnit)&connReturned != 0 {
		c.exit()
		return false
	}
	return true
}

func (c *Conn) exit() { c.state.Add(^(ioUnit - 1)) } // minus ioUnit

// Read reads from the connection. An error, io.EOF included, poisons c.
func (c *Conn) Read(b []byte) (int, error) {
	if !c.enter() {
		return 0, c.errReturned("read")
	}
	n, err := c.pc.nc.Read(b)
	if err != nil {
		c.state.Or(connPoisoned)
	}
	c.exit()
	return n, err
}

// Write writes to the connection. An error poisons c.
func (c *Conn) Write(b []byte) (int, error) {
	if !c.enter() {
		return 0, c.errReturned("write")
	}
	n, err := c.pc.nc.Write(b)
	if err != nil {
		c.state.Or(connPoisoned)
	}
	c.exit()
	return n, err
}

// ReadFrom copies from r to the connection until r is drained, so that
// io.Copy to a Conn reaches the inner conn's own ReadFrom: sendfile or
// splice for a *net.TCPConn, instead of a copy through a buffer. An
// error, on either side, poisons c: the peer may have part of the data.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	if !c.enter() {
		return 0, c.errReturned("readfrom")
	}
	n, err := io.Copy(c.pc.nc, r)
	if err != nil {
		c.state.Or(connPoisoned)
	}
	c.exit()
	return n, err
}

// WriteTo copies from the connection to w until the peer closes it or an
// error occurs, so that io.Copy from a Conn reaches the inner conn's own
// WriteTo (splice for a *net.TCPConn). It reads to the end of the
// stream, so it always poisons c: a drained conn cannot be reused.
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	if !c.enter() {
		return 0, c.errReturned("writeto")
	}
	n, err := io.Copy(w, c.pc.nc)
	c.state.Or(connPoisoned)
	c.exit()
	return n, err
}

// Close returns c to its pool, like [Pool.Put]; a conn handed out by
// [Pool.DialContext] is closed instead. A second Close returns
// [ErrConnReturned].
func (c *Conn) Close() error {
	if c == nil || c.pc == nil {
		return ErrForeignConn
	}
	return c.pc.pool.release(c)
}

// Detach takes c's connection out of the pool for good and returns it:
// for a protocol that leaves request and response behind (LISTEN,
// SUBSCRIBE, an HTTP Upgrade), or a client that wants the socket as its
// own. The pool frees c's slot at once (counted in Stats.DetachedClosed,
// with a [ConnClosedEvent] of reason [CloseDetached]), never touches the
// socket again, and does not close it: that is the caller's job now. c is
// returned by Detach, as by Close. Detach returns [ErrConnReturned] for a
// conn already returned and [ErrForeignConn] for a nil one.
func (c *Conn) Detach() (net.Conn, error) {
	if c == nil || c.pc == nil {
		return nil, ErrForeignConn
	}
	if c.state.Or(connReturned)&connReturned != 0 {
		return nil, ErrConnReturned
	}
	pc, p := c.pc, c.pc.pool
	c.endLoan()
	nc := pc.nc
	if pc.check != nil {
		pc.check.Share() // the socket is no longer the pool's
	}
	p.closeConn(pc, CloseDetached)
	return nc, nil
}

// MarkUnusable makes c's return close its socket instead of keeping it,
// for a conn left in a state the next borrower must not see (a protocol
// error, a half-read reply). Reads and writes still work until then.
func (c *Conn) MarkUnusable() {
	if c != nil {
		c.state.Or(connUnusable)
	}
}

// Unwrap returns the connection the dialer made, or nil once c is
// returned. Use it to reach the concrete type (*net.TCPConn, *tls.Conn);
// I/O on it bypasses the poisoning of failed reads and writes. Closing it
// is allowed: the pool finds the conn closed when c is returned, and
// drops it.
func (c *Conn) Unwrap() net.Conn {
	if !c.live() {
		return nil
	}
	c.expose()
	return c.pc.nc
}

// expose records that the inner conn has left the pool's hands, so that
// its return checks that it is still open, and the checkout peek no longer
// trusts the descriptor number cached at dial time (see sockcheck.Checker).
func (c *Conn) expose() {
	if c.state.Load()&connExposed == 0 {
		c.state.Or(connExposed)
	}
}

// LocalAddr returns the local address of the connection.
func (c *Conn) LocalAddr() net.Addr {
	if c == nil || c.pc == nil {
		return nil
	}
	return c.pc.nc.LocalAddr()
}

// RemoteAddr returns the remote address of the connection. For a pool
// that resolves a host name, it is the address the pool dialed, the IP
// picked from the resolved set with the pool's port, whatever conn the
// dialer returned.
func (c *Conn) RemoteAddr() net.Addr {
	if c == nil || c.pc == nil {
		return nil
	}
	if ep := c.pc.ep; ep != nil {
		if a := ep.RemoteAddr(); a != nil {
			return a
		}
	}
	return c.pc.nc.RemoteAddr()
}

// SetDeadline sets the read and write deadlines, as [net.Conn] does. They
// are cleared when c is returned.
func (c *Conn) SetDeadline(t time.Time) error {
	return c.setDeadline("set deadline", t, net.Conn.SetDeadline)
}

// SetReadDeadline sets the read deadline, as [net.Conn] does. It is
// cleared when c is returned.
func (c *Conn) SetReadDeadline(t time.Time) error {
	return c.setDeadline("set read deadline", t, net.Conn.SetReadDeadline)
}

// SetWriteDeadline sets the write deadline, as [net.Conn] does. It is
// cleared when c is returned.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	return c.setDeadline("set write deadline", t, net.Conn.SetWriteDeadline)
}

func (c *Conn) setDeadline(op string, t time.Time, set func(net.Conn, time.Time) error) error {
	if !c.live() {
		return c.errReturned(op)
	}
	c.state.Or(connDeadlineSet)
	return set(c.pc.nc, t)
}

// SyscallConn returns the raw connection of the inner conn, for clients
// that do their own non-blocking I/O or liveness checks (pgx,
// go-sql-driver/mysql). Its methods fail with [net.ErrClosed] once c is
// returned. It returns an error wrapping [errors.ErrUnsupported] when the
// inner conn has no SyscallConn (a *tls.Conn, say).
func (c *Conn) SyscallConn() (syscall.RawConn, error) {
	if !c.live() {
		return nil, c.errReturned("syscallconn")
	}
	c.expose()
	sc, ok := c.pc.nc.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("connpool: %T has no SyscallConn: %w", c.pc.nc, errors.ErrUnsupported)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	return &rawConn{c: c, rc: rc}, nil
}

// rawConn guards a syscall.RawConn so that a holder who kept it past its
// return cannot reach the socket.
type rawConn struct {
	c  *Conn
	rc syscall.RawConn
}

func (r *rawConn) Control(f func(fd uintptr)) error {
	if !r.c.live() {
		return r.c.errReturned("control")
	}
	return r.rc.Control(f)
}

func (r *rawConn) Read(f func(fd uintptr) bool) error {
	if !r.c.live() {
		return r.c.errReturned("read")
	}
	return r.rc.Read(f)
}

func (r *rawConn) Write(f func(fd uintptr) bool) error {
	if !r.c.live() {
		return r.c.errReturned("write")
	}
	return r.rc.Write(f)
}

var (
	_ net.Conn        = (*Conn)(nil)
	_ io.ReaderFrom   = (*Conn)(nil)
	_ io.WriterTo     = (*Conn)(nil)
	_ syscall.Conn    = (*Conn)(nil)
	_ syscall.RawConn = (*rawConn)(nil)
)
