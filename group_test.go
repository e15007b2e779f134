package connpool_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
)

func newGroup(t *testing.T, opts ...connpool.GroupOption) *connpool.Group {
	t.Helper()
	g, err := connpool.NewGroup(opts...)
	require.NoError(t, err)
	t.Cleanup(func() { g.Close() })
	return g
}

func TestGroupKeepsAPoolPerAddress(t *testing.T) {
	a, b := startServer(t), startServer(t)
	g := newGroup(t, connpool.WithMaxConns(2))
	for _, srv := range []string{a.Addr(), b.Addr(), a.Addr()} {
		c, err := g.Get(context.Background(), "tcp", srv)
		require.NoError(t, err)
		assert.Equal(t, srv, c.RemoteAddr().String(), "never a conn to the wrong host")
		mustRoundTrip(t, c, "to "+srv)
		require.NoError(t, c.Close())
	}
	st := g.Stats()
	require.Len(t, st, 2)
	assert.Equal(t, int64(1), st[connpool.Addr{Network: "tcp", Address: a.Addr()}].Hits)
	assert.Equal(t, 2, st[connpool.Addr{Network: "tcp", Address: b.Addr()}].MaxConns)
}

// TestGroupCapEvictsIdleConnsElsewhere: at the group's cap, a dial to one
// address closes the oldest idle conn of another instead of waiting.
func TestGroupCapEvictsIdleConnsElsewhere(t *testing.T) {
	a, b := startServer(t), startServer(t)
	counter := &countingDialer{}
	g := newGroup(t, connpool.WithGroupMaxConns(2), connpool.WithDialer(counter.dial))
	ctx := context.Background()
	ca1, err := g.Get(ctx, "tcp", a.Addr())
	require.NoError(t, err)
	ca2, err := g.Get(ctx, "tcp", a.Addr())
	require.NoError(t, err)
	require.NoError(t, ca1.Close())
	require.NoError(t, ca2.Close())

	cb, err := g.Get(ctx, "tcp", b.Addr())
	require.NoError(t, err)
	mustRoundTrip(t, cb, "b")
	assert.Equal(t, int64(1), g.Stats()[connpool.Addr{Network: "tcp", Address: a.Addr()}].IdleClosed)
	assert.LessOrEqual(t, counter.peak.Load(), int64(2))

	// With every conn borrowed, a Get at the cap waits for its context.
	ca, err := g.Get(ctx, "tcp", a.Addr())
	require.NoError(t, err)
	short, cancel := context.WithTimeout(ctx, 60*time.Millisecond)
	defer cancel()
	_, err = g.Get(short, "tcp", b.Addr())
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.NoError(t, ca.Close())
	require.NoError(t, cb.Close())
	assert.LessOrEqual(t, counter.peak.Load(), int64(2), "sockets open across the group")
}

func TestGroupForgetsUnusedPools(t *testing.T) {
	a, b := startServer(t), startServer(t)
	g := newGroup(t, connpool.WithGroupIdleTimeout(40*time.Millisecond))
	ca, err := g.Get(context.Background(), "tcp", a.Addr())
	require.NoError(t, err)
	require.NoError(t, ca.Close())
	held, err := g.Get(context.Background(), "tcp", b.Addr())
	require.NoError(t, err)

	require.Eventually(t, func() bool { return len(g.Stats()) == 1 }, waitFor, tick)
	_, kept := g.Stats()[connpool.Addr{Network: "tcp", Address: b.Addr()}]
	assert.True(t, kept, "a pool with a borrowed conn is kept")
	assert.Eventually(t, func() bool { return a.Open() == 0 }, waitFor, tick, "the forgotten pool's conns are closed")
	mustRoundTrip(t, held, "still mine")
	require.NoError(t, held.Close())
	require.Eventually(t, func() bool { return len(g.Stats()) == 0 }, waitFor, tick)
}

func TestGroupAsHTTPDialer(t *testing.T) {
	g := newGroup(t, connpool.WithMaxConns(4), connpool.WithGroupMaxConns(6))
	tr := &http.Transport{DialContext: g.DialContext}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var urls []string
	for i := range 3 {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "server %d", i)
		}))
		defer srv.Close()
		urls = append(urls, srv.URL)
	}
	for round := range 5 {
		for i, u := range urls {
			resp, err := client.Get(u)
			require.NoError(t, err, "round %d", round)
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			assert.Equal(t, fmt.Sprintf("server %d", i), string(body))
		}
	}
	assert.Len(t, g.Stats(), 3)
	_, err := g.DialContext(context.Background(), "tcp", "")
	assert.ErrorIs(t, err, connpool.ErrInvalidOption, "an empty address is refused")
	assert.True(t, strings.Contains(err.Error(), "empty address"))
}

func TestGroupOptionsAndClose(t *testing.T) {
	// New takes Options only: a group-only option does not compile there.
	for _, opt := range []connpool.GroupOption{connpool.WithGroupMaxConns(3), connpool.WithGroupIdleTimeout(time.Second)} {
		_, isPoolOption := opt.(connpool.Option)
		assert.False(t, isPoolOption, "%T is accepted by New", opt)
	}
	for _, opt := range []connpool.GroupOption{
		connpool.WithGroupMaxConns(0),
		connpool.WithGroupIdleTimeout(-time.Second),
		connpool.WithMaxConns(0),
	} {
		g, err := connpool.NewGroup(opt)
		assert.Nil(t, g)
		assert.ErrorIs(t, err, connpool.ErrInvalidOption)
	}
	// Validation does not depend on which group option comes last, and
	// names every bad option, of the group and of its pools.
	_, err := connpool.NewGroup(connpool.WithGroupMaxConns(0), connpool.WithGroupIdleTimeout(time.Minute))
	assert.ErrorContains(t, err, "WithGroupMaxConns(0)")
	_, err = connpool.NewGroup(connpool.WithGroupMaxConns(0), connpool.WithGroupIdleTimeout(-time.Minute), connpool.WithMaxConns(-1))
	for _, name := range []string{"WithGroupMaxConns(0)", "WithGroupIdleTimeout(-1m0s)", "WithMaxConns(-1)"} {
		assert.ErrorContains(t, err, name)
	}
	g, err := connpool.NewGroup(connpool.WithGroupIdleTimeout(0))
	require.NoError(t, err)
	require.NoError(t, g.Close())
	assert.ErrorIs(t, g.Close(), connpool.ErrClosed)
	_, err = g.Get(context.Background(), "tcp", "127.0.0.1:1")
	assert.ErrorIs(t, err, connpool.ErrClosed)
	_, err = g.DialContext(context.Background(), "tcp", "127.0.0.1:1")
	assert.ErrorIs(t, err, connpool.ErrClosed)
}

// idleCloser is an IdleCloser that records when it is called and runs
// onCall, if set, each time.
type idleCloser struct {
	mu     sync.Mutex // guards calls
	calls  []time.Time
	onCall func()
}

func (c *idleCloser) CloseIdleConnections() {
	c.mu.Lock()
	c.calls = append(c.calls, time.Now())
	c.mu.Unlock()
	if c.onCall != nil {
		c.onCall()
	}
}

func (c *idleCloser) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.calls)
}

// TestGroupAsksIdleClosersAtCap: a dial at the cap with no idle conn in
// any pool asks the registered clients to close theirs, holding no lock
// (the closer looks at the group's stats); one whose pools have an idle
// conn evicts it and asks no one.
func TestGroupAsksIdleClosersAtCap(t *testing.T) {
	a, b := startServer(t), startServer(t)
	g := newGroup(t, connpool.WithGroupMaxConns(1))
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	kept, err := g.DialContext(ctx, "tcp", a.Addr()) // as a Transport holds it
	require.NoError(t, err)
	closer := &idleCloser{onCall: func() {
		_ = g.Stats()
		_ = kept.Close() // the client's idle conn: destroyed, its slot freed
	}}
	g.CloseIdleWith(nil)
	g.CloseIdleWith(closer)

	cb, err := g.Get(ctx, "tcp", b.Addr())
	require.NoError(t, err)
	mustRoundTrip(t, cb, "b")
	assert.Equal(t, 1, closer.count())
	require.NoError(t, cb.Close()) // idle in b's pool, holding the slot

	ca, err := g.Get(ctx, "tcp", a.Addr())
	require.NoError(t, err)
	mustRoundTrip(t, ca, "a")
	assert.Equal(t, 1, closer.count(), "an idle conn of a pool is evicted first")
	require.NoError(t, ca.Close())
	assert.Equal(t, int64(1), g.Stats()[connpool.Addr{Network: "tcp", Address: b.Addr()}].IdleClosed)
}

// TestGroupAsksIdleClosersAtMostEvery20ms: many Gets waiting at the cap
// share one call of the closers per 20ms, and a dial whose Get has left
// asks no more.
func TestGroupAsksIdleClosersAtMostEvery20ms(t *testing.T) {
	a, b := startServer(t), startServer(t)
	g := newGroup(t, connpool.WithGroupMaxConns(1), connpool.WithMaxConns(8), connpool.WithMaxConnecting(8))
	held, err := g.Get(context.Background(), "tcp", a.Addr()) // never idle: nothing to evict
	require.NoError(t, err)
	t.Cleanup(func() { held.Close() })
	closer := &idleCloser{} // that closes nothing
	g.CloseIdleWith(closer)

	const waiters = 8
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, waiters)
	for range waiters {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			_, err := g.Get(ctx, "tcp", b.Addr())
			errs <- err
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	}
	n := closer.count()
	t.Logf("%d waiting Gets, %d calls of the closer in %v", waiters, n, elapsed.Round(time.Millisecond))
	assert.GreaterOrEqual(t, n, 2, "asked again while the Gets waited")
	assert.LessOrEqual(t, n, int(elapsed/(20*time.Millisecond))+1, "asked more than once per 20ms in %v", elapsed)
	assert.Never(t, func() bool { return closer.count() != n }, 100*time.Millisecond, tick,
		"the dials whose Gets left still ask")
}

// TestGroupNamesPoolsByAddress: a group's pools are named by their
// address, after the name its options give.
func TestGroupNamesPoolsByAddress(t *testing.T) {
	srv := startServer(t)
	plain := newGroup(t)
	named := newGroup(t, connpool.WithName("api"))
	for _, tc := range []struct {
		g    *connpool.Group
		want string
	}{{plain, "tcp " + srv.Addr()}, {named, "api " + srv.Addr()}} {
		c, err := tc.g.Get(context.Background(), "tcp", srv.Addr())
		require.NoError(t, err)
		require.NoError(t, c.Close())
		assert.Equal(t, tc.want, tc.g.Stats()[connpool.Addr{Network: "tcp", Address: srv.Addr()}].Name)
	}
}
