package connpool_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/connpool/connpool"
)

// ExampleGroup_CloseIdleWith gives a Transport that talks to three hosts
// its conns from a group capped at two. The conns the Transport keeps idle
// hold the group's slots; registered, the Transport is asked to close them
// when a dial for another host waits at the cap, so every host is served.
func ExampleGroup_CloseIdleWith() {
	var urls []string
	for i := range 3 {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, err := fmt.Fprintf(w, "host %d", i); err != nil {
				log.Print(err)
			}
		}))
		defer srv.Close()
		urls = append(urls, srv.URL)
	}

	group, err := connpool.NewGroup(connpool.WithMaxConns(4), connpool.WithGroupMaxConns(2))
	if err != nil {
		log.Fatal(err)
	}
	transport := &http.Transport{
		DialContext:         group.DialContext,
		MaxIdleConns:        2,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     60 * time.Second,
	}
	group.CloseIdleWith(transport)
	client := &http.Client{Transport: transport, Timeout: 3 * time.Second}

	for _, url := range urls {
		resp, err := client.Get(url)
		if err != nil {
			log.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		if cerr := resp.Body.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(string(body))
	}
	transport.CloseIdleConnections()
	if err := group.Close(); err != nil {
		log.Fatal(err)
	}
	// Output:
	// host 0
	// host 1
	// host 2
}

// ExampleGroup_GroupStats reads what a group's pools share: its cap, the
// conns open under it, and the dials waiting for a slot, which a dashboard
// shows beside each pool's stats.
func ExampleGroup_GroupStats() {
	group, err := connpool.NewGroup(connpool.WithGroupMaxConns(2))
	if err != nil {
		log.Fatal(err)
	}
	defer group.Close()
	for range 2 { // two hosts, one conn each: the cap is reached
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			log.Fatal(err)
		}
		defer ln.Close()
		conn, err := group.Get(context.Background(), "tcp", ln.Addr().String())
		if err != nil {
			log.Fatal(err)
		}
		defer conn.Close()
	}
	st := group.GroupStats()
	fmt.Printf("%d pools, %d of %d conns open, %d dials waiting\n", st.Pools, st.OpenConns, st.MaxConns, st.Waiting)

	// A third host would wait for a slot: raise the cap.
	if err := group.SetGroupMaxConns(3); err != nil {
		log.Fatal(err)
	}
	fmt.Println("cap:", group.GroupStats().MaxConns)
	// Output:
	// 2 pools, 2 of 2 conns open, 0 dials waiting
	// cap: 3
}
