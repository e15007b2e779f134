package connpool_test

import (
	"context"
	"fmt"
	"io"
	"log"

	"github.com/connpool/connpool"
)

// ExampleConn_MarkUnusable keeps a conn left mid-reply away from the next
// borrower: its return closes the socket.
func ExampleConn_MarkUnusable() {
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
	if _, err := conn.Write([]byte("GET greeting\n")); err != nil {
		log.Fatal(err)
	}
	// Say the protocol's replies start with '+'. This one does not, and
	// the rest of it is still unread.
	status := make([]byte, 1)
	if _, err := io.ReadFull(conn, status); err != nil {
		log.Fatal(err)
	}
	if status[0] != '+' {
		fmt.Printf("protocol error: reply starts with %q\n", status)
		conn.MarkUnusable()
	}
	if err := conn.Close(); err != nil { // closes the socket instead of keeping it
		log.Fatal(err)
	}
	fmt.Println("broken:", pool.Stats().BrokenClosed)
	if err := pool.Close(); err != nil {
		log.Fatal(err)
	}
	// Output:
	// protocol error: reply starts with "G"
	// broken: 1
}

// ExampleConn_Detach takes a conn out of the pool for good, for a session
// of its own (a SUBSCRIBE, a LISTEN, an HTTP Upgrade): its slot is free at
// once, and closing it is the caller's job.
func ExampleConn_Detach() {
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
	nc, err := conn.Detach() // conn is returned; nc is ours
	if err != nil {
		log.Fatal(err)
	}
	st := pool.Stats()
	fmt.Printf("detached=%d open=%d\n", st.DetachedClosed, st.OpenConns)

	reply, err := exchange(nc, "still open")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(reply)
	if err := nc.Close(); err != nil {
		log.Fatal(err)
	}
	if err := pool.Close(); err != nil {
		log.Fatal(err)
	}
	// Output:
	// detached=1 open=0
	// still open
}
