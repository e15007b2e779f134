package connpool_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/netip"
	"sort"

	"github.com/connpool/connpool"
)

// ExampleWithResolver spreads a pool's conns over every address of a
// name. Two loopback listeners on one port stand for two replicas (on
// Linux all of 127/8 is loopback), and a fixed resolver stands for the
// name's DNS records; in production, leave the default net.DefaultResolver.
func ExampleWithResolver() {
	first, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer first.Close()
	_, port, err := net.SplitHostPort(first.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	second, err := net.Listen("tcp", net.JoinHostPort("127.0.0.2", port))
	if err != nil {
		log.Fatal(err)
	}
	defer second.Close()
	for _, ln := range []net.Listener{first, second} {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close() // held open until the listener closes
			}
		}()
	}

	records := connpool.ResolverFunc(func(ctx context.Context, network, host string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")}, nil
	})
	pool, err := connpool.New("tcp", net.JoinHostPort("replicas.example", port),
		connpool.WithResolver(records), connpool.WithMaxConns(4))
	if err != nil {
		log.Fatal(err)
	}

	perHost := map[string]int{}
	var conns []*connpool.Conn
	for range 4 {
		c, err := pool.Get(context.Background())
		if err != nil {
			log.Fatal(err)
		}
		host, _, err := net.SplitHostPort(c.RemoteAddr().String())
		if err != nil {
			log.Fatal(err)
		}
		perHost[host]++
		conns = append(conns, c)
	}
	for _, c := range conns {
		if err := c.Close(); err != nil {
			log.Fatal(err)
		}
	}
	hosts := make([]string, 0, len(perHost))
	for h := range perHost {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	for _, h := range hosts {
		fmt.Println(h, perHost[h])
	}
	for _, a := range pool.Stats().Addresses {
		_, p, err := net.SplitHostPort(a.Address)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("open:", a.Open, "dials:", a.Dials, "same port:", p == port)
	}
	if err := pool.Close(); err != nil {
		log.Fatal(err)
	}
	// Output:
	// 127.0.0.1 2
	// 127.0.0.2 2
	// open: 2 dials: 2 same port: true
	// open: 2 dials: 2 same port: true
}
