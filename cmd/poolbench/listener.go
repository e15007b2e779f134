package main

import (
	"errors"
	"net"
	"sync"
)

// conns is what both embedded servers share: a listener, the conns it
// accepted (so that close can end them) and the goroutines serving them.
type conns struct {
	ln net.Listener

	mu   sync.Mutex // guards open
	open map[net.Conn]struct{}
	wg   sync.WaitGroup // the accept loop and every serve
}

// listen starts accepting on ln, serving each conn with serve on a
// goroutine of its own; the conn is closed and forgotten when serve
// returns.
func (s *conns) listen(ln net.Listener, serve func(net.Conn)) {
	s.ln, s.open = ln, make(map[net.Conn]struct{})
	s.wg.Go(func() {
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.open[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Go(func() {
				defer func() {
					c.Close()
					s.mu.Lock()
					delete(s.open, c)
					s.mu.Unlock()
				}()
				serve(c)
			})
		}
	})
}

func (s *conns) addr() string { return s.ln.Addr().String() }

// close stops accepting, closes every open conn and waits for the
// goroutines to end.
func (s *conns) close() error {
	err := s.ln.Close()
	s.mu.Lock()
	for c := range s.open {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}
