package main

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"
)

// echoServer is the embedded loopback server: it echoes what it reads,
// optionally over TLS, and can add a simulated network round trip to every
// reply and to the set-up of every connection (one round trip for TCP's
// handshake, one more for TLS's).
type echoServer struct {
	ln  net.Listener
	rtt time.Duration
	tls bool

	mu    sync.Mutex // guards conns
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func startEchoServer(rtt time.Duration, config *tls.Config) (*echoServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &echoServer{ln: ln, rtt: rtt, conns: make(map[net.Conn]struct{})}
	if config != nil {
		s.ln, s.tls = tls.NewListener(ln, config), true
	}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

func (s *echoServer) addr() string { return s.ln.Addr().String() }

func (s *echoServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serve(c)
	}
}

func (s *echoServer) serve(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	setup := s.rtt // the TCP handshake
	if s.tls {
		setup += s.rtt // TLS 1.3 adds one round trip
	}
	delayed := setup > 0
	buf := make([]byte, 16<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if delayed {
				time.Sleep(setup) // paid by the first request on a new conn
				delayed = false
			}
			if s.rtt > 0 {
				time.Sleep(s.rtt)
			}
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (s *echoServer) close() error {
	err := s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}
