package connpool_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
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
