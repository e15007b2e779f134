package integration

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/lib/pq"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
)

const maxConns = 8

// hammerSQL runs queries from many goroutines, each checking that it got
// its own value back, while kill ends every server session of the
// client's twice mid-run. The client must recover, no query may return
// another's data, and the pool's cap must hold.
func hammerSQL(t *testing.T, db *sql.DB, pool *connpool.Pool, query string, kill func(context.Context) (int, error)) {
	t.Helper()
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	watch := watchCap(pool)
	const workers, perWorker = 16, 150
	res := hammer(t, workers, perWorker, func() {
		// The second kill may find the client not yet reconnected.
		killed := 0
		for range 2 {
			n, err := kill(context.Background())
			require.NoError(t, err)
			killed += n
		}
		assert.Positive(t, killed, "sessions killed")
	}, func(g, i int) (bool, error) {
		want := int64(g*1_000_000 + i)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var got int64
		err := db.QueryRowContext(ctx, query, want).Scan(&got)
		return got != want, err
	})
	recoverWithin(t, func(ctx context.Context) error {
		var got int64
		if err := db.QueryRowContext(ctx, query, 42).Scan(&got); err != nil {
			return err
		}
		if got != 42 {
			return fmt.Errorf("got %d", got)
		}
		return nil
	})
	peak := watch.Stop()
	require.NoError(t, db.Close())
	// DB.Close returns while database/sql's opener goroutine may still be
	// connecting on behalf of a query whose session was killed: that
	// conn is closed by database/sql as soon as its dial returns, after
	// Close. Wait for it rather than read InUse at once.
	require.Eventually(t, func() bool { return pool.Stats().InUse == 0 }, waitFor, tick,
		"a conn from DialContext was never closed by database/sql")
	st := pool.Stats()
	t.Logf("queries %v; pool %+v", res, st)
	assert.Zero(t, res.wrong.Load(), "a query returned another query's data")
	assert.Greater(t, res.ok.Load(), int64(workers*perWorker/2))
	assert.LessOrEqual(t, peak, int64(maxConns), "the pool's cap")
	assert.Positive(t, st.ReleasedClosed, "conns closed by the driver were destroyed, not reused")
}

// terminatePostgres ends every backend whose application_name is app.
func terminatePostgres(app string) func(context.Context) (int, error) {
	return func(ctx context.Context) (int, error) {
		admin, err := sql.Open("pgx", "postgres://postgres@"+postgresAddr+"/test?sslmode=disable")
		if err != nil {
			return 0, err
		}
		defer admin.Close()
		var n int
		err = admin.QueryRowContext(ctx,
			`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&n)
		return n, err
	}
}

func TestPgxThroughPool(t *testing.T) {
	needService(t, "PostgreSQL", postgresAddr)
	pool := newPool(t, postgresAddr, connpool.WithMaxConns(maxConns), connpool.WithMinIdle(2))
	cfg, err := pgx.ParseConfig("postgres://postgres@" + postgresAddr + "/test?sslmode=disable&application_name=connpool-pgx")
	require.NoError(t, err)
	cfg.DialFunc = pool.DialContext
	hammerSQL(t, stdlib.OpenDB(*cfg), pool, "SELECT $1::bigint", terminatePostgres("connpool-pgx"))
}

// pqDialer adapts a pool to lib/pq's Dialer.
type pqDialer struct{ pool *connpool.Pool }

func (d pqDialer) Dial(network, address string) (net.Conn, error) {
	return d.pool.DialContext(context.Background(), network, address)
}

func (d pqDialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.pool.DialContext(ctx, network, address)
}

func (d pqDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return d.pool.DialContext(ctx, network, address)
}

func TestLibPQThroughPool(t *testing.T) {
	needService(t, "PostgreSQL", postgresAddr)
	pool := newPool(t, postgresAddr, connpool.WithMaxConns(maxConns), connpool.WithMinIdle(2))
	connector, err := pq.NewConnector("host=127.0.0.1 port=5432 user=postgres dbname=test sslmode=disable application_name=connpool-pq")
	require.NoError(t, err)
	connector.Dialer(pqDialer{pool})
	hammerSQL(t, sql.OpenDB(connector), pool, "SELECT $1::bigint", terminatePostgres("connpool-pq"))
}

var registerMySQL sync.Once

func TestMySQLThroughPool(t *testing.T) {
	needService(t, "MariaDB", mariadbAddr)
	// The driver logs each killed session; keep that in the test's log.
	_ = mysql.SetLogger(testLogger{t})
	defer mysql.SetLogger(log.New(os.Stderr, "[mysql] ", log.LstdFlags))
	pool := newPool(t, mariadbAddr, connpool.WithMaxConns(maxConns), connpool.WithMinIdle(2))
	// Dial names are global to the driver: route this one to the test's
	// pool through a variable.
	current.Store(pool)
	registerMySQL.Do(func() {
		mysql.RegisterDialContext("connpool-test", func(ctx context.Context, addr string) (net.Conn, error) {
			return current.Load().DialAddr(ctx, addr)
		})
	})
	db, err := sql.Open("mysql", "root@connpool-test("+mariadbAddr+")/test")
	require.NoError(t, err)
	kill := func(ctx context.Context) (int, error) {
		admin, err := sql.Open("mysql", "root@tcp("+mariadbAddr+")/test")
		if err != nil {
			return 0, err
		}
		defer admin.Close()
		rows, err := admin.QueryContext(ctx,
			`SELECT id FROM information_schema.processlist WHERE db = 'test' AND id <> CONNECTION_ID() AND command <> 'Daemon'`)
		if err != nil {
			return 0, err
		}
		var ids []int64
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				return 0, err
			}
			ids = append(ids, id)
		}
		rows.Close()
		for _, id := range ids {
			// A session may end by itself meanwhile; that is fine.
			_, _ = admin.ExecContext(ctx, fmt.Sprintf("KILL %d", id))
		}
		return len(ids), nil
	}
	hammerSQL(t, db, pool, "SELECT CAST(? AS SIGNED)", kill)
}

var current atomic.Pointer[connpool.Pool]

type testLogger struct{ t *testing.T }

func (l testLogger) Print(v ...any) { l.t.Log(append([]any{"mysql:"}, v...)...) }
