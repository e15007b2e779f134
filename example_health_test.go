package connpool_test

import (
	"fmt"
	"log"
	"time"

	"github.com/connpool/connpool"
)

// ExamplePingPong checks idle conns with a request the server must
// answer, which finds a peer that is hung but still connected.
func ExamplePingPong() {
	srv := startEcho(nil) // a loopback echo server standing in for your backend: use your own address for srv.Addr()
	defer srv.Close()

	checked := make(chan error, 1)
	pool, err := connpool.New("tcp", srv.Addr(),
		connpool.WithMinIdle(1),
		// Against Redis: PingPong([]byte("PING\r\n"), []byte("+PONG\r\n")).
		// An echo server answers with the ping itself.
		connpool.WithHealthCheck(connpool.PingPong([]byte("PING\r\n"), []byte("PING\r\n"))),
		connpool.WithHealthCheckInterval(100*time.Millisecond),
		connpool.WithHooks(connpool.Hooks{
			HealthCheckDone: func(ev connpool.HealthCheckEvent) {
				select {
				case checked <- ev.Err: // the first check's result
				default:
				}
			},
		}))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("check:", <-checked)
	if err := pool.Close(); err != nil {
		log.Fatal(err)
	}
	// Output: check: <nil>
}
