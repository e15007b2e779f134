package connpoolfleet_test

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// countServer is the backend every member's pool dials: it counts the conns
// open at every instant, in total and per member, and keeps the peak and a
// log of every open and close. Its count never lags a client's: a dial
// returns only after the server counted it (helloDial), and a close only
// after the server uncounted it (countedConn.Close).
type countServer struct {
	ln net.Listener
	wg sync.WaitGroup

	mu    sync.Mutex // guards the fields below
	open  int
	peak  int
	per   map[string]int
	log   []connEvent
	conns map[net.Conn]bool
}

// connEvent is one open (+1) or close (-1) at the server.
type connEvent struct {
	at    time.Time
	id    string
	delta int
	total int // conns open after it
	mine  int // conns of this member open after it
}

func startCountServer(t testing.TB) *countServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &countServer{ln: ln, per: map[string]int{}, conns: map[net.Conn]bool{}}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.close)
	return s
}

func (s *countServer) addr() string { return s.ln.Addr().String() }

func (s *countServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serve(c)
	}
}

func (s *countServer) count(id string, delta int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.open += delta
	s.per[id] += delta
	s.peak = max(s.peak, s.open)
	s.log = append(s.log, connEvent{at: time.Now(), id: id, delta: delta, total: s.open, mine: s.per[id]})
}

// serve reads the member's hello line, counts the conn and acknowledges
// it; a 'Q' uncounts it and is acknowledged; EOF uncounts it if no Q did.
func (s *countServer) serve(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		_ = c.Close()
	}()
	r := bufio.NewReader(c)
	id, err := r.ReadString('\n')
	if err != nil {
		return
	}
	id = strings.TrimSpace(id)
	s.count(id, +1)
	counted := true
	defer func() {
		if counted {
			s.count(id, -1)
		}
	}()
	if _, err := c.Write([]byte("H")); err != nil {
		return
	}
	for {
		b, err := r.ReadByte()
		if err != nil {
			return
		}
		if b == 'Q' && counted {
			s.count(id, -1)
			counted = false
			_, _ = c.Write([]byte("K"))
		}
	}
}

func (s *countServer) close() {
	_ = s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *countServer) snapshot() (open, peak int, log []connEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open, s.peak, append([]connEvent(nil), s.log...)
}

func (s *countServer) openOf(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.per[id]
}

func (s *countServer) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open
}

// helloDial dials the count server as member id: it returns once the server
// has counted the conn, and the conn it returns is uncounted before its
// Close returns.
func helloDial(id string) func(ctx context.Context, network, address string) (net.Conn, error) {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, address)
		if err != nil {
			return nil, err
		}
		if dl, ok := ctx.Deadline(); ok {
			_ = c.SetDeadline(dl)
		}
		buf := make([]byte, 1)
		_, err = c.Write([]byte(id + "\n"))
		if err == nil {
			_, err = c.Read(buf)
		}
		if err != nil || buf[0] != 'H' {
			_ = c.Close()
			return nil, errors.Join(errors.New("count server did not acknowledge the hello"), err)
		}
		_ = c.SetDeadline(time.Time{})
		return &countedConn{TCPConn: c.(*net.TCPConn)}, nil
	}
}

// countedConn tells the server before it closes.
type countedConn struct {
	*net.TCPConn
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() {
		_ = c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte("Q")); err == nil {
			_, _ = c.Read(make([]byte, 1))
		}
	})
	return c.TCPConn.Close()
}
