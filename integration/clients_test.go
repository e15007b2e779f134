package integration

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/lib/pq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
)

// Issue 21, item 6: each client run twice through a pool of MaxConns 8,
// first with its own defaults, as a user who did not read docs/clients.md
// would, then with the settings that page gives. With its defaults a
// client must be fast or fail with ErrClientPoolOverCap within its wait,
// and the warning must reach the user; with the documented settings it
// must be fast and fail nothing.

// slowBound is how long a run of a few thousand requests may take on a
// loaded 2-core machine: fast runs take well under a second.
const slowBound = 15 * time.Second

// run is the outcome of a workload: how long it took, its slowest request,
// and the errors of those that failed.
type run struct {
	took, slowest time.Duration
	ok            atomic.Int64
	mu            sync.Mutex
	errs          []error
}

// runWorkload runs perWorker requests from each of workers goroutines.
func runWorkload(workers, perWorker int, request func(g, i int) error) *run {
	r := &run{}
	var slowest atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			for i := range perWorker {
				t0 := time.Now()
				err := request(g, i)
				if d := int64(time.Since(t0)); d > slowest.Load() {
					slowest.Store(d) // racy max: good enough for a report
				}
				if err != nil {
					r.mu.Lock()
					r.errs = append(r.errs, err)
					r.mu.Unlock()
					continue
				}
				r.ok.Add(1)
			}
		})
	}
	wg.Wait()
	r.took, r.slowest = time.Since(start), time.Duration(slowest.Load())
	return r
}

func (r *run) String() string {
	return fmt.Sprintf("took %v, slowest %v, ok %d, failed %d", r.took.Round(time.Millisecond),
		r.slowest.Round(time.Millisecond), r.ok.Load(), len(r.errs))
}

// fastOrClear checks a run with a client's defaults: every failure of a
// dial through the pool says the client's pool is over the cap, and a run
// with such failures, or a slow one, also warned once, where a user
// without a logger sees it. A request whose dial succeeded may still run
// out of its deadline afterwards (the wait at the cap took most of it):
// that error is the client's own deadline, not the pool's, and how many
// end so depends on the machine's load (none on an idle machine, up to
// half with a full test run and two CPU hogs beside it with lib/pq, whose
// every timed-out query dials a cancel request through the same cap); any
// other error fails the test.
func fastOrClear(t *testing.T, r *run, warned *recorder) {
	t.Helper()
	var fromPool, other []error
	for _, err := range r.errs {
		if op, ok := errors.AsType[*net.OpError](err); (ok && op.Op == "dial") || strings.Contains(err.Error(), "connpool:") {
			fromPool = append(fromPool, err)
		} else {
			other = append(other, err)
		}
	}
	for _, err := range fromPool {
		if !assert.ErrorIs(t, err, connpool.ErrClientPoolOverCap, "a failure that does not say why") {
			break
		}
	}
	for _, err := range other {
		if !assert.True(t, ranOutOfDeadline(err), "a request failed after its dial, not by running out of its own deadline: %v", err) {
			break
		}
	}
	if len(other) > 0 {
		t.Logf("%d requests ran out of their deadline after their dial", len(other))
	}
	if len(fromPool) > 0 || r.took > slowBound {
		assert.NotEmpty(t, warned.all(), "slow or failing, and no warning reached slog.Default")
		for _, w := range warned.all() {
			assert.Contains(t, w, "docs/clients.md")
		}
	}
	assert.Less(t, r.took, slowBound, "neither fast nor failed within the wait")
}

// ranOutOfDeadline reports whether err is a request's own deadline
// ending: the context's error, or PostgreSQL's query_canceled (57014),
// which the server returns to a query whose driver sent a cancel request
// when the deadline came, and which lib/pq returns when the server's
// reply reaches it before it notices its context ended.
func ranOutOfDeadline(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var pqErr *pq.Error
	var pgErr *pgconn.PgError
	return (errors.As(err, &pqErr) && pqErr.Code == "57014") || (errors.As(err, &pgErr) && pgErr.Code == "57014")
}

// recorder keeps the warnings logged to slog.Default while a test runs:
// what a user who set no logger sees on stderr.
type recorder struct {
	mu   sync.Mutex
	msgs []string
}

func recordDefaultLog(t *testing.T) *recorder {
	r := &recorder{}
	prev := slog.Default()
	slog.SetDefault(slog.New(r))
	t.Cleanup(func() { slog.SetDefault(prev) })
	return r
}

func (r *recorder) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler           { return r }
func (r *recorder) WithGroup(string) slog.Handler                { return r }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	msg := rec.Message
	rec.Attrs(func(a slog.Attr) bool { msg += " " + a.Key + "=" + a.Value.String(); return true })
	r.mu.Lock()
	r.msgs = append(r.msgs, msg)
	r.mu.Unlock()
	return nil
}

func (r *recorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
}

// redisWorkload is 3,200 SETs from 32 goroutines, with no deadline of the
// caller's own, as a user who relies on the client's timeouts writes it.
func redisWorkload(client *redis.Client) *run {
	return runWorkload(32, 100, func(g, i int) error {
		return client.Set(context.Background(), fmt.Sprintf("connpool:clients:%d", g), i, time.Minute).Err()
	})
}

// TestGoRedisDefaultsOverCap pins issue 21's go-redis run: with go-redis's
// defaults (PoolSize 10 per CPU, above MaxConns 8) go-redis keeps every
// conn and its extra dials waited at the cap for their 5s timeout, five
// attempts each, stalling its commands: 6,400 commands took 51s, and 16
// failed with "context deadline exceeded". Now the first wait that runs
// out says why, the dials after it fail fast, and the run ends within the
// first wait.
func TestGoRedisDefaultsOverCap(t *testing.T) {
	needService(t, "Redis", redisAddr)
	warned := recordDefaultLog(t)
	pool := newPool(t, redisAddr, connpool.WithMaxConns(maxConns))
	client := redis.NewClient(&redis.Options{Addr: redisAddr, Dialer: pool.DialContext})
	t.Cleanup(func() { _ = client.Close() })
	require.Greater(t, client.Options().PoolSize, maxConns, "go-redis's default pool is above the cap")

	r := redisWorkload(client)
	t.Logf("go-redis defaults: %v; pool %v", r, pool.Stats())
	fastOrClear(t, r, warned)
}

// TestGoRedisDocumented runs go-redis with the settings of
// docs/clients.md: PoolSize and MaxActiveConns at MaxConns, pipelines on
// the main pool, a few idle conns kept warm, idle ones closed after a
// minute.
func TestGoRedisDocumented(t *testing.T) {
	needService(t, "Redis", redisAddr)
	pool := newPool(t, redisAddr, connpool.WithMaxConns(maxConns))
	client := redis.NewClient(&redis.Options{Addr: redisAddr, Dialer: pool.DialContext,
		PoolSize: maxConns, MaxActiveConns: maxConns, PipelinePoolSize: -1, MinIdleConns: 2, ConnMaxIdleTime: time.Minute})
	t.Cleanup(func() { _ = client.Close() })
	watch := watchCap(pool)

	r := redisWorkload(client)
	st := pool.Stats()
	t.Logf("go-redis documented: %v; pool %v", r, st)
	assert.Empty(t, r.errs)
	assert.Less(t, r.took, slowBound)
	assert.LessOrEqual(t, watch.Stop(), int64(maxConns))
	assert.LessOrEqual(t, st.Dials, int64(maxConns), "no conn dialed twice")
	assert.Zero(t, st.Timeouts)
}

// sqlWorkload is 640 queries of 5ms from 32 goroutines, each with the
// deadline given, as a service with a query timeout runs them; query
// returns its one argument after 5ms.
func sqlWorkload(db *sql.DB, query string, deadline time.Duration) *run {
	return runWorkload(32, 20, func(g, i int) error {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		var got int64
		want := int64(g*1000 + i)
		if err := db.QueryRowContext(ctx, query, want).Scan(&got); err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("got %d, want %d", got, want)
		}
		return nil
	})
}

// sqlClient is a database/sql driver whose dialer is a pool's DialContext.
type sqlClient struct {
	name, service, addr string
	open                func(t *testing.T, pool *connpool.Pool) *sql.DB
	query               string // returns its argument after 5ms
}

var mysqlDialNames atomic.Int64

var sqlClients = []sqlClient{
	{"pgx", "PostgreSQL", postgresAddr, func(t *testing.T, pool *connpool.Pool) *sql.DB {
		cfg, err := pgx.ParseConfig("postgres://postgres@" + postgresAddr + "/test?sslmode=disable")
		require.NoError(t, err)
		cfg.DialFunc = pool.DialContext
		return stdlib.OpenDB(*cfg)
	}, "SELECT $1::bigint FROM pg_sleep(0.005)"},
	{"libpq", "PostgreSQL", postgresAddr, func(t *testing.T, pool *connpool.Pool) *sql.DB {
		connector, err := pq.NewConnector("host=127.0.0.1 port=5432 user=postgres dbname=test sslmode=disable")
		require.NoError(t, err)
		connector.Dialer(pqDialer{pool})
		return sql.OpenDB(connector)
	}, "SELECT $1::bigint FROM pg_sleep(0.005)"},
	{"mysql", "MariaDB", mariadbAddr, func(t *testing.T, pool *connpool.Pool) *sql.DB {
		// Dial names are global to the driver: one per pool.
		name := fmt.Sprintf("connpool-clients-%d", mysqlDialNames.Add(1))
		mysql.RegisterDialContext(name, pool.DialAddr)
		db, err := sql.Open("mysql", "root@"+name+"("+mariadbAddr+")/test")
		require.NoError(t, err)
		return db
	}, "SELECT CAST(? AS SIGNED) + SLEEP(0.005)"},
}

// TestSQLDefaultsOverCap pins issue 21's database/sql run: with its
// defaults (no cap on open conns, 2 idle kept) database/sql dials past the
// cap whenever more than 8 queries run, and closes a conn only when 2 are
// idle already: it dialed 32 conns for 300 queries, and under load its
// dials queue at the pool. Each query must succeed or fail with
// ErrClientPoolOverCap, within its deadline.
func TestSQLDefaultsOverCap(t *testing.T) {
	for _, c := range sqlClients {
		t.Run("client="+c.name, func(t *testing.T) {
			needService(t, c.service, c.addr)
			warned := recordDefaultLog(t)
			pool := newPool(t, c.addr, connpool.WithMaxConns(maxConns))
			db := c.open(t, pool)
			t.Cleanup(func() { _ = db.Close() })

			r := sqlWorkload(db, c.query, 2*time.Second)
			t.Logf("database/sql defaults: %v; pool %v; db %+v", r, pool.Stats(), db.Stats())
			fastOrClear(t, r, warned)
		})
	}
}

// TestSQLDocumented runs database/sql with the settings of
// docs/clients.md: at most MaxConns open, as many kept idle, idle ones
// closed after a minute. Nothing fails, and no conn is dialed twice. The
// queries' deadline is long enough that none runs out on a loaded
// machine: a query that ran out would make pgx and lib/pq dial a cancel
// request through the pool, a dial more than MaxConns (docs/clients.md
// says to leave room for those), and the run would measure the machine,
// not the settings.
func TestSQLDocumented(t *testing.T) {
	for _, c := range sqlClients {
		t.Run("client="+c.name, func(t *testing.T) {
			needService(t, c.service, c.addr)
			pool := newPool(t, c.addr, connpool.WithMaxConns(maxConns))
			db := c.open(t, pool)
			t.Cleanup(func() { _ = db.Close() })
			db.SetMaxOpenConns(maxConns - 2) // two slots for cancel requests
			db.SetMaxIdleConns(maxConns - 2)
			db.SetConnMaxIdleTime(time.Minute)
			watch := watchCap(pool)

			r := sqlWorkload(db, c.query, slowBound)
			st := pool.Stats()
			t.Logf("database/sql documented: %v; pool %v; db %+v", r, st, db.Stats())
			assert.Empty(t, r.errs)
			assert.Less(t, r.took, slowBound)
			assert.LessOrEqual(t, watch.Stop(), int64(maxConns))
			assert.LessOrEqual(t, st.Dials, int64(maxConns), "no conn dialed twice")
			assert.Zero(t, st.Timeouts)
		})
	}
}

// TestSQLCancelRequestHasRoom runs the README's database/sql recipe
// (SetMaxOpenConns two below the pool's cap) through a query whose
// context ends while it runs: pgx and lib/pq then dial a cancel request
// through the pool. That dial finds a free slot, and the queries after
// it run as fast as before. Regression: with SetMaxOpenConns at the cap
// (the recipe before), the cancel's dial waited at the cap for the slot
// of the very conn it cancels, which pgx closes only after the cancel,
// 15 s later, and 300 quick queries behind it took 13 s.
func TestSQLCancelRequestHasRoom(t *testing.T) {
	for _, c := range sqlClients {
		if c.name != "pgx" {
			continue // lib/pq let the query run its 5 s here; go-sql-driver/mysql sends no cancel request
		}
		t.Run("client="+c.name, func(t *testing.T) {
			needService(t, c.service, c.addr)
			pool := newPool(t, c.addr, connpool.WithMaxConns(maxConns), connpool.WithMinIdle(2))
			db := c.open(t, pool)
			t.Cleanup(func() { _ = db.Close() })
			db.SetMaxOpenConns(maxConns - 2)
			db.SetMaxIdleConns(maxConns - 2)
			db.SetConnMaxIdleTime(time.Minute)
			warm := sqlWorkload(db, c.query, slowBound) // database/sql opens all it may
			require.Empty(t, warm.errs)

			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			_, err := db.ExecContext(ctx, "SELECT pg_sleep(5)")
			cancel()
			require.ErrorIs(t, err, context.DeadlineExceeded)
			waits := pool.Stats().WaitCount
			r := sqlWorkload(db, c.query, slowBound)
			st := pool.Stats()
			t.Logf("after a cancelled query: %v; pool %v", r, st)
			assert.Empty(t, r.errs)
			assert.Equal(t, waits, st.WaitCount, "no dial waited at the cap: the cancel request had a slot")
			assert.Less(t, r.took, slowBound)
		})
	}
}

// httpServer answers after a millisecond, like a small API.
func httpServer(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Millisecond) // the handler's work
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	return srv
}

// httpWorkload is 1,600 GETs from 32 goroutines, each with a 2s deadline.
func httpWorkload(client *http.Client, url string) *run {
	return runWorkload(32, 50, func(g, i int) error {
		return get(client, url, 2*time.Second)
	})
}

func get(client *http.Client, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && string(body) != "ok" {
		err = fmt.Errorf("body %q", body)
	}
	return err
}

// TestHTTPTransportDefaults: a bare Transport (no cap per host, 2 idle
// conns kept per host) through a pool of MaxConns 8.
func TestHTTPTransportDefaults(t *testing.T) {
	warned := recordDefaultLog(t)
	srv := httpServer(t)
	pool := newPool(t, strings.TrimPrefix(srv.URL, "http://"), connpool.WithMaxConns(maxConns))
	tr := &http.Transport{DialContext: pool.DialContext}
	t.Cleanup(tr.CloseIdleConnections)

	r := httpWorkload(&http.Client{Transport: tr}, srv.URL)
	t.Logf("http.Transport defaults: %v; pool %v", r, pool.Stats())
	fastOrClear(t, r, warned)
}

// TestHTTPTransportDocumented: a Transport capped at MaxConns per host,
// that keeps as many idle, and closes them before the pool would.
func TestHTTPTransportDocumented(t *testing.T) {
	srv := httpServer(t)
	pool := newPool(t, strings.TrimPrefix(srv.URL, "http://"), connpool.WithMaxConns(maxConns))
	tr := &http.Transport{DialContext: pool.DialContext,
		MaxConnsPerHost: maxConns, MaxIdleConnsPerHost: maxConns, IdleConnTimeout: 30 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	watch := watchCap(pool)

	r := httpWorkload(&http.Client{Transport: tr}, srv.URL)
	st := pool.Stats()
	t.Logf("http.Transport documented: %v; pool %v", r, st)
	assert.Empty(t, r.errs)
	assert.Less(t, r.took, slowBound)
	assert.LessOrEqual(t, watch.Stop(), int64(maxConns))
	assert.LessOrEqual(t, st.Dials, int64(maxConns), "no conn dialed twice")
}

// groupHosts starts hosts servers and returns their URLs.
func groupHosts(t *testing.T, hosts int) []string {
	var urls []string
	for range hosts {
		urls = append(urls, httpServer(t).URL)
	}
	return urls
}

// fillHost leaves a Transport with n idle keep-alive conns to url, the
// group g's only conns: n requests at once, all answered, again until the
// Transport holds n conns (on a loaded machine the n requests can run one
// after the other, over one conn).
func fillHost(t *testing.T, client *http.Client, g *connpool.Group, url string, n int) {
	t.Helper()
	for try := 0; g.GroupStats().OpenConns < n; try++ {
		require.Less(t, try, 50, "%d requests at once never made the Transport open %d conns", n, n)
		errs := make(chan error, n)
		for range n {
			go func() { errs <- get(client, url, waitFor) }()
		}
		for range n {
			require.NoError(t, <-errs)
		}
	}
}

// TestGroupBareTransportStall pins issue 21's Transport over a Group: a
// bare Transport keeps its idle conns to the first host (2 per host by
// default, forever: IdleConnTimeout 0), which hold every slot of the
// group's cap, and a request to a new host stalled with no word of why:
// the group's warning went to a logger that discards by default, and a
// request with no deadline of its own waited forever. The warning now
// reaches slog.Default, naming Group.CloseIdleWith, and once a dial has
// waited a second at the cap, requests to new hosts fail at once with
// ErrClientPoolOverCap.
func TestGroupBareTransportStall(t *testing.T) {
	warned := recordDefaultLog(t)
	urls := groupHosts(t, 3)
	g, err := connpool.NewGroup(connpool.WithGroupMaxConns(2))
	require.NoError(t, err)
	tr := &http.Transport{DialContext: g.DialContext}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		_ = g.Close()
	})
	client := &http.Client{Transport: tr}
	fillHost(t, client, g, urls[0], 2)

	err = get(client, urls[1], 1500*time.Millisecond)
	require.Error(t, err, "the group's slots are held by idle conns nobody can close")
	require.Eventually(t, func() bool { return len(warned.all()) > 0 }, waitFor, tick, "no warning reached slog.Default")
	assert.Contains(t, warned.all()[0], "Group.CloseIdleWith")

	start := time.Now()
	err = get(client, urls[2], waitFor) // a user's request with a generous deadline
	assert.ErrorIs(t, err, connpool.ErrClientPoolOverCap)
	assert.Less(t, time.Since(start), waitFor/2, "failed at once, not at its deadline")
}

// TestGroupTransportDocumented: the same Transport registered with
// CloseIdleWith. The group takes back the idle conns of the first host,
// and a request to a new host is served at once.
func TestGroupTransportDocumented(t *testing.T) {
	urls := groupHosts(t, 3)
	g, err := connpool.NewGroup(connpool.WithGroupMaxConns(2))
	require.NoError(t, err)
	tr := &http.Transport{DialContext: g.DialContext, MaxIdleConnsPerHost: 2, IdleConnTimeout: 30 * time.Second}
	g.CloseIdleWith(tr)
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		_ = g.Close()
	})
	client := &http.Client{Transport: tr}
	fillHost(t, client, g, urls[0], 2)
	for _, url := range urls[1:] {
		start := time.Now()
		require.NoError(t, get(client, url, waitFor))
		assert.Less(t, time.Since(start), time.Second, "a new host waited at the group's cap")
	}
	r := runWorkload(16, 30, func(w, i int) error { return get(client, urls[(w+i)%len(urls)], waitFor) })
	t.Logf("group, documented: %v", r)
	assert.Empty(t, r.errs)
	assert.Less(t, r.took, slowBound)
}
