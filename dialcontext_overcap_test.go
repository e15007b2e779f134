package connpool_test

import (
	"context"
	"io"
	"log/slog"
	"net"
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

// warnings records the warnings a pool logs, with their attributes.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

// handler returns a slog.Handler that records into w.
func (w *warnings) handler() slog.Handler { return &warnHandler{w: w} }

type warnHandler struct {
	w     *warnings
	attrs string // added by WithAttrs
}

func (h *warnHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h *warnHandler) WithGroup(string) slog.Handler                { return h }
func (h *warnHandler) WithAttrs(as []slog.Attr) slog.Handler {
	attrs := h.attrs
	for _, a := range as {
		attrs += " " + a.Key + "=" + a.Value.String()
	}
	return &warnHandler{w: h.w, attrs: attrs}
}

func (h *warnHandler) Handle(_ context.Context, r slog.Record) error {
	msg := r.Message + h.attrs
	r.Attrs(func(a slog.Attr) bool { msg += " " + a.Key + "=" + a.Value.String(); return true })
	h.w.mu.Lock()
	h.w.msgs = append(h.w.msgs, msg)
	h.w.mu.Unlock()
	return nil
}

func (w *warnings) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.msgs...)
}

// dialClients takes n conns with DialContext, as a client with a pool of
// its own does, and keeps them until the test ends.
func dialClients(t *testing.T, p *connpool.Pool, n int) []net.Conn {
	t.Helper()
	var conns []net.Conn
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		nc, err := p.DialContext(ctx, p.Network(), p.Address())
		cancel()
		require.NoError(t, err)
		conns = append(conns, nc)
		t.Cleanup(func() { _ = nc.Close() })
	}
	return conns
}

// dialInBackground calls DialContext on p for its own address, with a
// deadline of waitFor, on a goroutine of its own, closes the conn it
// gets, and sends the error of either.
func dialInBackground(p *connpool.Pool) <-chan error {
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		nc, err := p.DialContext(ctx, p.Network(), p.Address())
		if err == nil {
			err = nc.Close()
		}
		done <- err
	}()
	return done
}

// TestDialContextOverCapSaysSo pins issue 21's go-redis stall from the
// pool's side: a client whose own pool is larger than MaxConns keeps every
// conn, idle or not, and its further dials waited out their whole timeout
// with an error that said only "context deadline exceeded"; go-redis, with
// five dial attempts of 5s each, stalled its commands for 25s at a time. A
// DialContext whose wait runs out while clients hold every conn now says
// so and what to change, wrapping both the ctx's error and
// ErrClientPoolOverCap; the pool warns once per streak; and the next
// DialContext callers fail fast until a client closes a conn.
func TestDialContextOverCapSaysSo(t *testing.T) {
	srv := startServer(t)
	logged := &warnings{}
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(2), connpool.WithLogger(slog.New(logged.handler())))
	held := dialClients(t, p, 2)

	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	_, err := p.DialContext(ctx, "tcp", srv.Addr())
	require.Error(t, err)
	assert.ErrorIs(t, err, context.DeadlineExceeded, "still the wait's own error")
	assert.ErrorIs(t, err, connpool.ErrClientPoolOverCap)
	for _, want := range []string{"MaxConns 2", "set by WithMaxConns", "PoolSize", "SetMaxOpenConns", "MaxConnsPerHost", "docs/clients.md"} {
		assert.Contains(t, err.Error(), want)
	}
	require.Len(t, logged.all(), 1, "one warning for the streak")
	assert.Contains(t, logged.all()[0], "docs/clients.md")

	// In the same state, the next callers fail at once: their long
	// deadline is not what ends them.
	long, cancelLong := context.WithTimeout(context.Background(), time.Minute)
	defer cancelLong()
	for range 3 {
		_, err := p.DialContext(long, "tcp", srv.Addr())
		assert.ErrorIs(t, err, connpool.ErrClientPoolOverCap)
		assert.NotErrorIs(t, err, context.DeadlineExceeded)
		assert.Contains(t, err.Error(), "failing fast")
	}
	assert.Len(t, logged.all(), 1, "still one warning: the same streak")
	st := p.Stats()
	assert.Zero(t, st.Waiting)
	assert.Equal(t, int64(3), st.ClientsOverCap, "the calls that failed fast, by their reason")
	assert.Equal(t, int64(1), st.Timeouts, "only the wait that ran out is a timeout")

	// A client that closes a conn ends the streak: the next dial gets its
	// slot.
	require.NoError(t, held[0].Close())
	nc, err := p.DialContext(long, "tcp", srv.Addr())
	require.NoError(t, err)
	mustRoundTrip(t, nc, "after the streak")

	// A new streak warns again.
	short, cancelShort := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancelShort()
	_, err = p.DialContext(short, "tcp", srv.Addr())
	assert.ErrorIs(t, err, connpool.ErrClientPoolOverCap)
	assert.Len(t, logged.all(), 2, "a second streak, a second warning")
	require.NoError(t, nc.Close())
	checkBooks(t, p.Stats())
}

// TestDialContextOverCapWaitsForARelease: before any wait has run out, a
// DialContext at the cap waits as a Get does, and a client that closes a
// conn meanwhile serves it (database/sql with its default MaxIdleConns of
// 2 closes conns all the time): the new error is only for a wait that
// could not be served.
func TestDialContextOverCapWaitsForARelease(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(1))
	held := dialClients(t, p, 1)

	got := dialInBackground(p)
	require.Eventually(t, waitersAre(p, 1), waitFor, tick)
	require.NoError(t, held[0].Close())
	require.NoError(t, <-got)
}

// TestGetTimeoutHasNoClientAdvice: conns held by Get borrowers come back
// by Put; a wait that runs out among them is plain exhaustion, and its
// error does not blame a client's pool. Nor does a Get's among conns
// clients hold: the advice is for the client that dials.
func TestGetTimeoutHasNoClientAdvice(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(1))
	c := holdAll(t, p, 1)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := p.DialContext(ctx, "tcp", srv.Addr())
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.NotErrorIs(t, err, connpool.ErrClientPoolOverCap, "a Get borrower holds the conn")
	require.NoError(t, c.Close())

	dialClients(t, p, 1)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	_, err = p.Get(ctx2)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.NotErrorIs(t, err, connpool.ErrClientPoolOverCap)
}

// TestDialContextOverCapWarnsWithoutLogger pins the other half of issue
// 21's complaint: the warning went to a logger that discards by default,
// so a user who set none never saw it. Without WithLogger it now goes to
// slog.Default.
func TestDialContextOverCapWarnsWithoutLogger(t *testing.T) {
	logged := &warnings{}
	prev := slog.Default()
	slog.SetDefault(slog.New(logged.handler()))
	t.Cleanup(func() { slog.SetDefault(prev) })

	srv := startServer(t)
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(1))
	dialClients(t, p, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	_, err := p.DialContext(ctx, "tcp", srv.Addr())
	require.ErrorIs(t, err, connpool.ErrClientPoolOverCap)
	require.Len(t, logged.all(), 1)
	assert.Contains(t, logged.all()[0], "pool=tcp "+srv.Addr())
}

// TestGroupDialContextOverCapSaysSo pins issue 21's Transport over a Group:
// a bare http.Transport keeps its idle conns of one host, which hold every
// slot of the group's cap, and a request to a new host waited with an
// error that did not say why, and a warning that went nowhere. Its error
// now names Group.CloseIdleWith, and the warning reaches slog.Default.
func TestGroupDialContextOverCapSaysSo(t *testing.T) {
	logged := &warnings{}
	prev := slog.Default()
	slog.SetDefault(slog.New(logged.handler()))
	t.Cleanup(func() { slog.SetDefault(prev) })

	a, b := startServer(t), startServer(t)
	g, err := connpool.NewGroup(connpool.WithGroupMaxConns(2))
	require.NoError(t, err)
	t.Cleanup(func() { _ = g.Close() })
	var held []net.Conn
	for range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		nc, err := g.DialContext(ctx, "tcp", a.Addr())
		cancel()
		require.NoError(t, err)
		held = append(held, nc)
		t.Cleanup(func() { _ = nc.Close() })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	_, err = g.DialContext(ctx, "tcp", b.Addr())
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorIs(t, err, connpool.ErrClientPoolOverCap)
	assert.Contains(t, err.Error(), "Group.CloseIdleWith")
	assert.Contains(t, err.Error(), "WithGroupMaxConns(2)")
	assert.NotEmpty(t, logged.all(), "the group's warning reached slog.Default")

	// A dial has waited a second at the cap with no client to ask: the
	// next ones fail at once, deadline or not.
	for _, addr := range []string{b.Addr(), startServer(t).Addr()} {
		_, err := g.DialContext(context.Background(), "tcp", addr)
		assert.ErrorIs(t, err, connpool.ErrClientPoolOverCap)
		assert.Contains(t, err.Error(), "failing fast")
	}
	var overCap int64
	for _, st := range g.Stats() {
		overCap += st.ClientsOverCap
	}
	assert.Equal(t, int64(2), overCap, "the dials that failed fast are counted, by their reason")

	// A client that closes a conn frees a slot: dials are served again.
	require.NoError(t, held[0].Close())
	long, cancelLong := context.WithTimeout(context.Background(), waitFor)
	defer cancelLong()
	nc, err := g.DialContext(long, "tcp", b.Addr())
	require.NoError(t, err)
	mustRoundTrip(t, nc, "a slot again")
	require.NoError(t, nc.Close())
}

// TestDialContextOverCapWithADialInFlight: clients hold every conn but
// one, which is being dialed for another client's DialContext, when a
// third client's wait runs out. Its error must say that clients hold the
// pool, as it does when no dial is in flight: that dial goes to a client
// too. Regression (pgx through database/sql with its defaults, under
// load): the error said only "context deadline exceeded (in use 7, idle
// 0, dialing 1, waiting 21, max 8)". A dial in flight may still serve the
// next caller, so it starts no streak: nobody fails fast.
func TestDialContextOverCapWithADialInFlight(t *testing.T) {
	srv := startServer(t)
	release := make(chan struct{})
	var dials sync.Mutex
	n := 0
	dial := func(ctx context.Context, network, address string) (net.Conn, error) {
		dials.Lock()
		n++
		second := n == 2
		dials.Unlock()
		if second {
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		var d net.Dialer
		return d.DialContext(ctx, network, address)
	}
	logged := &warnings{}
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(2), connpool.WithDialer(dial), connpool.WithLogger(slog.New(logged.handler())))
	held := dialClients(t, p, 1)
	slow := dialInBackground(p)
	require.Eventually(t, func() bool { return p.Stats().Dialing == 1 }, waitFor, tick)

	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	_, err := p.DialContext(ctx, "tcp", srv.Addr())
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorIs(t, err, connpool.ErrClientPoolOverCap, "clients hold every conn but the one dialed for a client")
	require.Len(t, logged.all(), 1, "warned, where a user without a logger looks too")
	assert.NotContains(t, logged.all()[0], "fails fast", "a dial in flight may still serve the next caller")

	// The next caller waits, and the dial in flight serves the first.
	next := dialInBackground(p)
	require.Eventually(t, waitersAre(p, 2), waitFor, tick)
	close(release)
	require.NoError(t, <-slow)
	require.NoError(t, <-next, "served once the first client closed its conn")
	assert.Len(t, logged.all(), 1, "one warning for the streak")
	require.NoError(t, held[0].Close())
}

// TestDialContextShortWaitNoStreak: a wait cut short by a tight deadline
// still says why, but starts no streak: the next caller waits, and a
// client that closes a conn meanwhile serves it.
func TestDialContextShortWaitNoStreak(t *testing.T) {
	srv := startServer(t)
	logged := &warnings{}
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(1), connpool.WithLogger(slog.New(logged.handler())))
	held := dialClients(t, p, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	_, err := p.DialContext(ctx, "tcp", srv.Addr())
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorIs(t, err, connpool.ErrClientPoolOverCap)
	assert.Empty(t, logged.all())

	got := dialInBackground(p)
	require.Eventually(t, waitersAre(p, 1), waitFor, tick)
	require.NoError(t, held[0].Close())
	require.NoError(t, <-got)
}

// TestDialContextErrorsAreDialErrors: DialContext's errors are what a
// net.Dialer's are, a *net.OpError with Op "dial", with the pool's error
// inside: go-redis retries a command whose dial failed so, and with its
// defaults over the cap, each of its commands then succeeded.
func TestDialContextErrorsAreDialErrors(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(1))
	dialClients(t, p, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := p.DialContext(ctx, "tcp", srv.Addr())
	var op *net.OpError
	require.ErrorAs(t, err, &op)
	assert.Equal(t, "dial", op.Op)
	assert.Equal(t, srv.Addr(), op.Addr.String())
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorIs(t, err, connpool.ErrClientPoolOverCap)

	require.NoError(t, p.Close())
	_, err = p.DialContext(context.Background(), "tcp", srv.Addr())
	require.ErrorAs(t, err, &op)
	assert.ErrorIs(t, err, connpool.ErrClosed)
}

// TestTransportDialsDoNotWaitForever runs an http.Transport over a pool
// with the Transport's own way of dialing: each request that finds no idle
// conn starts a dial with a context that never ends, which goes on after
// another conn served the request. With MaxIdleConnsPerHost above the
// pool's cap the Transport keeps every conn idle, so those dials can only
// wait. They wait for at most the dial timeout, and a second client then
// gets a clear error at once rather than waiting out its own timeout.
// Regression: the dials waited forever (1,276 queued after a run), and a
// second Transport's requests hung until their client timed them out.
func TestTransportDialsDoNotWaitForever(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")
	const dialTimeout = 500 * time.Millisecond
	p := newPool(t, addr, connpool.WithMaxConns(4), connpool.WithDialTimeout(dialTimeout))
	hoarder := &http.Transport{DialContext: p.DialContext, MaxIdleConnsPerHost: 100}
	t.Cleanup(hoarder.CloseIdleConnections)
	client := &http.Client{Transport: hoarder, Timeout: waitFor}
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 20 {
				resp, err := client.Get(srv.URL)
				if err != nil {
					continue // a request whose own dial gave up first, while the 4 conns were busy
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
		})
	}
	wg.Wait()
	require.Eventually(t, func() bool { return p.Stats().Waiting == 0 }, 10*dialTimeout+waitFor, tick,
		"the Transport's dials left waiting: %v", p.Stats())

	other := &http.Transport{DialContext: p.DialContext}
	t.Cleanup(other.CloseIdleConnections)
	start := time.Now()
	_, err := (&http.Client{Transport: other, Timeout: waitFor}).Get(srv.URL)
	require.ErrorIs(t, err, connpool.ErrClientPoolOverCap, "the hoarder holds every conn: a clear error")
	assert.Less(t, time.Since(start), waitFor, "before the client's own timeout")
}
