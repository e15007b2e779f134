package connpool_test

import (
	"context"
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

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
)

func TestDialContextRefusesOtherAddresses(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr())
	for _, tc := range []struct{ network, address string }{
		{"tcp", "127.0.0.1:1"},
		{"udp", srv.Addr()},
	} {
		c, err := p.DialContext(context.Background(), tc.network, tc.address)
		assert.Nil(t, c)
		assert.ErrorIs(t, err, connpool.ErrWrongAddress)
	}
	_, err := p.DialAddr(context.Background(), "10.0.0.1:80")
	assert.ErrorIs(t, err, connpool.ErrWrongAddress)
	assert.Zero(t, p.Stats().Dials)
}

// TestDialContextConnsAreNeverReused: a client's Close destroys the conn
// and frees its slot; every dial gets a conn no one used before.
func TestDialContextConnsAreNeverReused(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(2), connpool.WithMinIdle(1))
	require.Eventually(t, func() bool { return p.Stats().Idle == 1 }, waitFor, tick)

	// A conn used through Get and returned stays for Get users only.
	used := getConn(t, p)
	mustRoundTrip(t, used, "used")
	usedPort := localPort(used)
	require.NoError(t, used.Close())

	seen := map[int]bool{usedPort: true}
	for range 5 {
		nc, err := p.DialAddr(context.Background(), srv.Addr())
		require.NoError(t, err)
		port := localPort(nc)
		assert.False(t, seen[port], "a conn handed out before")
		seen[port] = true
		mustRoundTrip(t, nc, "mine")
		require.NoError(t, nc.Close())
	}
	st := p.Stats()
	assert.Equal(t, int64(5), st.ReleasedClosed)
	assert.LessOrEqual(t, st.OpenConns, 2)
	checkBooks(t, st)
}

// TestDialContextAtCapWithOnlyUsedIdleConns pins a wait found in review:
// in a pool shared by Get and DialContext, a DialContext at the cap whose
// idle conns had all been used by Get borrowers waited until its context
// ended, as nothing would ever free a slot. It now retires the oldest used
// idle conn and dials.
func TestDialContextAtCapWithOnlyUsedIdleConns(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(1))
	c := getConn(t, p)
	mustRoundTrip(t, c, "used by a Get borrower")
	require.NoError(t, c.Close())

	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	nc, err := p.DialContext(ctx, "tcp", srv.Addr())
	require.NoError(t, err)
	mustRoundTrip(t, nc, "fresh for the dialer")
	require.NoError(t, nc.Close())
	st := p.Stats()
	assert.Equal(t, int64(1), st.IdleClosed, "the used idle conn was retired")
	assert.Equal(t, int64(2), st.Dials)
	checkBooks(t, st)
}

// TestHTTPTransportThroughPool drives an http.Transport with the pool as
// its dialer: 3,200 requests from 16 goroutines, responses that close the connection, bodies
// closed before EOF. Every body must be its own request's, and the cap
// must hold.
func TestHTTPTransportThroughPool(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("id")
		if strings.HasSuffix(id, "7") {
			w.Header().Set("Connection", "close")
		}
		fmt.Fprintf(w, "reply to %s;%s", id, strings.Repeat("x", 4096))
	}))
	defer srv.Close()

	const maxConns = 4
	counter := &countingDialer{}
	p := newPool(t, strings.TrimPrefix(srv.URL, "http://"), connpool.WithMaxConns(maxConns),
		connpool.WithMinIdle(1), connpool.WithDialer(counter.dial))
	tr := &http.Transport{DialContext: p.DialContext, MaxConnsPerHost: maxConns}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 200 {
				id := fmt.Sprintf("%d-%d", g, i)
				resp, err := client.Get(srv.URL + "/?id=" + id)
				if !assert.NoError(t, err) {
					return
				}
				if i%5 == 3 {
					// Close before EOF: the Transport must drop the conn.
					_, _ = io.CopyN(io.Discard, resp.Body, 10)
					resp.Body.Close()
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				assert.NoError(t, err)
				assert.True(t, strings.HasPrefix(string(body), "reply to "+id+";"), "got another request's body")
			}
		})
	}
	wg.Wait()
	tr.CloseIdleConnections()
	st := p.Stats()
	assert.LessOrEqual(t, counter.peak.Load(), int64(maxConns), "sockets open at once")
	assert.LessOrEqual(t, st.OpenConns, maxConns)
	require.Eventually(t, func() bool { return p.Stats().InUse == 0 }, waitFor, tick)
	checkBooks(t, p.Stats())
}

// countingDialer counts the sockets it opened that are not closed yet, and
// the most that were open at once.
type countingDialer struct {
	open, peak atomic.Int64
}

func (d *countingDialer) dial(ctx context.Context, network, address string) (net.Conn, error) {
	var nd net.Dialer
	c, err := nd.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	n := d.open.Add(1)
	for {
		if old := d.peak.Load(); n <= old || d.peak.CompareAndSwap(old, n) {
			break
		}
	}
	return &countedConn{Conn: c, d: d}, nil
}

type countedConn struct {
	net.Conn
	d    *countingDialer
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.d.open.Add(-1) })
	return c.Conn.Close()
}

// TestDialContextWaitersBehindUsedConns pins a livelock: in a pool shared
// by Get and DialContext, DialContext callers queued at the cap while Get
// borrowers held every conn. The conns that came back were used, which a
// DialContext caller cannot take, so each waiter passed them to the next,
// in a busy loop, and no dial was ever made. A used conn that no waiter
// can take is now retired so that the first waiter's dial can start.
func TestDialContextWaitersBehindUsedConns(t *testing.T) {
	const callers = 16
	srv := startServer(t)
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(2), connpool.WithHealthCheckInterval(0))
	held := holdAll(t, p, 2)
	for _, c := range held {
		mustRoundTrip(t, c, "used by a Get borrower")
	}
	before := p.Stats().WaitCount

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	type result struct {
		err    error
		waited time.Duration // from the conns' return to the caller's conn
	}
	var returned atomic.Int64 // UnixNano when the held conns went back
	results := make(chan result, callers)
	for range callers {
		go func() {
			nc, err := p.DialContext(ctx, "tcp", srv.Addr())
			r := result{err: err, waited: time.Duration(time.Now().UnixNano() - returned.Load())}
			if err == nil {
				_, r.err = roundTrip(nc, "fresh")
				_ = nc.Close()
			}
			results <- r
		}()
	}
	require.Eventually(t, waitersAre(p, callers), waitFor, tick)
	returned.Store(time.Now().UnixNano())
	for _, c := range held {
		require.NoError(t, c.Close())
	}
	for range callers {
		r := <-results
		require.NoError(t, r.err)
		assert.Less(t, r.waited, time.Second, "served within a second of the conns' return")
	}
	st := p.Stats()
	assert.LessOrEqual(t, st.WaitCount-before, int64(3*callers), "waits per caller")
	assert.Equal(t, int64(callers), st.ReleasedClosed)
	checkBooks(t, st)
}

// TestMixedWaitersUsedConnGoesToGet: a used conn returned while a
// DialContext caller and then a Get wait at the cap goes to the Get, the
// first waiter that can take it; the DialContext caller gets a fresh dial.
func TestMixedWaitersUsedConnGoesToGet(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(1), connpool.WithHealthCheckInterval(0))
	held := holdAll(t, p, 1)[0]
	mustRoundTrip(t, held, "used")
	port := localPort(held)

	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	dialed := make(chan error, 1)
	go func() {
		nc, err := p.DialContext(ctx, "tcp", srv.Addr())
		if err == nil {
			if localPort(nc) == port {
				err = errors.New("DialContext got the used conn")
			}
			_ = nc.Close()
		}
		dialed <- err
	}()
	require.Eventually(t, waitersAre(p, 1), waitFor, tick)
	got := make(chan *connpool.Conn, 1)
	go func() {
		c, err := p.Get(ctx)
		if err != nil {
			c = nil
		}
		got <- c
	}()
	require.Eventually(t, waitersAre(p, 2), waitFor, tick)
	require.NoError(t, held.Close())

	c := <-got
	require.NotNil(t, c, "the Get was served")
	assert.Equal(t, port, localPort(c), "the Get got the used conn")
	mustRoundTrip(t, c, "reused")
	require.NoError(t, c.Close(), "frees the slot for the DialContext caller's dial")
	require.NoError(t, <-dialed)
	checkBooks(t, p.Stats())
}

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
	assert.Zero(t, p.Stats().Waiting)

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

	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	got := make(chan error, 1)
	go func() {
		nc, err := p.DialContext(ctx, "tcp", srv.Addr())
		if err == nil {
			err = nc.Close()
		}
		got <- err
	}()
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

	// A client that closes a conn frees a slot: dials are served again.
	require.NoError(t, held[0].Close())
	long, cancelLong := context.WithTimeout(context.Background(), waitFor)
	defer cancelLong()
	nc, err := g.DialContext(long, "tcp", b.Addr())
	require.NoError(t, err)
	mustRoundTrip(t, nc, "a slot again")
	require.NoError(t, nc.Close())
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

	long, cancelLong := context.WithTimeout(context.Background(), waitFor)
	defer cancelLong()
	got := make(chan error, 1)
	go func() {
		nc, err := p.DialContext(long, "tcp", srv.Addr())
		if err == nil {
			err = nc.Close()
		}
		got <- err
	}()
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
