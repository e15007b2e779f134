package integration

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"log"
	"net"
	"time"

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

// PostgreSQL through pgx: the pool is pgx's DialFunc, and database/sql's
// own pool is sized within the pool's cap (docs/clients.md).
func Example_pgx() {
	pool, err := connpool.New("tcp", "127.0.0.1:5432", connpool.WithMaxConns(8), connpool.WithMinIdle(2))
	if err != nil {
		log.Fatal(err)
	}
	cfg, err := pgx.ParseConfig("postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	if err != nil {
		log.Fatal(err)
	}
	cfg.DialFunc = pool.DialContext
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(6) // the pool's MaxConns less two: a cancelled query's CancelRequest dials too
	db.SetMaxIdleConns(6) // keep them between bursts
	db.SetConnMaxIdleTime(time.Minute)

	var n int
	if err := db.QueryRow("SELECT 40 + 2").Scan(&n); err != nil {
		log.Fatal(err)
	}
	fmt.Println(n)
	if err := db.Close(); err != nil {
		log.Fatal(err)
	}
	if err := pool.Close(); err != nil {
		log.Fatal(err)
	}
	// Output: 42
}

// PostgreSQL through lib/pq: the pool behind the connector's Dialer.
func Example_libpq() {
	pool, err := connpool.New("tcp", "127.0.0.1:5432", connpool.WithMaxConns(8))
	if err != nil {
		log.Fatal(err)
	}
	connector, err := pq.NewConnector("host=127.0.0.1 port=5432 user=postgres dbname=test sslmode=disable")
	if err != nil {
		log.Fatal(err)
	}
	connector.Dialer(pqDialer{pool}) // Dial, DialTimeout and DialContext on pool.DialContext
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(6) // the pool's cap less two, for cancel requests
	db.SetMaxIdleConns(6)
	db.SetConnMaxIdleTime(time.Minute)

	var s string
	if err := db.QueryRow("SELECT 'pooled'").Scan(&s); err != nil {
		log.Fatal(err)
	}
	fmt.Println(s)
	if err := db.Close(); err != nil {
		log.Fatal(err)
	}
	if err := pool.Close(); err != nil {
		log.Fatal(err)
	}
	// Output: pooled
}

// MariaDB or MySQL through go-sql-driver/mysql: register the pool as a
// dial name and use it in the DSN.
func Example_mysql() {
	pool, err := connpool.New("tcp", "127.0.0.1:3306", connpool.WithMaxConns(8), connpool.WithMinIdle(2))
	if err != nil {
		log.Fatal(err)
	}
	mysql.RegisterDialContext("connpool-example", pool.DialAddr)
	db, err := sql.Open("mysql", "root@connpool-example(127.0.0.1:3306)/test")
	if err != nil {
		log.Fatal(err)
	}
	db.SetMaxOpenConns(8) // within the pool's cap
	db.SetMaxIdleConns(8)
	db.SetConnMaxIdleTime(time.Minute)

	var n int
	if err := db.QueryRow("SELECT 6 * 7").Scan(&n); err != nil {
		log.Fatal(err)
	}
	fmt.Println(n)
	if err := db.Close(); err != nil {
		log.Fatal(err)
	}
	if err := pool.Close(); err != nil {
		log.Fatal(err)
	}
	// Output: 42
}

// Redis through go-redis: the pool is the client's Dialer, and go-redis's
// own pool is sized within the pool's cap (docs/clients.md).
func Example_goRedis() {
	pool, err := connpool.New("tcp", "127.0.0.1:6379", connpool.WithMaxConns(8), connpool.WithMinIdle(2))
	if err != nil {
		log.Fatal(err)
	}
	client := redis.NewClient(&redis.Options{
		Addr:             "127.0.0.1:6379",
		Dialer:           pool.DialContext,
		PoolSize:         8, // at most the pool's MaxConns
		MaxActiveConns:   8,
		PipelinePoolSize: -1, // pipelines on the main pool
		MinIdleConns:     2,
		ConnMaxIdleTime:  time.Minute,
	})

	ctx := context.Background()
	if err := client.Set(ctx, "connpool:example", "hello", 0).Err(); err != nil {
		log.Fatal(err)
	}
	v, err := client.Get(ctx, "connpool:example").Result()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(v)
	if err := client.Close(); err != nil {
		log.Fatal(err)
	}
	if err := pool.Close(); err != nil {
		log.Fatal(err)
	}
	// Output: hello
}

// Redis used directly: borrowed conns speak RESP, and a PING/PONG check
// runs on idle conns in the background.
func Example_redisPingPong() {
	pool, err := connpool.New("tcp", "127.0.0.1:6379",
		connpool.WithHealthCheck(connpool.PingPong([]byte("PING\r\n"), []byte("+PONG\r\n"))))
	if err != nil {
		log.Fatal(err)
	}
	conn, err := pool.Get(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	if _, err := conn.Write([]byte("ECHO pooled\r\n")); err != nil {
		log.Fatal(err)
	}
	// The reply is "$6\r\npooled\r\n"; nothing past it is left in r.
	r := bufio.NewReader(conn)
	if _, err := r.ReadString('\n'); err != nil {
		log.Fatal(err)
	}
	reply, err := r.ReadString('\n')
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%q\n", reply)
	if err := conn.Close(); err != nil {
		log.Fatal(err)
	}
	if err := pool.Close(); err != nil {
		log.Fatal(err)
	}
	// Output: "pooled\r\n"
}

// gRPC: the pool is grpc-go's context dialer.
func Example_grpc() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	server := grpc.NewServer()
	healthpb.RegisterHealthServer(server, health.NewServer())
	served := make(chan error, 1)
	go func() { served <- server.Serve(ln) }()

	pool, err := connpool.New("tcp", ln.Addr().String(), connpool.WithMaxConns(4))
	if err != nil {
		log.Fatal(err)
	}
	cc, err := grpc.NewClient("passthrough:///"+ln.Addr().String(),
		grpc.WithContextDialer(pool.DialAddr), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	resp, err := healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.GetStatus())

	if err := cc.Close(); err != nil {
		log.Fatal(err)
	}
	if err := pool.Close(); err != nil {
		log.Fatal(err)
	}
	server.Stop()
	if err := <-served; err != nil { // nil after Stop
		log.Fatal(err)
	}
	// Output: SERVING
}
