package connpool_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/internal/testserver"
)

func Example() {
	srv, _ := testserver.Start() // a loopback echo server
	defer srv.Close()

	pool, err := connpool.New("tcp", srv.Addr(), connpool.WithMaxConns(4))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	for range 3 {
		conn, err := pool.Get(context.Background())
		if err != nil {
			log.Fatal(err)
		}
		conn.Write([]byte("ping"))
		reply := make([]byte, 4)
		io.ReadFull(conn, reply)
		conn.Close() // back to the pool for the next iteration
	}
	st := pool.Stats()
	fmt.Printf("dials=%d hits=%d misses=%d\n", st.Dials, st.Hits, st.Misses)
	// Output: dials=1 hits=2 misses=1
}

func ExamplePingPong() {
	srv, _ := testserver.Start()
	defer srv.Close()

	// Against Redis this would be PingPong([]byte("PING\r\n"), []byte("+PONG\r\n")).
	pool, err := connpool.New("tcp", srv.Addr(),
		connpool.WithMinIdle(2),
		connpool.WithHealthCheck(connpool.PingPong([]byte("hi\n"), []byte("hi\n"))))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	conn, err := pool.Get(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	fmt.Println(conn.RemoteAddr().String() == srv.Addr())
	// Output: true
}

// ExamplePool_DialContext gives an http.Transport its conns from a pool:
// one cap for every request, and spare conns dialled ahead of demand.
func ExamplePool_DialContext() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello from ", r.URL.Path)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	pool, err := connpool.New("tcp", addr, connpool.WithMaxConns(8), connpool.WithMinIdle(2))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	transport := &http.Transport{DialContext: pool.DialContext, MaxConnsPerHost: 8}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}

	resp, err := client.Get(srv.URL + "/pooled")
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(string(body))
	// Output: hello from /pooled
}
