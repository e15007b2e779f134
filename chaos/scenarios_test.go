package chaos

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
	"github.com/connpool/connpool/internal/testserver"
)

// fill borrows n conns at once, uses each, and returns them all, leaving n
// used idle conns in the pool.
func (e *env) fill(p *connpool.Pool, n int) {
	e.t.Helper()
	conns := make([]*connpool.Conn, n)
	for i := range conns {
		c, err := p.Get(context.Background())
		require.NoError(e.t, err)
		require.NoError(e.t, e.request(c, fmt.Sprintf("fill-%d", i)))
		conns[i] = c
	}
	for _, c := range conns {
		require.NoError(e.t, c.Close())
	}
}

// afterDeadConns checks that once every idle conn is dead at the client,
// no Get hands one out: every request on a Get's conn succeeds, and every
// dead conn is dropped (the first found at checkout sweeps the rest).
func (e *env) afterDeadConns(p *connpool.Pool, n int) {
	e.t.Helper()
	e.allSocketsDead()
	for i := range 3 * n {
		require.NoError(e.t, e.use(context.Background(), p, 1, fmt.Sprintf("after-%d", i)), "a Get returned a dead conn")
	}
	require.Eventually(e.t, func() bool { return p.Stats().HealthFailures == int64(n) }, waitFor, tick,
		"each dead conn dropped")
}

// 1. The server closes idle conns (FIN) after a while.
func TestServerClosesIdleConns(t *testing.T) {
	e := newEnv(t, testserver.WithIdleTimeout(100*time.Millisecond))
	p := e.pool(connpool.WithMaxConns(4), connpool.WithHealthCheckInterval(0))
	e.fill(p, 4)
	e.afterDeadConns(p, 4)
	e.finish(p, 4, 4+12)
}

// 2. The peer resets conns (RST).
func TestPeerResetsConns(t *testing.T) {
	e := newEnv(t)
	p := e.pool(connpool.WithMaxConns(4), connpool.WithHealthCheckInterval(0))
	e.fill(p, 4)
	remove := e.toxic("reset_peer", "downstream", `{"timeout":0}`)
	// The toxic resets a conn when data next flows through it.
	require.NoError(t, e.upstream.Send([]byte("!")))
	e.allSocketsDead()
	remove()
	e.afterDeadConns(p, 4)
	e.finish(p, 4, 4+12)
}

// 3. A blackhole: data stops, nothing is closed. Health checks and Gets
// with deadlines return within their bounds; the dead conns are reaped.
func TestBlackhole(t *testing.T) {
	e := newEnv(t)
	const checkTimeout = 40 * time.Millisecond
	p := e.pool(connpool.WithMaxConns(4), connpool.WithMinIdle(2),
		connpool.WithHealthCheck(connpool.PingPong([]byte("ping-health-check"), []byte("ping-health-check"))),
		connpool.WithHealthCheckInterval(60*time.Millisecond), connpool.WithHealthCheckTimeout(checkTimeout))
	e.fill(p, 4)
	remove := e.toxic("timeout", "upstream", `{"timeout":0}`)

	// Requests with a deadline end at it, and poison their conn.
	const deadline = 80 * time.Millisecond
	for i := range 6 {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		c, err := p.Get(ctx)
		if err != nil {
			cancel()
			continue // the pool may be dialing replacements
		}
		dl, _ := ctx.Deadline()
		require.NoError(t, c.SetDeadline(dl))
		start := time.Now()
		err = e.request(c, fmt.Sprintf("blackholed-%d", i))
		elapsed := time.Since(start)
		cancel()
		require.Error(t, err)
		assert.True(t, errors.Is(err, context.DeadlineExceeded) || isTimeout(err), "%v", err)
		assert.Less(t, elapsed, deadline+500*time.Millisecond, "returned within its bound")
		require.NoError(t, c.Close())
	}
	// The background check finds the idle conns dead within its timeout.
	start := time.Now()
	require.Eventually(t, func() bool { return p.Stats().HealthFailures >= 2 }, waitFor, tick)
	assert.Less(t, time.Since(start), 2*time.Second)
	st := p.Stats()
	assert.Positive(t, st.BrokenClosed, "timed-out conns were not reused")

	remove()
	require.Eventually(t, func() bool {
		return e.use(context.Background(), p, 1, "healed") == nil
	}, waitFor, 10*time.Millisecond)
	e.finish(p, 4, -1)
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// 4. A reply cut short mid-stream: the caller gets an error, never another
// request's bytes, and the conn is never reused.
func TestReplyCutShort(t *testing.T) {
	e := newEnv(t)
	p := e.pool(connpool.WithMaxConns(2))
	remove := e.toxic("limit_data", "downstream", fmt.Sprintf(`{"bytes":%d}`, tagSize+tagSize/2))
	var gets, errs int64
	for i := range 20 {
		c, err := p.Get(context.Background())
		require.NoError(t, err)
		gets++
		if err := e.request(c, fmt.Sprintf("cut-%d", i)); err != nil {
			errs++
		}
		require.NoError(t, c.Close())
	}
	remove()
	st := e.finish(p, 2, gets)
	assert.Positive(t, errs)
	assert.Equal(t, errs, st.BrokenClosed, "every conn whose reply was cut is destroyed")
}

// 5. Latency and jitter: the cap holds, waiters are served in order, and
// nothing that had time left times out.
func TestLatencyAndJitter(t *testing.T) {
	e := newEnv(t)
	p := e.pool(connpool.WithMaxConns(4))
	remove := e.toxic("latency", "downstream", `{"latency":15,"jitter":10}`)
	defer remove()

	var wg sync.WaitGroup
	var gets, timeouts int64
	var mu sync.Mutex
	for g := range 24 {
		wg.Go(func() {
			for i := range 5 {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := e.use(ctx, p, int64(g+1), fmt.Sprintf("lat-%d-%d", g, i))
				cancel()
				mu.Lock()
				if err == nil {
					gets++
				} else if errors.Is(err, context.DeadlineExceeded) {
					timeouts++
				}
				mu.Unlock()
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
	assert.Zero(t, timeouts)

	// FIFO: hold every conn, queue waiters one by one, release.
	held := make([]*connpool.Conn, 4)
	for i := range held {
		c, err := p.Get(context.Background())
		require.NoError(t, err)
		gets++
		held[i] = c
	}
	order := make(chan int, 8)
	for i := range 8 {
		wg.Go(func() {
			c, err := p.Get(context.Background())
			if assert.NoError(t, err) {
				order <- i
				assert.NoError(t, e.request(c, fmt.Sprintf("fifo-%d", i)))
				assert.NoError(t, c.Close())
			}
		})
		require.Eventually(t, func() bool { return p.Stats().Waiting == i+1 }, waitFor, tick)
	}
	for _, c := range held {
		require.NoError(t, c.Close())
	}
	wg.Wait()
	close(order)
	served := []int{}
	for i := range order {
		served = append(served, i)
	}
	gets += 8
	// Four conns are handed to the first four waiters at once; each then
	// comes back to the next. Order of service, not of completion, is what
	// the queue promises: the first four are 0-3 in any order.
	require.Len(t, served, 8)
	assert.ElementsMatch(t, []int{0, 1, 2, 3}, served[:4])
	e.finish(p, 4, gets)
}

// 6. The backend goes down for a while, then comes back.
func TestBackendDownThenUp(t *testing.T) {
	e := newEnv(t)
	const minBackoff, maxBackoff = 40 * time.Millisecond, 320 * time.Millisecond
	p := e.pool(connpool.WithMaxConns(8), connpool.WithMinIdle(2), connpool.WithMaxConnecting(2),
		connpool.WithDialBackoff(minBackoff, maxBackoff), connpool.WithHealthCheckInterval(30*time.Millisecond))
	require.Eventually(t, func() bool { return p.Stats().Idle == 2 }, waitFor, tick)

	e.proxy.Stop() // refuses dials and closes every conn
	down := time.Now()
	drain(e.dialTimes)
	// Once the closes have reached the client, no Get gets a conn: each
	// fails with the dial error, and fast (from the backoff, not a dial).
	e.allSocketsDead()
	var failFast int
	for range 20 {
		start := time.Now()
		err := e.use(context.Background(), p, 1, "down")
		require.ErrorIs(t, err, syscall.ECONNREFUSED)
		if time.Since(start) < 20*time.Millisecond {
			failFast++
		}
	}
	assert.GreaterOrEqual(t, failFast, 15, "Gets fail fast during the outage")
	require.Eventually(t, func() bool { return time.Since(down) > 1200*time.Millisecond }, waitFor, 50*time.Millisecond)
	attempts := drain(e.dialTimes)
	// Backoff 40, 80, 160, 320, 320 ms (each jittered to half or more):
	// about 6 attempts in 1.2s, not hundreds.
	assert.Less(t, len(attempts), 25, "dials back off: %d attempts", len(attempts))
	assert.LessOrEqual(t, e.peakDialing.Load(), int64(2), "dials in flight within MaxConnecting")

	require.NoError(t, e.proxy.Start())
	up := time.Now()
	require.Eventually(t, func() bool { return p.Stats().Idle == 2 }, waitFor, tick)
	assert.Less(t, time.Since(up), maxBackoff+300*time.Millisecond, "recovers within one backoff period")
	require.NoError(t, e.use(context.Background(), p, 1, "up"))
	e.finish(p, 8, -1)
}

func drain(ch chan time.Time) []time.Time {
	var out []time.Time
	for {
		select {
		case t := <-ch:
			out = append(out, t)
		default:
			return out
		}
	}
}

// 7. A dial that hangs (its handshake gets no answer): Put and Gets of idle
// conns stay fast; the dial ends at the dial timeout.
func TestHangingDialDoesNotBlockThePool(t *testing.T) {
	e := newEnv(t)
	var hang atomic.Bool
	const dialTimeout = 300 * time.Millisecond
	p, err := connpool.New("tcp", e.addr(), connpool.WithMaxConns(4), connpool.WithDialTimeout(dialTimeout),
		connpool.WithDialer(func(ctx context.Context, network, address string) (net.Conn, error) {
			c, err := e.dial(ctx, network, address)
			if err != nil || !hang.Load() {
				return c, err
			}
			// A handshake, as TLS would do, that the blackhole never answers.
			if dl, ok := ctx.Deadline(); ok {
				_ = c.SetDeadline(dl)
			}
			if _, err = c.Write([]byte("HELLO")); err == nil {
				_, err = c.Read(make([]byte, 5))
			}
			c.Close()
			return nil, err
		}))
	require.NoError(t, err)
	e.fill(p, 2)
	hang.Store(true)
	remove := e.toxic("timeout", "upstream", `{"timeout":0}`)

	// Borrow both idle conns, then start a dial that hangs.
	a, err := p.Get(context.Background())
	require.NoError(t, err)
	b, err := p.Get(context.Background())
	require.NoError(t, err)
	short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	_, err = p.Get(short)
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Equal(t, 1, p.Stats().Dialing)
	started := time.Now()

	// While it hangs, Put and Get of idle conns do not wait for it.
	for range 50 {
		t0 := time.Now()
		require.NoError(t, a.Close())
		c, err := p.TryGet()
		require.NoError(t, err)
		a = c
		assert.Less(t, time.Since(t0), 20*time.Millisecond)
	}
	require.Eventually(t, func() bool { return p.Stats().DialErrors == 1 }, waitFor, tick)
	assert.Less(t, time.Since(started), dialTimeout+500*time.Millisecond, "the dial ended at its timeout")
	remove()
	require.NoError(t, a.Close())
	require.NoError(t, b.Close())
	e.finish(p, 4, -1)
}

// 8. A herd: 100 conns opened at once are retired over the jitter window,
// not in one burst.
func TestLifetimeHerdIsSpread(t *testing.T) {
	e := newEnv(t)
	const life, jitter = 1200 * time.Millisecond, 800 * time.Millisecond
	p := e.pool(connpool.WithMaxConns(100), connpool.WithMaxConnecting(100),
		connpool.WithMaxLifetime(life), connpool.WithMaxLifetimeJitter(jitter),
		connpool.WithHealthCheckInterval(0))
	opened := time.Now()
	conns := make([]*connpool.Conn, 100)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			c, err := p.Get(context.Background())
			if assert.NoError(t, err) {
				conns[i] = c
			}
		})
	}
	wg.Wait()
	for _, c := range conns {
		require.NoError(t, c.Close())
	}
	drain(e.closeTimes)
	require.Eventually(t, func() bool { return p.Stats().LifetimeClosed == 100 }, waitFor, 10*time.Millisecond)
	closes := drain(e.closeTimes)
	require.Len(t, closes, 100)
	first, last := closes[0], closes[0]
	buckets := map[int]int{}
	for _, c := range closes {
		first, last = minTime(first, c), maxTime(last, c)
		buckets[int(c.Sub(opened)/(100*time.Millisecond))]++
	}
	spread := last.Sub(first)
	busiest := 0
	for _, n := range buckets {
		busiest = max(busiest, n)
	}
	t.Logf("100 conns retired over %v (jitter window %v); busiest 100ms holds %d", spread, jitter, busiest)
	assert.Greater(t, spread, jitter/2, "retirements spread over the window")
	assert.Less(t, busiest, 40, "no burst")
	assert.GreaterOrEqual(t, first.Sub(opened), life-jitter-50*time.Millisecond, "none before MaxLifetime-jitter")
	e.finish(p, 100, 100)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
