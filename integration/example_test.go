package integration

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"net"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/lib/pq"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/connpool/connpool"
)

// PostgreSQL through pgx: the pool is pgx's DialFunc.
func Example_pgx() {
	pool, _ := connpool.New("tcp", "127.0.0.1:5432", connpool.WithMaxConns(8), connpool.WithMinIdle(2))
	defer pool.Close()
	cfg, _ := pgx.ParseConfig("postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	cfg.DialFunc = pool.DialContext
	db := stdlib.OpenDB(*cfg)
	defer db.Close()

	var n int
	if err := db.QueryRow("SELECT 40 + 2").Scan(&n); err != nil {
		fmt.Println(err)
	}
	fmt.Println(n)
	// Output: 42
}

// PostgreSQL through lib/pq: the pool behind the connector's Dialer.
func Example_libpq() {
	pool, _ := connpool.New("tcp", "127.0.0.1:5432", connpool.WithMaxConns(8))
	defer pool.Close()
	connector, _ := pq.NewConnector("host=127.0.0.1 port=5432 user=postgres dbname=test sslmode=disable")
	connector.Dialer(pqDialer{pool}) // Dial, DialTimeout and DialContext on pool.DialContext
	db := sql.OpenDB(connector)
	defer db.Close()

	var s string
	if err := db.QueryRow("SELECT 'pooled'").Scan(&s); err != nil {
		fmt.Println(err)
	}
	fmt.Println(s)
	// Output: pooled
}

// MariaDB or MySQL through go-sql-driver/mysql: register the pool as a
// dial name and use it in the DSN.
func Example_mysql() {
	pool, _ := connpool.New("tcp", "127.0.0.1:3306", connpool.WithMaxConns(8), connpool.WithMinIdle(2))
	defer pool.Close()
	mysql.RegisterDialContext("connpool-example", pool.DialAddr)
	db, _ := sql.Open("mysql", "root@connpool-example(127.0.0.1:3306)/test")
	defer db.Close()

	var n int
	if err := db.QueryRow("SELECT 6 * 7").Scan(&n); err != nil {
		fmt.Println(err)
	}
	fmt.Println(n)
	// Output: 42
}

// Redis through go-redis: the pool is the client's Dialer.
func Example_goRedis() {
	pool, _ := connpool.New("tcp", "127.0.0.1:6379", connpool.WithMaxConns(8), connpool.WithMinIdle(2))
	defer pool.Close()
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", Dialer: pool.DialContext})
	defer client.Close()

	ctx := context.Background()
	client.Set(ctx, "connpool:example", "hello", 0)
	fmt.Println(client.Get(ctx, "connpool:example").Val())
	// Output: hello
}

// Redis used directly: borrowed conns speak RESP, and a PING/PONG check
// runs on idle conns in the background.
func Example_redisPingPong() {
	pool, _ := connpool.New("tcp", "127.0.0.1:6379",
		connpool.WithHealthCheck(connpool.PingPong([]byte("PING\r\n"), []byte("+PONG\r\n"))))
	defer pool.Close()

	conn, err := pool.Get(context.Background())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	conn.Write([]byte("ECHO pooled\r\n"))
	r := bufio.NewReader(conn)
	r.ReadString('\n') // $6
	reply, _ := r.ReadString('\n')
	fmt.Printf("%q\n", reply)
	// Output: "pooled\r\n"
}

// gRPC: the pool is grpc-go's context dialer.
func Example_grpc() {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	server := grpc.NewServer()
	healthpb.RegisterHealthServer(server, health.NewServer())
	go server.Serve(ln)
	defer server.Stop()

	pool, _ := connpool.New("tcp", ln.Addr().String(), connpool.WithMaxConns(4))
	defer pool.Close()
	cc, _ := grpc.NewClient("passthrough:///"+ln.Addr().String(),
		grpc.WithContextDialer(pool.DialAddr), grpc.WithTransportCredentials(insecure.NewCredentials()))
	defer cc.Close()

	resp, err := healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{})
	fmt.Println(resp.GetStatus(), err)
	// Output: SERVING <nil>
}
