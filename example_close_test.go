package connpool_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/connpool/connpool"
)

// ExamplePool_Shutdown lets a request in flight finish before the pool
// closes, within a deadline.
func ExamplePool_Shutdown() {
	srv := startEcho(nil) // a loopback echo server standing in for your backend: use your own address for srv.Addr()
	defer srv.Close()

	pool, err := connpool.New("tcp", srv.Addr())
	if err != nil {
		log.Fatal(err)
	}
	conn, err := pool.Get(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { // a request in flight: it ends by returning its conn
		_, err := exchange(conn, "last request")
		done <- errors.Join(err, conn.Close())
	}()

	// Shutdown waits for conn; at the deadline it would close the sockets
	// still borrowed and return an error.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pool.Shutdown(ctx); err != nil {
		log.Fatal(err)
	}
	if err := <-done; err != nil {
		log.Fatal(err)
	}
	st := pool.Stats()
	fmt.Printf("open=%d pool_closed=%d\n", st.OpenConns, st.PoolClosed)
	_, err = pool.Get(context.Background())
	fmt.Println(err)
	// Output:
	// open=0 pool_closed=1
	// connpool: pool closed
}
