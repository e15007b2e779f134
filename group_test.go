package connpool_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
)

func newGroup(t *testing.T, opts ...connpool.Option) *connpool.Group {
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
	_, err := connpool.New("tcp", "x:1", connpool.WithGroupMaxConns(3))
	assert.ErrorContains(t, err, "WithGroupMaxConns: an option of NewGroup")
	for _, opt := range []connpool.Option{
		connpool.WithGroupMaxConns(0),
		connpool.WithGroupIdleTimeout(-time.Second),
		connpool.WithMaxConns(0),
	} {
		g, err := connpool.NewGroup(opt)
		assert.Nil(t, g)
		assert.ErrorIs(t, err, connpool.ErrInvalidOption)
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
