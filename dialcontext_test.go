package connpool_test

import (
	"context"
	"errors"
	"fmt"
	"io"
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
