package connpool_test

import (
	"fmt"
	"io"
	"log"
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
