package main

import (
	"crypto/tls"
	"net"
	"time"
)

// echoServer is the embedded loopback server: it echoes what it reads,
// optionally over TLS, and can add a simulated network round trip to every
// reply and to the set-up of every connection (one round trip for TCP's
// handshake, one more for TLS's).
type echoServer struct {
	conns
	rtt time.Duration
	tls bool
}

func startEchoServer(rtt time.Duration, config *tls.Config) (*echoServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &echoServer{rtt: rtt}
	if config != nil {
		ln, s.tls = tls.NewListener(ln, config), true
	}
	s.listen(ln, s.serve)
	return s, nil
}

func (s *echoServer) serve(c net.Conn) {
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
