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
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/internal/sockcheck"
)

// newTransport returns a Transport that dials through g, with the
// defaults of a zero Transport, whose idle conns are closed at the end of
// the test.
func newTransport(t testing.TB, g *connpool.Group) *http.Transport {
	t.Helper()
	tr := &http.Transport{DialContext: g.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// openConns adds up the conns open in every pool of g.
func openConns(g *connpool.Group) int {
	n := 0
	for _, st := range g.Stats() {
		n += st.OpenConns
	}
	return n
}

// getWithin GETs url with a deadline d away and returns the body.
func getWithin(client *http.Client, url string, d time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return get(ctx, client, url)
}

func get(ctx context.Context, client *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

// startHTTPServers starts n HTTP servers, each answering with its own URL,
// whose sockets w counts; they close at the end of the test.
func startHTTPServers(t testing.TB, w *socketWatch, n int) []*httptest.Server {
	t.Helper()
	srvs := make([]*httptest.Server, n)
	for i := range srvs {
		var url string
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
			io.WriteString(rw, url)
		}))
		srv.Listener = &watchedListener{Listener: srv.Listener, w: w}
		srv.Start()
		url = srv.URL
		t.Cleanup(srv.Close)
		srvs[i] = srv
	}
	return srvs
}

// socketWatch counts the sockets open at the server end of the listeners
// that share it, and the most that were open at once: a socket counts
// from when a server accepts it until either end closes it. Each time a
// server accepts one, the watch first forgets the sockets that are gone:
// closed by the server, closed by the client (seen by a peek at the
// server's end, which finds the FIN, or recorded by [socketWatch.dial]
// when its conn's Close returned). The record matters on a busy machine:
// a FIN can take microseconds to reach the server's socket, and a dial
// made on another CPU after it can be accepted first. It is safe for
// concurrent use.
type socketWatch struct {
	mu     sync.Mutex // guards the fields below
	conns  map[*watchedConn]struct{}
	closed map[string]bool // client conns closed, by "client addr>server addr"
	peak   int
	blind  bool // a socket could not be peeked at: peak may count closed ones
}

// dial is a DialFunc whose conns tell w when their Close returns.
func (w *socketWatch) dial(ctx context.Context, network, address string) (net.Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return &watchedClientConn{Conn: nc, w: w}, nil
}

// Peak returns the most sockets that were open at once.
func (w *socketWatch) Peak() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.peak
}

func (w *socketWatch) clientClosed(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed == nil {
		w.closed = make(map[string]bool)
	}
	w.closed[key] = true
}

func (w *socketWatch) add(c *watchedConn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.conns == nil {
		w.conns = make(map[*watchedConn]struct{})
	}
	w.conns[c] = struct{}{}
	for o := range w.conns {
		if w.goneLocked(o) {
			delete(w.conns, o)
		}
	}
	w.peak = max(w.peak, len(w.conns))
	w.blind = w.blind || c.check == nil
}

func (w *socketWatch) goneLocked(c *watchedConn) bool {
	if c.closed.Load() {
		return true
	}
	if w.closed[c.key] {
		delete(w.closed, c.key)
		return true
	}
	if c.check == nil {
		return false
	}
	_, err := c.check.Check()
	return err != nil
}

// assertPeak checks that w never saw more than n sockets open at once.
func assertPeak(t testing.TB, w *socketWatch, n int) {
	t.Helper()
	w.mu.Lock()
	peak, blind := w.peak, w.blind
	w.mu.Unlock()
	if blind {
		t.Logf("peak %d not checked: this platform cannot peek at sockets", peak)
		return
	}
	assert.LessOrEqual(t, peak, n, "sockets open at once at the servers")
}

type watchedListener struct {
	net.Listener
	w *socketWatch
}

func (l *watchedListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	c := &watchedConn{Conn: nc, check: sockcheck.New(nc), key: nc.RemoteAddr().String() + ">" + nc.LocalAddr().String()}
	if c.check != nil {
		c.check.Share() // the server closes the conn: peek through it
	}
	l.w.add(c)
	return c, nil
}

// watchedConn is a server's end of a socket that a socketWatch counts.
type watchedConn struct {
	net.Conn
	check  *sockcheck.Checker // used under socketWatch.mu; nil where the platform cannot peek
	key    string             // client addr>server addr
	closed atomic.Bool        // closed by the server
}

func (c *watchedConn) Close() error {
	c.closed.Store(true)
	return c.Conn.Close()
}

// watchedClientConn is a client's end of a socket that a socketWatch
// counts. It keeps the socket reachable through syscall.Conn, so that
// the pool's checkout peek works as on a plain conn.
type watchedClientConn struct {
	net.Conn
	w *socketWatch
}

func (c *watchedClientConn) Close() error {
	err := c.Conn.Close()
	c.w.clientClosed(c.LocalAddr().String() + ">" + c.RemoteAddr().String())
	return err
}

func (c *watchedClientConn) SyscallConn() (syscall.RawConn, error) {
	return c.Conn.(syscall.Conn).SyscallConn()
}

// has reports whether a record's message starts with prefix and its
// message or one of its attributes contains s.
func (r *logRecorder) has(prefix, s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.records {
		if !strings.HasPrefix(rec.Message, prefix) {
			continue
		}
		found := strings.Contains(rec.Message, s)
		rec.Attrs(func(a slog.Attr) bool {
			found = found || strings.Contains(a.Value.String(), s)
			return !found
		})
		if found {
			return true
		}
	}
	return false
}
