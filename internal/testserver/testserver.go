// Package testserver is a loopback TCP server for the pool's tests and
// demos: an echo server that can be told to misbehave the way real peers
// do (close, reset, go silent, send bytes nobody asked for, refuse dials)
// and that counts the connections open at its end.
package testserver

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/connpool/connpool/internal/sockcheck"
)

// Mode is how the server answers what it reads.
type Mode int32

const (
	// Echo writes back every byte it reads.
	Echo Mode = iota
	// Silent reads and discards, never answering: a hung backend or a
	// blackholed path.
	Silent
)

// Server is a loopback echo server. It is safe for concurrent use.
type Server struct {
	ln       net.Listener
	greeting []byte
	tls      *tls.Config
	idle     time.Duration
	mode     atomic.Int32
	accepted atomic.Int64

	mu      sync.Mutex // guards the fields below
	conns   map[*net.TCPConn]*sockcheck.Checker
	maxOpen int
	closed  bool

	wg sync.WaitGroup // the accept loop and one handler per conn
}

// Option configures a Server.
type Option func(*Server)

// WithGreeting makes the server send b on every new connection before
// reading, as MySQL and SMTP servers do.
func WithGreeting(b []byte) Option {
	return func(s *Server) { s.greeting = append([]byte(nil), b...) }
}

// WithIdleTimeout makes the server close a connection on which nothing
// arrived for d, as servers and middleboxes that drop idle flows do.
func WithIdleTimeout(d time.Duration) Option {
	return func(s *Server) { s.idle = d }
}

// WithTLS makes the server speak TLS with config; its counts and faults
// still act on the TCP connections underneath.
func WithTLS(config *tls.Config) Option {
	return func(s *Server) { s.tls = config }
}

// Start listens on 127.0.0.1 on a free port and serves until Close.
func Start(opts ...Option) (*Server, error) { return StartAt("127.0.0.1:0", opts...) }

// StartAt listens on addr, which lets a test bring a server back on the
// port a stopped one had.
func StartAt(addr string, opts ...Option) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{ln: ln, conns: make(map[*net.TCPConn]*sockcheck.Checker)}
	for _, o := range opts {
		o(s)
	}
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// Addr returns the host:port the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// SetMode changes how the server answers, for new and open connections.
func (s *Server) SetMode(m Mode) { s.mode.Store(int32(m)) }

// Accepted returns how many connections the server has accepted.
func (s *Server) Accepted() int64 { return s.accepted.Load() }

// Open returns how many connections are open at the server's end, counting
// only those whose client has not closed its side.
func (s *Server) Open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked()
	return len(s.conns)
}

// MaxOpen returns the most connections that were open at once, measured
// each time one was accepted.
func (s *Server) MaxOpen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxOpen
}

// sweepLocked forgets connections whose client has closed or reset them.
// It runs before each accept is counted: a client that closed a conn and
// then dialed a new one sent its FIN first, so the peek sees it even if
// the handler goroutine has not read the EOF yet.
func (s *Server) sweepLocked() {
	for c, ck := range s.conns {
		if ck == nil {
			continue
		}
		if _, err := ck.Check(); err != nil {
			delete(s.conns, c)
		}
	}
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		c := nc.(*net.TCPConn)
		s.accepted.Add(1)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.sweepLocked()
		s.conns[c] = sockcheck.New(c)
		s.maxOpen = max(s.maxOpen, len(s.conns))
		s.wg.Add(1)
		s.mu.Unlock()
		var rw net.Conn = c
		if s.tls != nil {
			rw = tls.Server(c, s.tls)
		}
		go s.serve(c, rw)
	}
}

// serve answers on rw, which is c itself or TLS over it.
func (s *Server) serve(c *net.TCPConn, rw net.Conn) {
	defer s.wg.Done()
	defer s.forget(c)
	if len(s.greeting) > 0 {
		if _, err := rw.Write(s.greeting); err != nil {
			return
		}
	}
	buf := make([]byte, 32<<10)
	for {
		if s.idle > 0 {
			_ = c.SetReadDeadline(time.Now().Add(s.idle))
		}
		n, err := rw.Read(buf)
		if n > 0 && Mode(s.mode.Load()) == Echo {
			if _, werr := rw.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// forget drops c from the open set and closes it, in that order: a
// sockcheck.Checker must not peek at a closed socket, whose descriptor
// may already name a newly accepted one.
func (s *Server) forget(c *net.TCPConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
}

// each calls f on every open connection, outside the lock. With drop, it
// first takes them out of the open set, for an f that closes them (see
// forget).
func (s *Server) each(drop bool, f func(*net.TCPConn) error) error {
	s.mu.Lock()
	conns := make([]*net.TCPConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
		if drop {
			delete(s.conns, c)
		}
	}
	s.mu.Unlock()
	var errs []error
	for _, c := range conns {
		// A conn its handler closed meanwhile needs nothing more.
		if err := f(c); !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// CloseConns closes every open connection normally (the client sees FIN).
func (s *Server) CloseConns() error {
	return s.each(true, func(c *net.TCPConn) error { return c.Close() })
}

// ResetConns aborts every open connection (the client sees RST).
func (s *Server) ResetConns() error {
	return s.each(true, func(c *net.TCPConn) error {
		if err := c.SetLinger(0); err != nil {
			return err
		}
		return c.Close()
	})
}

// Send writes b, unasked, on every open connection.
func (s *Server) Send(b []byte) error {
	return s.each(false, func(c *net.TCPConn) error {
		_, err := c.Write(b)
		return err
	})
}

// Close stops accepting (later dials are refused), closes every
// connection and waits for the server's goroutines to end.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	err := s.ln.Close()
	_ = s.CloseConns()
	s.wg.Wait()
	return err
}

// RoundTrip sends msg over c and returns what came back: msg itself, from
// an echo server.
func RoundTrip(c net.Conn, msg string) (string, error) {
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	buf := make([]byte, len(msg))
	_, err := io.ReadFull(c, buf)
	return string(buf), err
}
