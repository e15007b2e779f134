package connpool_test

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/connpool/connpool"
)

// A pool whose cap finds the backend's concurrency by itself, between 1
// and 64 conns. It starts at WithMaxConns (without it, at the default
// cap within the bounds); as Gets queue while the backend answers as
// fast as before, the cap grows, and when conns are held longer, the
// backend is queueing, it is cut back. Stats shows where it stands; the
// MaxConnsChanged hook reports each move.
func ExampleWithAdaptiveMaxConns() {
	ln, err := net.Listen("tcp", "127.0.0.1:0") // a stand-in for the backend
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b := make([]byte, 1)
				for {
					if _, err := c.Read(b); err != nil {
						return
					}
					if _, err := c.Write(b); err != nil {
						return
					}
				}
			}()
		}
	}()

	pool, err := connpool.New("tcp", ln.Addr().String(),
		connpool.WithAdaptiveMaxConns(1, 64),
		connpool.WithMaxConns(8),
		connpool.WithHooks(connpool.Hooks{MaxConnsChanged: func(e connpool.MaxConnsChangedEvent) {
			_ = e // e.g. log e.Old, e.New and e.Reason
		}}),
	)
	if err != nil {
		fmt.Println(err)
		return
	}

	conn, err := pool.Get(context.Background())
	if err != nil {
		fmt.Println(err)
		return
	}
	if _, err := conn.Write([]byte("x")); err != nil {
		fmt.Println(err)
	}
	if _, err := conn.Read(make([]byte, 1)); err != nil {
		fmt.Println(err)
	}
	if err := conn.Close(); err != nil {
		fmt.Println(err)
	}

	s := pool.Stats()
	fmt.Printf("cap %d, between %d and %d\n", s.MaxConns, s.AdaptiveMin, s.AdaptiveMax)

	// Conns from DialContext are never returned: they cannot drive the cap.
	_, err = pool.DialContext(context.Background(), "tcp", ln.Addr().String())
	fmt.Println(errors.Is(err, connpool.ErrAdaptiveDialContext))
	if err := pool.Close(); err != nil {
		fmt.Println(err)
	}
	// Output:
	// cap 8, between 1 and 64
	// true
}
