package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/collectors"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/internal/poolcheck"
	"github.com/connpool/connpool/internal/sockcheck"
	"github.com/connpool/connpool/internal/testserver"
)

// toxiproxyOwn ignores Toxiproxy's own goroutines: a toxic stub can stay
// blocked handing data to a link stage that ended with its conn (seen in
// v2.12 as NoopToxic.Pipe stuck in a channel send). They are the proxy's,
// not the pool's; every other goroutine is checked.
var toxiproxyOwn = goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2/toxics.(*ToxicStub).Run")

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, toxiproxyOwn) }

const (
	waitFor = 10 * time.Second
	tick    = 2 * time.Millisecond
	tagSize = 32
)

// env is one scenario's world: an echo server, a Toxiproxy proxy in front
// of it, and a dialer that counts and remembers the client's sockets.
type env struct {
	t        *testing.T
	upstream *testserver.Server
	proxy    *toxiproxy.Proxy
	fdBefore int

	mu      sync.Mutex // guards sockets and toxics
	sockets []*socket
	toxics  int

	open, peak           atomic.Int64 // client sockets open now, and the most at once
	dialing, peakDialing atomic.Int64
	dialTimes            chan time.Time // attempts, for the backoff scenario
	closeTimes           chan time.Time // socket closes, for the lifetime herd

	requests, failed, wrong atomic.Int64
	owners                  sync.Map // inner net.Conn -> *atomic.Int64: the borrower holding it
	doubleBorrow            atomic.Int64
}

// socket is one client connection the dialer made.
type socket struct {
	net.Conn
	env    *env
	check  *sockcheck.Checker
	closed atomic.Bool
}

func (s *socket) Close() error {
	if s.closed.CompareAndSwap(false, true) {
		s.env.open.Add(-1)
		select {
		case s.env.closeTimes <- time.Now():
		default:
		}
	}
	return s.Conn.Close()
}

// SyscallConn keeps the checkout peek working through the wrapper.
func (s *socket) SyscallConn() (syscall.RawConn, error) {
	return s.Conn.(*net.TCPConn).SyscallConn()
}

func newEnv(t *testing.T, opts ...testserver.Option) *env {
	t.Helper()
	// Registered first, so it runs last: after every other cleanup.
	ignoreBefore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignoreBefore, toxiproxyOwn) })
	e := &env{t: t, fdBefore: openFDs(), dialTimes: make(chan time.Time, 4096), closeTimes: make(chan time.Time, 4096)}
	up, err := testserver.Start(opts...)
	require.NoError(t, err)
	e.upstream = up
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	srv.Metrics.ProxyMetrics = collectors.NewProxyMetricCollectors()
	e.proxy = toxiproxy.NewProxy(srv, t.Name(), "127.0.0.1:0", up.Addr())
	require.NoError(t, e.proxy.Start())
	t.Cleanup(func() {
		e.proxy.Stop()
		up.Close()
		assert.Eventually(t, func() bool { return openFDs() <= e.fdBefore }, waitFor, tick, "fds leaked")
	})
	return e
}

func (e *env) addr() string { return e.proxy.Listen }

func (e *env) dial(ctx context.Context, network, address string) (net.Conn, error) {
	select {
	case e.dialTimes <- time.Now():
	default:
	}
	n := e.dialing.Add(1)
	raise(&e.peakDialing, n)
	defer e.dialing.Add(-1)
	var d net.Dialer
	c, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	raise(&e.peak, e.open.Add(1))
	s := &socket{Conn: c, env: e, check: sockcheck.New(c)}
	e.mu.Lock()
	e.sockets = append(e.sockets, s)
	e.mu.Unlock()
	return s, nil
}

func raise(peak *atomic.Int64, n int64) {
	for {
		if old := peak.Load(); n <= old || peak.CompareAndSwap(old, n) {
			return
		}
	}
}

// pool returns a pool dialing through the proxy with e's dialer.
func (e *env) pool(opts ...connpool.Option) *connpool.Pool {
	e.t.Helper()
	p, err := connpool.New("tcp", e.addr(), append([]connpool.Option{connpool.WithDialer(e.dial)}, opts...)...)
	require.NoError(e.t, err)
	return p
}

// toxic adds a toxic to every conn through the proxy, new and open.
func (e *env) toxic(typ, stream string, attrs string) (remove func()) {
	e.t.Helper()
	e.mu.Lock()
	e.toxics++
	name := fmt.Sprintf("%s-%s-%d", typ, stream, e.toxics)
	e.mu.Unlock()
	body := fmt.Sprintf(`{"name":%q,"type":%q,"stream":%q,"toxicity":1,"attributes":%s}`, name, typ, stream, attrs)
	_, err := e.proxy.Toxics.AddToxicJson(strings.NewReader(body))
	require.NoError(e.t, err)
	return func() { _ = e.proxy.Toxics.RemoveToxic(context.Background(), name) }
}

// allSocketsDead waits until every socket the dialer made shows the
// peer's close or reset to a peek: the fault has reached the client.
func (e *env) allSocketsDead() {
	e.t.Helper()
	require.Eventually(e.t, func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, s := range e.sockets {
			if s.closed.Load() {
				continue
			}
			if _, err := s.check.Check(); err == nil {
				return false
			}
		}
		return true
	}, waitFor, tick)
}

// request does one tagged round trip on c and checks that the reply is
// this request's own. The borrower's owner token is checked first.
func (e *env) request(c *connpool.Conn, tag string) error {
	e.requests.Add(1)
	msg := []byte(fmt.Sprintf("%-*s", tagSize, tag))[:tagSize]
	if _, err := c.Write(msg); err != nil {
		e.failed.Add(1)
		return err
	}
	got := make([]byte, tagSize)
	if _, err := io.ReadFull(c, got); err != nil {
		e.failed.Add(1)
		return err
	}
	if string(got) != string(msg) {
		e.wrong.Add(1)
		return fmt.Errorf("request %q got %q", msg, got)
	}
	return nil
}

// borrow marks c as held by who; release clears it. Two borrowers of one
// socket at once would be counted in doubleBorrow.
func (e *env) borrow(c *connpool.Conn, who int64) {
	v, _ := e.owners.LoadOrStore(c.Unwrap(), new(atomic.Int64))
	if !v.(*atomic.Int64).CompareAndSwap(0, who) {
		e.doubleBorrow.Add(1)
	}
}

func (e *env) release(c *connpool.Conn, who int64) {
	if v, ok := e.owners.Load(c.Unwrap()); ok {
		v.(*atomic.Int64).CompareAndSwap(who, 0)
	}
}

// use borrows a conn, does a tagged request and gives it back.
func (e *env) use(ctx context.Context, p *connpool.Pool, who int64, tag string) error {
	c, err := p.Get(ctx)
	if err != nil {
		return err
	}
	e.borrow(c, who)
	err = e.request(c, tag)
	e.release(c, who)
	return errors.Join(err, c.Close())
}

// holdRandomly is what a randomized client does with a conn c it got
// within ctx: it holds it as who, under ctx's deadline, and then one time
// in 20 marks it unusable, one in 20 gives it back unused, and otherwise
// does a tagged request; then it gives it back. It returns the request's
// error.
func (e *env) holdRandomly(ctx context.Context, c *connpool.Conn, who int64, tag string, rng *rand.Rand) error {
	e.borrow(c, who)
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	var err error
	switch n := rng.IntN(20); {
	case n == 0:
		c.MarkUnusable()
	case n == 1:
		// Borrowed and given back unused.
	default:
		err = e.request(c, tag)
	}
	e.release(c, who)
	assert.NoError(e.t, c.Close())
	return err
}

// finish closes p and checks every invariant, returning the final stats.
func (e *env) finish(p *connpool.Pool, maxConns int, gets int64) connpool.Stats {
	e.t.Helper()
	require.NoError(e.t, poolcheck.Check(p), "the custody ledger before Close")
	require.NoError(e.t, p.Close())
	require.NoError(e.t, poolcheck.Check(p), "the custody ledger after Close")
	st := p.Stats()
	assert.Zero(e.t, e.wrong.Load(), "replies carrying another request's bytes")
	assert.Zero(e.t, e.doubleBorrow.Load(), "conns held by two borrowers at once")
	assert.LessOrEqual(e.t, e.peak.Load(), int64(maxConns), "sockets open at once")
	assert.Zero(e.t, st.InUse, "permits leaked")
	assert.Zero(e.t, st.OpenConns, "conns left open")
	assert.Zero(e.t, e.open.Load(), "sockets left open")
	closed := st.IdleClosed + st.LifetimeClosed + st.HealthFailures + st.BrokenClosed +
		st.MaxIdleClosed + st.ReleasedClosed + st.PoolClosed + st.ResetClosed + st.DetachedClosed + st.LeakedClosed + st.ResizedClosed +
		st.AddressRemovedClosed + st.RebalancedClosed + st.EjectedClosed
	assert.Equal(e.t, st.Dials, closed, "closes by reason = dials - open")
	if gets >= 0 {
		assert.Equal(e.t, gets, st.Hits+st.Misses, "hits + misses = successful gets")
	}
	return st
}

func openFDs() int {
	if runtime.GOOS != "linux" {
		return 0
	}
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return len(entries)
}
