package connpool_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/connpool/connpool"
)

func Example() {
	srv := startEcho(nil) // a loopback echo server standing in for your backend: use your own address for srv.Addr()
	defer srv.Close()

	pool, err := connpool.New("tcp", srv.Addr(), connpool.WithMaxConns(4))
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	for range 3 {
		conn, err := pool.Get(ctx)
		if err != nil {
			log.Fatal(err)
		}
		if _, err := conn.Write([]byte("ping")); err != nil {
			log.Fatal(err)
		}
		reply := make([]byte, 4)
		if _, err := io.ReadFull(conn, reply); err != nil {
			log.Fatal(err)
		}
		if err := conn.Close(); err != nil { // back to the pool, for the next Get
			log.Fatal(err)
		}
	}
	st := pool.Stats()
	fmt.Printf("dials=%d hits=%d misses=%d\n", st.Dials, st.Hits, st.Misses)
	if err := pool.Close(); err != nil {
		log.Fatal(err)
	}
	// Output: dials=1 hits=2 misses=1
}

// ExamplePool_Get_deadline bounds the wait of a Get at the cap: when the
// context ends first, the error wraps the context's and says what the
// pool was doing.
func ExamplePool_Get_deadline() {
	srv := startEcho(nil) // a loopback echo server standing in for your backend: use your own address for srv.Addr()
	defer srv.Close()

	pool, err := connpool.New("tcp", srv.Addr(), connpool.WithName("echo"), connpool.WithMaxConns(1))
	if err != nil {
		log.Fatal(err)
	}
	held, err := pool.Get(context.Background()) // the one conn the cap allows
	if err != nil {
		log.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = pool.Get(ctx)
	fmt.Println(errors.Is(err, context.DeadlineExceeded))
	fmt.Println(err)

	if err := held.Close(); err != nil {
		log.Fatal(err)
	}
	if err := pool.Close(); err != nil {
		log.Fatal(err)
	}
	// Output:
	// true
	// connpool: get echo: context deadline exceeded (in use 1, idle 0, dialing 0, waiting 0, max 1)
}

// ExampleWithMaxWaiters sheds load: with one waiter allowed, a second Get
// that would wait fails at once instead of piling up.
func ExampleWithMaxWaiters() {
	srv := startEcho(nil) // a loopback echo server standing in for your backend: use your own address for srv.Addr()
	defer srv.Close()

	pool, err := connpool.New("tcp", srv.Addr(), connpool.WithName("echo"),
		connpool.WithMaxConns(1), connpool.WithMaxWaiters(1))
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	held, err := pool.Get(ctx)
	if err != nil {
		log.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { // the one waiter: served when held comes back
		conn, err := pool.Get(ctx)
		if err == nil {
			err = conn.Close()
		}
		waited <- err
	}()
	for pool.Stats().Waiting == 0 { // until it is queued
		time.Sleep(time.Millisecond)
	}

	_, err = pool.Get(ctx) // would be a second waiter
	fmt.Println(errors.Is(err, connpool.ErrTooManyWaiters))
	fmt.Println(err)

	if err := held.Close(); err != nil { // hands the conn to the waiter
		log.Fatal(err)
	}
	if err := <-waited; err != nil {
		log.Fatal(err)
	}
	fmt.Println("refused:", pool.Stats().TooManyWaiters)
	if err := pool.Close(); err != nil {
		log.Fatal(err)
	}
	// Output:
	// true
	// connpool: too many Gets waiting: 1 already queued for echo (WithMaxWaiters(1))
	// refused: 1
}

// ExamplePool_WaitReady holds a service back until its spare conns are
// dialed, so that its first requests do not pay for the handshakes.
func ExamplePool_WaitReady() {
	srv := startEcho(nil) // a loopback echo server standing in for your backend: use your own address for srv.Addr()
	defer srv.Close()

	pool, err := connpool.New("tcp", srv.Addr(), connpool.WithMinIdle(2))
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := pool.WaitReady(ctx); err != nil { // a readiness probe would fail here
		log.Fatal(err)
	}
	fmt.Println("idle:", pool.Stats().Idle)
	if err := pool.Close(); err != nil {
		log.Fatal(err)
	}
	// Output: idle: 2
}

// ExamplePool_Reset retires every conn, after the backend failed over or
// its credentials changed: the next Get dials a fresh one.
func ExamplePool_Reset() {
	srv := startEcho(nil) // a loopback echo server standing in for your backend: use your own address for srv.Addr()
	defer srv.Close()

	pool, err := connpool.New("tcp", srv.Addr())
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	conn, err := pool.Get(ctx)
	if err != nil {
		log.Fatal(err)
	}
	if err := conn.Close(); err != nil { // idle now
		log.Fatal(err)
	}

	if err := pool.Reset(); err != nil { // closes the idle conn
		log.Fatal(err)
	}
	conn, err = pool.Get(ctx) // dials a new one
	if err != nil {
		log.Fatal(err)
	}
	if err := conn.Close(); err != nil {
		log.Fatal(err)
	}
	st := pool.Stats()
	fmt.Printf("dials=%d misses=%d reset_closed=%d\n", st.Dials, st.Misses, st.ResetClosed)
	if err := pool.Close(); err != nil {
		log.Fatal(err)
	}
	// Output: dials=2 misses=2 reset_closed=1
}

// ExampleGroup keeps one pool per address, each made on first use with
// the group's options, under one cap for them all.
func ExampleGroup() {
	var addrs []string
	for range 3 {
		srv := startEcho(nil) // a loopback echo server standing in for your backend: use your own address for srv.Addr()
		defer srv.Close()
		addrs = append(addrs, srv.Addr())
	}

	group, err := connpool.NewGroup(connpool.WithGroupMaxConns(8), connpool.WithMaxConns(4))
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	for _, addr := range addrs {
		for range 2 {
			conn, err := group.Get(ctx, "tcp", addr)
			if err != nil {
				log.Fatal(err)
			}
			if _, err := exchange(conn, "hello"); err != nil {
				log.Fatal(err)
			}
			if err := conn.Close(); err != nil {
				log.Fatal(err)
			}
		}
	}
	stats := group.Stats()
	fmt.Println("pools:", len(stats))
	for _, addr := range addrs {
		st := stats[connpool.Addr{Network: "tcp", Address: addr}]
		fmt.Printf("dials=%d hits=%d\n", st.Dials, st.Hits)
	}
	if err := group.Close(); err != nil {
		log.Fatal(err)
	}
	// Output:
	// pools: 3
	// dials=1 hits=1
	// dials=1 hits=1
	// dials=1 hits=1
}

// exchange writes msg to c and reads back as many bytes: one round trip
// with the echo server.
func exchange(c net.Conn, msg string) (string, error) {
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	reply := make([]byte, len(msg))
	if _, err := io.ReadFull(c, reply); err != nil {
		return "", err
	}
	return string(reply), nil
}

// echoServer is the peer of these examples: it writes back every byte it
// reads, over TCP or TLS. Close stops it and waits for its goroutines.
type echoServer struct {
	ln net.Listener
	wg sync.WaitGroup // the accept loop and one copy per conn

	mu     sync.Mutex // guards the fields below
	conns  map[net.Conn]struct{}
	closed bool
}

// startEcho starts an echo server on a free loopback port; with a config,
// it speaks TLS.
func startEcho(config *tls.Config) *echoServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	if config != nil {
		ln = tls.NewListener(ln, config)
	}
	s := &echoServer{ln: ln, conns: make(map[net.Conn]struct{})}
	s.wg.Go(s.accept)
	return s
}

// Addr returns the address to dial.
func (s *echoServer) Addr() string { return s.ln.Addr().String() }

func (s *echoServer) accept() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				log.Print("echo server: ", err)
			}
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			s.closeConn(c)
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Go(func() { s.echo(c) })
	}
}

// echo copies c to itself until the client closes it or Close does.
func (s *echoServer) echo(c net.Conn) {
	_, err := io.Copy(c, c)
	if err != nil && !sessionEnd(err) {
		log.Print("echo server: ", err)
	}
	s.mu.Lock()
	_, mine := s.conns[c] // not closed by Close
	delete(s.conns, c)
	s.mu.Unlock()
	if mine {
		s.closeConn(c)
	}
}

func (s *echoServer) closeConn(c net.Conn) {
	if err := c.Close(); err != nil && !sessionEnd(err) {
		log.Print("echo server: ", err)
	}
}

// Close closes the listener and every conn, and waits for the goroutines.
func (s *echoServer) Close() {
	s.mu.Lock()
	s.closed = true
	conns := s.conns
	s.conns = nil
	s.mu.Unlock()
	if err := s.ln.Close(); err != nil {
		log.Print("echo server: ", err)
	}
	for c := range conns {
		s.closeConn(c)
	}
	s.wg.Wait()
}

// sessionEnd reports whether err only says that the client went away: a
// conn closed, or reset because the client left bytes unread.
func sessionEnd(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
