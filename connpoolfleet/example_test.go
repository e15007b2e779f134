package connpoolfleet_test

import (
	"context"
	"log"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/connpoolfleet"
)

// A replica joins the budget of 100 conns to its database with its one
// pool. The gate's dialer keeps the pool from dialing outside a valid lease.
func Example() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()

	gate := connpoolfleet.NewGate()
	pool, err := connpool.New("tcp", "db.internal:5432",
		connpool.WithDialer(gate.Dialer(nil)),
		connpool.WithDialBackoff(10*time.Millisecond, 500*time.Millisecond),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := connpoolfleet.Join(ctx, rdb, "orders-db", 100,
		[]connpoolfleet.Target{connpoolfleet.PoolTarget(pool)},
		connpoolfleet.WithGate(gate))
	if err != nil {
		log.Fatal(err)
	}
	defer func() {
		if err := m.Leave(context.Background()); err != nil {
			log.Print(err) // the ledger frees the grant when the lease ends
		}
	}()

	// ... use pool as usual; its cap follows the member's share.
	s := m.Stats()
	log.Printf("%s: %s, grant %d of %d", s.ID, s.State, s.Grant, s.BudgetSize)
}
