package connpool_test

import (
	"context"
	"fmt"
	"log"
	"sync/atomic"

	"github.com/connpool/connpool"
)

// ExampleWithHooks prints the events of two Gets: the first conn is
// returned broken and closed, the second kept until the pool closes.
func ExampleWithHooks() {
	srv := startEcho(nil) // a loopback echo server standing in for your backend: use your own address for srv.Addr()
	defer srv.Close()

	hooks := connpool.Hooks{
		GetDone: func(ev connpool.GetDoneEvent) {
			fmt.Printf("get: conn %d, dialed %v\n", ev.ConnID, ev.Served == connpool.ServedDial)
		},
		Put: func(ev connpool.PutEvent) {
			fmt.Printf("put: conn %d, %s\n", ev.ConnID, ev.Closed)
		},
		ConnClosed: func(ev connpool.ConnClosedEvent) {
			fmt.Printf("closed: conn %d, %s\n", ev.ConnID, ev.Reason)
		},
	}
	pool, err := connpool.New("tcp", srv.Addr(), connpool.WithHooks(hooks))
	if err != nil {
		log.Fatal(err)
	}
	for i := range 2 {
		conn, err := pool.Get(context.Background())
		if err != nil {
			log.Fatal(err)
		}
		if i == 0 {
			conn.MarkUnusable()
		}
		if err := conn.Close(); err != nil {
			log.Fatal(err)
		}
	}
	if err := pool.Close(); err != nil {
		log.Fatal(err)
	}
	// Output:
	// get: conn 1, dialed true
	// put: conn 1, broken
	// closed: conn 1, broken
	// get: conn 2, dialed true
	// put: conn 2, kept
	// closed: conn 2, pool_closed
}

// ExampleHooks_Chain adds a library's hooks to the user's own: both run,
// the library's first.
func ExampleHooks_Chain() {
	srv := startEcho(nil) // a loopback echo server standing in for your backend: use your own address for srv.Addr()
	defer srv.Close()

	var gets atomic.Int64 // hooks may run on many goroutines at once
	metrics := connpool.Hooks{
		GetDone: func(connpool.GetDoneEvent) { gets.Add(1) },
	}
	user := connpool.Hooks{
		GetDone: func(ev connpool.GetDoneEvent) {
			fmt.Printf("get: conn %d, gets so far %d\n", ev.ConnID, gets.Load())
		},
	}
	pool, err := connpool.New("tcp", srv.Addr(), connpool.WithHooks(metrics.Chain(user)))
	if err != nil {
		log.Fatal(err)
	}
	for range 2 {
		conn, err := pool.Get(context.Background())
		if err != nil {
			log.Fatal(err)
		}
		if err := conn.Close(); err != nil {
			log.Fatal(err)
		}
	}
	if err := pool.Close(); err != nil {
		log.Fatal(err)
	}
	// Output:
	// get: conn 1, gets so far 1
	// get: conn 1, gets so far 2
}
