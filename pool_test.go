package connpool_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/internal/testserver"
)

func TestGetPutReusesConn(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr())
	ctx := context.Background()

	c, err := p.Get(ctx)
	require.NoError(t, err)
	mustRoundTrip(t, c, "hello")
	port := localPort(c)
	require.NoError(t, p.Put(c))

	c, err = p.Get(ctx)
	require.NoError(t, err)
	assert.Equal(t, port, localPort(c), "the idle conn is reused")
	mustRoundTrip(t, c, "again")
	require.NoError(t, c.Close())

	st := p.Stats()
	assert.Equal(t, int64(1), st.Dials)
	assert.Equal(t, int64(1), st.Misses)
	assert.Equal(t, int64(1), st.Hits)
	assert.Equal(t, 1, st.Idle)
	checkBooks(t, st)
}

// TestCapHoldsUnderHammering runs many goroutines against a small cap and
// checks the cap at the server, where it matters.
func TestCapHoldsUnderHammering(t *testing.T) {
	srv := startServer(t)
	const maxConns = 4
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(maxConns))
	stopWatch := watchLedger(t, p)
	var wg sync.WaitGroup
	var gets atomic.Int64
	for g := range 40 {
		wg.Go(func() {
			for i := range 50 {
				c, err := p.Get(context.Background())
				if !assert.NoError(t, err) {
					return
				}
				gets.Add(1)
				msg := fmt.Sprintf("g%d-i%d", g, i)
				got, err := roundTrip(c, msg)
				assert.NoError(t, err)
				assert.Equal(t, msg, got, "a reply must be this request's own")
				if i%10 == 9 {
					c.MarkUnusable() // churn: force new dials
				}
				assert.NoError(t, c.Close())
			}
		})
	}
	wg.Wait()
	stopWatch()
	st := p.Stats()
	assert.LessOrEqual(t, srv.MaxOpen(), maxConns, "open at the server")
	assert.Equal(t, gets.Load(), st.Hits+st.Misses)
	assert.Positive(t, st.WaitCount)
	assert.Zero(t, st.InUse)
	checkBooks(t, st)
}

// holdAll borrows every conn of a pool of n so that the next Get waits.
func holdAll(t *testing.T, p *connpool.Pool, n int) []*connpool.Conn {
	t.Helper()
	conns := make([]*connpool.Conn, n)
	for i := range conns {
		c, err := p.Get(context.Background())
		require.NoError(t, err)
		conns[i] = c
	}
	return conns
}

func waitersAre(p *connpool.Pool, n int) func() bool {
	return func() bool { return p.Stats().Waiting == n }
}

func TestWaitersServedFirstComeFirstServed(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(1))
	held := holdAll(t, p, 1)[0]

	const n = 5
	order := make(chan int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c, err := p.Get(context.Background())
			if !assert.NoError(t, err) {
				return
			}
			order <- i
			assert.NoError(t, c.Close())
		})
		// Queue them one at a time so that arrival order is known.
		require.Eventually(t, waitersAre(p, i+1), waitFor, tick)
	}
	require.NoError(t, held.Close())
	wg.Wait()
	close(order)
	var got []int
	for i := range order {
		got = append(got, i)
	}
	assert.Equal(t, []int{0, 1, 2, 3, 4}, got)
	st := p.Stats()
	assert.Equal(t, int64(n), st.WaitCount)
	assert.Positive(t, st.WaitDuration)
	assert.Equal(t, int64(1), st.Dials, "all served by hand-off of the one conn")
}

func TestGetHonoursContext(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(1))
	held := holdAll(t, p, 1)[0]

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := p.Get(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 2*time.Second, "returns promptly")
	assert.Contains(t, err.Error(), "in use 1")
	assert.Contains(t, err.Error(), "max 1")
	assert.Contains(t, err.Error(), srv.Addr())

	cancelled, cancelNow := context.WithCancel(context.Background())
	cancelNow()
	_, err = p.Get(cancelled)
	require.ErrorIs(t, err, context.Canceled)

	cause := errors.New("shutting down the handler")
	withCause, cancelCause := context.WithCancelCause(context.Background())
	cancelCause(cause)
	_, err = p.Get(withCause)
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, err, cause)

	st := p.Stats()
	assert.Equal(t, int64(3), st.Timeouts)
	assert.Zero(t, st.Waiting, "the waiter left the queue")

	// Nothing leaked: the one permit still serves.
	require.NoError(t, held.Close())
	c, err := p.Get(context.Background())
	require.NoError(t, err)
	require.NoError(t, c.Close())
	checkBooks(t, p.Stats())
}

// TestCancelRacingHandoff pins the race between a waiter's context ending
// and a Put handing it the conn: whichever wins, the conn must end up back
// in the pool, not lost with the departing waiter.
func TestCancelRacingHandoff(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(1))
	for range 200 {
		held := holdAll(t, p, 1)[0]
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			c, err := p.Get(ctx)
			if err == nil {
				err = c.Close()
			}
			done <- err
		}()
		require.Eventually(t, waitersAre(p, 1), waitFor, tick)
		go cancel()
		require.NoError(t, held.Close())
		<-done
		require.Eventually(t, func() bool { s := p.Stats(); return s.Idle == 1 && s.InUse == 0 }, waitFor, tick)
		require.NoError(t, p.CheckInvariants())
	}
	st := p.Stats()
	assert.Equal(t, int64(1), st.Dials, "the one conn was never lost")
	checkBooks(t, st)
}

// gatedDialer dials only when released, and counts dials in flight.
type gatedDialer struct {
	release  chan struct{}
	inFlight atomic.Int32
	peak     atomic.Int32
}

func newGatedDialer() *gatedDialer { return &gatedDialer{release: make(chan struct{})} }

func (d *gatedDialer) dial(ctx context.Context, network, address string) (net.Conn, error) {
	n := d.inFlight.Add(1)
	defer d.inFlight.Add(-1)
	for {
		if old := d.peak.Load(); n <= old || d.peak.CompareAndSwap(old, n) {
			break
		}
	}
	select {
	case <-d.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, address)
}

// TestDialOutlivesCancelledGet: a caller's cancellation does not abort the
// dial it started; the conn that arrives after the caller left joins the
// idle set.
func TestDialOutlivesCancelledGet(t *testing.T) {
	srv := startServer(t)
	d := newGatedDialer()
	p := newPool(t, srv.Addr(), connpool.WithDialer(d.dial))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	_, err := p.Get(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), "dialing 1")
	assert.Equal(t, 1, p.Stats().Dialing, "the dial goes on")

	close(d.release)
	require.Eventually(t, func() bool { return p.Stats().Idle == 1 }, waitFor, tick)
	c, err := p.TryGet()
	require.NoError(t, err)
	mustRoundTrip(t, c, "late but useful")
	require.NoError(t, c.Close())
}

func TestDialTimeoutBoundsADial(t *testing.T) {
	d := newGatedDialer() // never released: a dial that hangs
	p := newPool(t, "127.0.0.1:1", connpool.WithDialer(d.dial), connpool.WithDialTimeout(50*time.Millisecond))
	start := time.Now()
	_, err := p.Get(context.Background())
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 2*time.Second)
	assert.Equal(t, int64(1), p.Stats().DialErrors)
}

func TestMaxConnectingLimitsDials(t *testing.T) {
	srv := startServer(t)
	d := newGatedDialer()
	p := newPool(t, srv.Addr(), connpool.WithDialer(d.dial), connpool.WithMaxConns(10), connpool.WithMaxConnecting(2))
	var wg sync.WaitGroup
	conns := make(chan *connpool.Conn, 10)
	for range 10 {
		wg.Go(func() {
			c, err := p.Get(context.Background())
			if assert.NoError(t, err) {
				conns <- c
			}
		})
	}
	require.Eventually(t, func() bool { return p.Stats().Waiting == 10 }, waitFor, tick)
	assert.Equal(t, 2, p.Stats().Dialing)
	close(d.release)
	wg.Wait()
	close(conns)
	for c := range conns {
		require.NoError(t, c.Close())
	}
	assert.Equal(t, int32(2), d.peak.Load(), "never more than MaxConnecting dials at once")
	st := p.Stats()
	assert.Equal(t, int64(10), st.Dials)
	assert.Equal(t, int64(8), st.WaitCount, "Gets beyond the dial limit queued")
	checkBooks(t, st)
}

// TestWaiterServedByWhicheverComesFirst: a Get waiting behind a slow dial
// takes a conn returned meanwhile; the dial's conn then joins the pool.
func TestWaiterServedByWhicheverComesFirst(t *testing.T) {
	srv := startServer(t)
	// The first dial goes through; the second hangs until released.
	var first atomic.Bool
	slow := newGatedDialer()
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(2), connpool.WithDialer(
		func(ctx context.Context, network, address string) (net.Conn, error) {
			if first.CompareAndSwap(false, true) {
				var nd net.Dialer
				return nd.DialContext(ctx, network, address)
			}
			return slow.dial(ctx, network, address)
		}))
	held := holdAll(t, p, 1)[0]
	got := make(chan int, 1)
	go func() {
		c, err := p.Get(context.Background())
		if assert.NoError(t, err) {
			got <- localPort(c)
			assert.NoError(t, c.Close())
		}
	}()
	require.Eventually(t, func() bool { return p.Stats().Dialing == 1 }, waitFor, tick)
	port := localPort(held)
	require.NoError(t, held.Close())
	assert.Equal(t, port, <-got, "served by the returned conn, not the hanging dial")
	close(slow.release)
	require.Eventually(t, func() bool { return p.Stats().Idle == 2 }, waitFor, tick)
	checkBooks(t, p.Stats())
}

func TestDialErrorIsWrappedAndBacksOff(t *testing.T) {
	srv := startServer(t)
	addr := srv.Addr()
	require.NoError(t, srv.Close()) // nothing listens: dials are refused

	p := newPool(t, addr, connpool.WithDialBackoff(time.Hour, time.Hour))
	_, err := p.Get(context.Background())
	require.ErrorIs(t, err, syscall.ECONNREFUSED)
	assert.Contains(t, err.Error(), addr)

	// During the backoff a Get fails at once with the last dial error.
	_, err = p.Get(context.Background())
	require.ErrorIs(t, err, syscall.ECONNREFUSED)
	assert.Contains(t, err.Error(), "retrying in")
	st := p.Stats()
	assert.Equal(t, int64(1), st.DialErrors, "no second dial during the backoff")
	assert.Zero(t, st.OpenConns+st.Dialing, "no permit leaked")
}

// logRecorder counts log records by level.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec)
	return nil
}
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *logRecorder) WithGroup(string) slog.Handler      { return r }
func (r *logRecorder) count(level slog.Level, prefix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rec := range r.records {
		if rec.Level == level && strings.HasPrefix(rec.Message, prefix) {
			n++
		}
	}
	return n
}

// TestWarmingRecoversAfterOutage: a refused backend is retried with
// backoff, not in a hot loop, logged once per streak, and the pool warms
// up by itself when the backend returns.
func TestWarmingRecoversAfterOutage(t *testing.T) {
	srv := startServer(t)
	addr := srv.Addr()
	require.NoError(t, srv.Close())

	logs := &logRecorder{}
	p := newPool(t, addr, connpool.WithMinIdle(2),
		connpool.WithDialBackoff(20*time.Millisecond, 200*time.Millisecond),
		connpool.WithLogger(slog.New(logs)))
	require.Eventually(t, func() bool { return p.Stats().DialErrors >= 4 }, waitFor, tick)
	// Backoff 20, 40, 80, 160 ms (jittered down to half): four failures
	// take at least 150 ms. A hot loop would make thousands.
	assert.Less(t, p.Stats().DialErrors, int64(50))

	back, err := testserver.StartAt(addr)
	require.NoError(t, err)
	defer back.Close()
	require.Eventually(t, func() bool { return p.Stats().Idle == 2 }, waitFor, tick)
	assert.Equal(t, 1, logs.count(slog.LevelWarn, "connpool: dial failed"), "one warning per streak")
	assert.Equal(t, 1, logs.count(slog.LevelInfo, "connpool: dial recovered"))
	c, err := p.Get(context.Background())
	require.NoError(t, err)
	mustRoundTrip(t, c, "back")
	require.NoError(t, c.Close())
}

func TestWarmingKeepsMinIdleExactly(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(10), connpool.WithMinIdle(3),
		connpool.WithHealthCheckInterval(20*time.Millisecond))
	require.Eventually(t, func() bool { return p.Stats().Idle == 3 }, waitFor, tick)
	assert.Equal(t, int64(3), p.Stats().Dials, "no overshoot")

	// Taking one refills at once, not on a tick.
	c, err := p.Get(context.Background())
	require.NoError(t, err)
	require.Eventually(t, func() bool { return p.Stats().Idle == 3 }, waitFor, tick)
	st := p.Stats()
	assert.Equal(t, int64(4), st.Dials)
	assert.Equal(t, 1, st.InUse)
	require.NoError(t, c.Close())

	// Conns the server closes are found by the background check and
	// replaced.
	dials := p.Stats().Dials
	require.NoError(t, srv.CloseConns())
	require.Eventually(t, func() bool {
		s := p.Stats()
		return s.Dials >= dials+3 && s.Idle >= 3
	}, waitFor, tick)
	assert.Positive(t, p.Stats().HealthFailures)
}

func TestIdleTimeoutShrinksToMinIdle(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(5), connpool.WithMinIdle(1),
		connpool.WithIdleTimeout(80*time.Millisecond))
	conns := holdAll(t, p, 5)
	for _, c := range conns {
		require.NoError(t, c.Close())
	}
	require.Eventually(t, func() bool { return p.Stats().IdleClosed == 4 }, waitFor, tick)
	st := p.Stats()
	assert.Equal(t, 1, st.Idle, "down to MinIdle, not below")
	assert.Eventually(t, func() bool { return srv.Open() == 1 }, waitFor, tick)
	checkBooks(t, st)
}

func TestIdleConnsReusedMostRecentFirst(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(3))
	conns := holdAll(t, p, 3)
	ports := []int{localPort(conns[0]), localPort(conns[1]), localPort(conns[2])}
	for _, c := range conns {
		require.NoError(t, c.Close())
	}
	for i := 2; i >= 0; i-- {
		c, err := p.Get(context.Background())
		require.NoError(t, err)
		assert.Equal(t, ports[i], localPort(c))
		defer c.Close()
	}
}

func TestMaxLifetime(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr(), connpool.WithMaxLifetime(100*time.Millisecond), connpool.WithMaxLifetimeJitter(0))

	// An idle conn is closed at its deadline.
	c, err := p.Get(context.Background())
	require.NoError(t, err)
	require.NoError(t, c.Close())
	require.Eventually(t, func() bool { return p.Stats().LifetimeClosed == 1 }, waitFor, tick)
	assert.Zero(t, p.Stats().OpenConns)

	// A borrowed conn past its deadline is closed when it comes back.
	c, err = p.Get(context.Background())
	require.NoError(t, err)
	born := time.Now()
	require.Eventually(t, func() bool { return time.Since(born) > 150*time.Millisecond }, waitFor, 10*tick)
	mustRoundTrip(t, c, "still works while borrowed")
	require.NoError(t, c.Close())
	st := p.Stats()
	assert.Equal(t, int64(2), st.LifetimeClosed)
	assert.Zero(t, st.OpenConns)
	checkBooks(t, st)
}

func TestMaxIdleClosesSurplus(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(4), connpool.WithMaxIdle(1))
	for _, c := range holdAll(t, p, 3) {
		require.NoError(t, c.Close())
	}
	st := p.Stats()
	assert.Equal(t, 1, st.Idle)
	assert.Equal(t, int64(2), st.MaxIdleClosed)
	checkBooks(t, st)
}

func TestTryGetNeverWaitsOrDials(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(1))
	_, err := p.TryGet()
	require.ErrorIs(t, err, connpool.ErrNoIdleConn)
	assert.Zero(t, p.Stats().Dials)

	c, err := p.Get(context.Background())
	require.NoError(t, err)
	_, err = p.TryGet()
	require.ErrorIs(t, err, connpool.ErrNoIdleConn, "at the cap it does not wait")
	require.NoError(t, c.Close())
	c, err = p.TryGet()
	require.NoError(t, err)
	mustRoundTrip(t, c, "try")
	require.NoError(t, c.Close())

	// A dead idle conn is skipped, not returned.
	require.NoError(t, srv.CloseConns())
	require.Eventually(t, func() bool {
		_, err := p.TryGet()
		return errors.Is(err, connpool.ErrNoIdleConn)
	}, waitFor, tick)
	assert.Equal(t, int64(1), p.Stats().HealthFailures)
}

// TestDeadConnAtCheckoutSweepsTheIdleSet pins a gap found by the chaos
// suite: after a server restart, a Get dropped at most three dead idle
// conns and dialed fresh, and the rest lay dead at the bottom of the
// stack until the next background check. Now the first dead conn found at
// checkout makes the maintainer peek at every idle conn at once.
func TestDeadConnAtCheckoutSweepsTheIdleSet(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(8), connpool.WithHealthCheckInterval(0))
	for _, c := range holdAll(t, p, 6) {
		mustRoundTrip(t, c, "used")
		require.NoError(t, c.Close())
	}
	require.NoError(t, srv.CloseConns())
	require.Eventually(t, func() bool { return srv.Open() == 0 }, waitFor, tick)
	c, err := p.Get(context.Background())
	require.NoError(t, err)
	mustRoundTrip(t, c, "fresh")
	require.NoError(t, c.Close())
	require.Eventually(t, func() bool { return p.Stats().HealthFailures == 6 }, waitFor, tick,
		"every dead idle conn dropped, not just the ones one Get walked over")
	st := p.Stats()
	assert.Equal(t, 1, st.Idle)
	checkBooks(t, st)
}

func TestBufferedGreetingGoesToFirstBorrower(t *testing.T) {
	srv := startServer(t, testserver.WithGreeting([]byte("220 hello\r\n")))
	p := newPool(t, srv.Addr(), connpool.WithMinIdle(1))
	require.Eventually(t, func() bool { return p.Stats().Idle == 1 }, waitFor, tick)
	c, err := p.Get(context.Background())
	require.NoError(t, err)
	buf := make([]byte, len("220 hello\r\n"))
	_, err = c.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, "220 hello\r\n", string(buf), "a warm conn's greeting is not mistaken for dirt")
	require.NoError(t, c.Close())
	assert.Zero(t, p.Stats().HealthFailures)
}

func TestCloseClosesIdleNowAndBorrowedOnReturn(t *testing.T) {
	srv := startServer(t)
	p, err := connpool.New("tcp", srv.Addr(), connpool.WithMaxConns(2))
	require.NoError(t, err)
	held := holdAll(t, p, 2)
	require.NoError(t, held[1].Close()) // one idle, one borrowed

	require.NoError(t, p.Close())
	require.ErrorIs(t, p.Close(), connpool.ErrClosed)
	_, err = p.Get(context.Background())
	require.ErrorIs(t, err, connpool.ErrClosed)
	_, err = p.TryGet()
	require.ErrorIs(t, err, connpool.ErrClosed)
	assert.Eventually(t, func() bool { return srv.Open() == 1 }, waitFor, tick, "the idle conn is closed at once")

	mustRoundTrip(t, held[0], "borrowed conns keep working until returned")
	require.NoError(t, held[0].Close())
	st := p.Stats()
	assert.Zero(t, st.OpenConns)
	assert.Equal(t, int64(2), st.PoolClosed)
	assert.Eventually(t, func() bool { return srv.Open() == 0 }, waitFor, tick)
	checkBooks(t, st)
}

func TestCloseFailsQueuedWaiters(t *testing.T) {
	srv := startServer(t)
	p, err := connpool.New("tcp", srv.Addr(), connpool.WithMaxConns(1))
	require.NoError(t, err)
	held := holdAll(t, p, 1)[0]
	errs := make(chan error, 3)
	for range 3 {
		go func() {
			_, err := p.Get(context.Background())
			errs <- err
		}()
	}
	require.Eventually(t, waitersAre(p, 3), waitFor, tick)
	require.NoError(t, p.Close())
	for range 3 {
		assert.ErrorIs(t, <-errs, connpool.ErrClosed)
	}
	require.NoError(t, held.Close())
	assert.Zero(t, p.Stats().OpenConns)
}

func TestShutdownWaitsForBorrowedConns(t *testing.T) {
	srv := startServer(t)
	p, err := connpool.New("tcp", srv.Addr())
	require.NoError(t, err)
	c := holdAll(t, p, 1)[0]
	done := make(chan error, 1)
	go func() { done <- p.Shutdown(context.Background()) }()
	require.Eventually(t, func() bool {
		_, err := p.Get(context.Background())
		return errors.Is(err, connpool.ErrClosed)
	}, waitFor, tick)
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a conn still borrowed", err)
	default:
	}
	mustRoundTrip(t, c, "finishing up")
	require.NoError(t, c.Close())
	require.NoError(t, <-done)
	assert.Zero(t, p.Stats().OpenConns)
	assert.ErrorIs(t, p.Shutdown(context.Background()), connpool.ErrClosed)
}

func TestShutdownForcesAfterDeadline(t *testing.T) {
	srv := startServer(t)
	p, err := connpool.New("tcp", srv.Addr())
	require.NoError(t, err)
	c := holdAll(t, p, 1)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err = p.Shutdown(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	_, err = roundTrip(c, "too late")
	require.Error(t, err, "the borrowed socket was closed")
	require.NoError(t, c.Close())
	st := p.Stats()
	assert.Zero(t, st.OpenConns)
	checkBooks(t, st)
}

func TestDialerReturningNothing(t *testing.T) {
	p := newPool(t, "127.0.0.1:1", connpool.WithDialer(
		func(context.Context, string, string) (net.Conn, error) { return nil, nil }))
	_, err := p.Get(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "neither a conn nor an error")
}

func TestDialerErrorWithConnClosesIt(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr(), connpool.WithDialer(
		func(ctx context.Context, network, address string) (net.Conn, error) {
			var nd net.Dialer
			c, err := nd.DialContext(ctx, network, address)
			require.NoError(t, err)
			return c, errors.New("handshake failed")
		}))
	_, err := p.Get(context.Background())
	require.ErrorContains(t, err, "handshake failed")
	assert.Eventually(t, func() bool { return srv.Open() == 0 }, waitFor, tick)
}

func TestPingPongCatchesSilentServer(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr(), connpool.WithMinIdle(2),
		connpool.WithHealthCheck(connpool.PingPong([]byte("PING\r\n"), []byte("PING\r\n"))),
		connpool.WithHealthCheckInterval(30*time.Millisecond),
		connpool.WithHealthCheckTimeout(20*time.Millisecond))
	require.Eventually(t, func() bool { return p.Stats().Idle == 2 }, waitFor, tick)
	// Echo answers PING with PING: healthy. Let a few checks pass.
	dials := p.Stats().Dials
	require.Eventually(t, func() bool { return p.Stats().Idle == 2 }, waitFor, tick)

	srv.SetMode(testserver.Silent)
	require.Eventually(t, func() bool { return p.Stats().HealthFailures >= 2 }, waitFor, tick)
	assert.Eventually(t, func() bool { return p.Stats().Dials > dials }, waitFor, tick, "replacements dialed")

	srv.SetMode(testserver.Echo)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, err := p.Get(ctx)
	require.NoError(t, err)
	mustRoundTrip(t, c, "answering again")
	require.NoError(t, c.Close())
}

func TestPingPong(t *testing.T) {
	srv := startServer(t)
	nc, err := net.Dial("tcp", srv.Addr())
	require.NoError(t, err)
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()

	assert.NoError(t, connpool.PingPong([]byte("ping"), []byte("ping")).Check(ctx, nc))
	err = connpool.PingPong([]byte("ping"), []byte("pong")).Check(ctx, nc)
	assert.ErrorIs(t, err, connpool.ErrHealthCheck)
	assert.Contains(t, err.Error(), `got "ping", want "pong"`)

	ping := []byte("abcd")
	checker := connpool.PingPong(ping, ping)
	copy(ping, "zzzz") // PingPong copied its arguments
	buf := make([]byte, 4)
	assert.NoError(t, checker.Check(ctx, nc))
	require.NoError(t, nc.SetReadDeadline(time.Now().Add(20*time.Millisecond)))
	_, err = nc.Read(buf)
	assert.Error(t, err, "the checker read exactly its reply")

	srv.SetMode(testserver.Silent)
	short, cancelShort := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancelShort()
	require.NoError(t, nc.SetReadDeadline(time.Time{}))
	err = connpool.PingPong([]byte("x"), []byte("x")).Check(short, nc)
	assert.ErrorIs(t, err, connpool.ErrHealthCheck)
}

func TestHealthCheckFunc(t *testing.T) {
	srv := startServer(t)
	var checked atomic.Int32
	p := newPool(t, srv.Addr(), connpool.WithMinIdle(1),
		connpool.WithHealthCheckInterval(10*time.Millisecond),
		connpool.WithHealthCheck(connpool.HealthCheckFunc(func(ctx context.Context, c net.Conn) error {
			_, ok := ctx.Deadline()
			assert.True(t, ok, "each check has a deadline")
			if checked.Add(1) > 2 {
				return errors.New("reject")
			}
			return nil
		})))
	require.Eventually(t, func() bool { return p.Stats().HealthFailures >= 1 }, waitFor, tick)
	// A checker that rejects conns never makes Get fail.
	c, err := p.Get(context.Background())
	require.NoError(t, err)
	require.NoError(t, c.Close())
}

// TestDirtyConnsLeadToFreshDial: when the checkout peek keeps rejecting
// idle conns, a Get gives up on them after a few and dials a fresh one,
// rather than walking the whole idle set.
func TestDirtyConnsLeadToFreshDial(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(8))
	for _, c := range holdAll(t, p, 6) {
		mustRoundTrip(t, c, "used")
		require.NoError(t, c.Close())
	}
	// Loopback delivers within the server's write, so once Send returns
	// every idle conn has bytes nobody asked for.
	require.NoError(t, srv.Send([]byte("unasked")))
	c, err := p.Get(context.Background())
	require.NoError(t, err)
	mustRoundTrip(t, c, "fresh")
	require.NoError(t, c.Close())
	st := p.Stats()
	assert.Equal(t, int64(3), st.HealthFailures, "three rejections, then a fresh dial")
	assert.Equal(t, int64(7), st.Dials)
	assert.Equal(t, int64(1), st.Misses-6, "the Get was served by the fresh dial")
	checkBooks(t, st)
}
