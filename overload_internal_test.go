package connpool

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool/internal/clock"
	"github.com/connpool/connpool/internal/fakeconn"
)

// gatedDialer dials in-memory conns; while closed is set, dials wait for
// open to be closed.
type gatedDialer struct {
	closed atomic.Bool
	open   chan struct{}
}

func (g *gatedDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if g.closed.Load() {
		select {
		case <-g.open:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return fakeconn.Dial(ctx, network, addr)
}

// newPolicyPool returns a pool of in-memory conns with policy q and opts.
func newPolicyPool(t *testing.T, q *QueuePolicy, opts ...Option) *Pool {
	if q != nil {
		opts = append(opts, WithQueuePolicy(*q))
	}
	p, err := New("fake", "fake:0", append([]Option{WithDialer(fakeconn.Dial)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// forceOverload puts p's controller in its overloaded state, as standing
// waits over Target for a whole Interval would. It lasts until a serve
// finds the oldest waiter within Target (give 1ns) or the queue drains.
func forceOverload(p *Pool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	base := clock.Nanotime()
	p.overload.Served(base, time.Hour, 5)
	p.overload.Served(base+int64(p.cfg.queuePolicy.Interval), time.Hour, 5)
	if !p.overload.LIFO() {
		panic("forceOverload: the controller did not go LIFO")
	}
}

// queueInOrder starts n Gets on p, each queued before the next starts.
// Each served Get sends its index to order and puts its conn back at once,
// so that order is the order in which the pool served them.
func queueInOrder(t *testing.T, p *Pool, n int) (order <-chan int, errs <-chan error) {
	out, failed := make(chan int, n), make(chan error, n)
	for i := range n {
		go func() {
			c, err := p.Get(context.Background())
			if err != nil {
				failed <- err
				return
			}
			out <- i
			assert.NoError(t, c.Close())
		}()
		require.Eventually(t, func() bool { return p.Stats().Waiting == i+1 }, 5*time.Second, time.Millisecond)
	}
	return out, failed
}

// TestQueueOrderUnderEachPolicy pins the order in which one conn, put
// back and passed on, serves four queued Gets: first come, first served
// by default, under deadline admission, and under adaptive LIFO while the
// queue is not overloaded; newest first while it is, until it drains.
func TestQueueOrderUnderEachPolicy(t *testing.T) {
	for _, tc := range []struct {
		name     string
		q        *QueuePolicy
		overload bool
		want     []int
	}{
		{"default", nil, false, []int{0, 1, 2, 3}},
		{"deadline admission", &QueuePolicy{DeadlineAdmission: true}, false, []int{0, 1, 2, 3}},
		{"adaptive LIFO, calm", &QueuePolicy{AdaptiveLIFO: true}, false, []int{0, 1, 2, 3}},
		{"adaptive LIFO, overloaded", &QueuePolicy{AdaptiveLIFO: true, Target: time.Nanosecond, Interval: time.Hour}, true, []int{3, 2, 1, 0}},
		{"both, overloaded", &QueuePolicy{AdaptiveLIFO: true, DeadlineAdmission: true, Target: time.Nanosecond, Interval: time.Hour}, true, []int{3, 2, 1, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPolicyPool(t, tc.q, WithMaxConns(1))
			held, err := p.Get(context.Background())
			require.NoError(t, err)
			order, errs := queueInOrder(t, p, 4)
			if tc.overload {
				forceOverload(p)
			}
			require.NoError(t, held.Close())
			var got []int
			for range 4 {
				select {
				case i := <-order:
					got = append(got, i)
				case err := <-errs:
					require.NoError(t, err)
				}
			}
			assert.Equal(t, tc.want, got)
			if p.overload != nil {
				p.mu.Lock()
				assert.False(t, p.overload.LIFO(), "the queue drained: first come, first served again")
				p.mu.Unlock()
			}
			require.NoError(t, p.CheckInvariants())
		})
	}
}

// TestOverloadShedsOldWaitersAndKeepsPromises: in an overloaded queue a
// conn put back goes to the newest Get, and the older Gets waiting past
// ShedAfter fail with ErrShed, counted in Stats and their GetDone events;
// but a Get whose dial is in flight and a DialContext caller are not
// shed, and each gets what it was promised: the dial's conn, and a conn
// never handed out.
func TestOverloadShedsOldWaitersAndKeepsPromises(t *testing.T) {
	gate := &gatedDialer{open: make(chan struct{})}
	var mu sync.Mutex
	failures := map[GetFailure]int{}
	hooks := Hooks{GetDone: func(ev GetDoneEvent) {
		mu.Lock()
		failures[ev.Failure]++
		mu.Unlock()
	}}
	p := newPolicyPool(t, &QueuePolicy{AdaptiveLIFO: true, Target: time.Nanosecond, Interval: time.Hour, ShedAfter: time.Nanosecond},
		WithMaxConns(2), WithDialer(gate.dial), WithHooks(hooks))
	held, err := p.Get(context.Background())
	require.NoError(t, err)
	gate.closed.Store(true)

	type result struct {
		name string
		c    *Conn
		err  error
	}
	results := make(chan result, 4)
	start := func(name string, dialContext bool) {
		go func() {
			var r result
			r.name = name
			if dialContext {
				var nc net.Conn
				nc, r.err = p.DialContext(context.Background(), "fake", "fake:0")
				if nc != nil {
					r.c = nc.(*Conn)
				}
			} else {
				r.c, r.err = p.Get(context.Background())
			}
			results <- r
		}()
	}
	waiting := func(n int) {
		require.Eventually(t, func() bool { return p.Stats().Waiting == n }, 5*time.Second, time.Millisecond)
	}
	start("dialing", false) // its dial waits at the gate
	waiting(1)
	require.Eventually(t, func() bool { return p.Stats().Dialing == 1 }, 5*time.Second, time.Millisecond)
	start("client", true) // at the cap: 1 open, 1 dialing
	waiting(2)
	start("old", false)
	waiting(3)
	start("new", false)
	waiting(4)
	forceOverload(p)

	require.NoError(t, held.Close())
	got := map[string]result{}
	for range 2 {
		r := <-results
		got[r.name] = r
	}
	require.Contains(t, got, "new", "the newest Get is served")
	require.NoError(t, got["new"].err)
	require.Contains(t, got, "old")
	err = got["old"].err
	require.ErrorIs(t, err, ErrShed)
	assert.NotErrorIs(t, err, context.DeadlineExceeded, "shed, not timed out")
	assert.Contains(t, err.Error(), "ShedAfter")
	s := p.Stats()
	assert.Equal(t, int64(1), s.ShedOverload)
	assert.Equal(t, 2, s.Waiting, "the Get with a dial in flight and the DialContext caller stay")

	close(gate.open)
	dialed := <-results
	require.Equal(t, "dialing", dialed.name)
	require.NoError(t, dialed.err, "the dial's conn went to the Get it was started for")
	require.NoError(t, got["new"].c.Close()) // a used conn: the client's slot is freed for a dial
	client := <-results
	require.Equal(t, "client", client.name)
	require.NoError(t, client.err)
	require.NoError(t, dialed.c.Close())
	require.NoError(t, client.c.Close())
	require.NoError(t, p.CheckInvariants())
	mu.Lock()
	assert.Equal(t, 1, failures[GetShedOverload], "the GetDone event says why")
	mu.Unlock()
}

// TestDeadlineAdmissionFailsAtOnce: once the pool has seen its queue
// serve one Get a second, a Get behind one waiter expects two seconds;
// with one second to its deadline it fails at once, with an error that
// wraps context.DeadlineExceeded (the timeout users check) and ErrShed,
// counted as ShedDeadline and not as a timeout, and its GetDone event
// says so. With a minute it queues; without a deadline it always does.
func TestDeadlineAdmissionFailsAtOnce(t *testing.T) {
	var mu sync.Mutex
	var failures []GetFailure
	hooks := Hooks{GetDone: func(ev GetDoneEvent) {
		mu.Lock()
		failures = append(failures, ev.Failure)
		mu.Unlock()
	}}
	p := newPolicyPool(t, &QueuePolicy{DeadlineAdmission: true}, WithMaxConns(1), WithHooks(hooks))
	held, err := p.Get(context.Background())
	require.NoError(t, err)
	order, errs := queueInOrder(t, p, 1)

	// The evidence: 9 serves a second apart, from now on.
	p.mu.Lock()
	base := clock.Nanotime()
	for i := range 9 {
		p.overload.Served(base+int64(i+1)*int64(time.Second), 0, 1)
	}
	p.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	began := time.Now()
	_, err = p.Get(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorIs(t, err, ErrShed)
	assert.NoError(t, ctx.Err(), "failed at once, not at its deadline")
	assert.Less(t, time.Since(began), time.Second)
	assert.Contains(t, err.Error(), "DeadlineAdmission")
	assert.Contains(t, err.Error(), "1 Gets wait ahead")

	long, cancelLong := context.WithTimeout(context.Background(), time.Minute)
	defer cancelLong()
	served := make(chan error, 2)
	for _, ctx := range []context.Context{long, context.Background()} {
		go func() {
			c, err := p.Get(ctx)
			if err == nil {
				err = c.Close()
			}
			served <- err
		}()
	}
	require.Eventually(t, func() bool { return p.Stats().Waiting == 3 }, 5*time.Second, time.Millisecond)
	require.NoError(t, held.Close())
	<-order
	for range 2 {
		require.NoError(t, <-served)
	}
	select {
	case err := <-errs:
		require.NoError(t, err)
	default:
	}
	s := p.Stats()
	assert.Equal(t, int64(1), s.ShedDeadline)
	assert.Zero(t, s.Timeouts)
	assert.Equal(t, s.Failed(GetShedDeadline), s.ShedDeadline)
	require.NoError(t, p.CheckInvariants())
	mu.Lock()
	assert.Contains(t, failures, GetShedDeadline)
	mu.Unlock()
}

// TestQueuePolicyCloseLeavesNoWaiter: Close fails every queued Get, of
// every kind, under an overloaded policy too; goleak (TestMain) finds no
// goroutine left.
func TestQueuePolicyCloseLeavesNoWaiter(t *testing.T) {
	p := newPolicyPool(t, &QueuePolicy{AdaptiveLIFO: true, DeadlineAdmission: true, Interval: time.Hour}, WithMaxConns(1))
	held, err := p.Get(context.Background())
	require.NoError(t, err)
	done := make(chan error, 20)
	for i := range 20 {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var err error
			if i%4 == 0 {
				_, err = p.DialContext(ctx, "fake", "fake:0")
			} else {
				_, err = p.Get(ctx)
			}
			done <- err
		}()
	}
	require.Eventually(t, func() bool { return p.Stats().Waiting == 20 }, 5*time.Second, time.Millisecond)
	forceOverload(p)
	require.NoError(t, p.Close())
	for range 20 {
		require.ErrorIs(t, <-done, ErrClosed)
	}
	require.NoError(t, held.Close())
	assert.Zero(t, p.Stats().Waiting)
}

// TestQueuePolicyHammer runs Gets and DialContexts with short random
// deadlines from many goroutines against a pool of two conns whose policy
// reacts within microseconds, so that the queue flips between FIFO and
// LIFO, sheds, and refuses at once all the while; the books must balance:
// every call is one hit, miss or failure, and the ledger holds.
func TestQueuePolicyHammer(t *testing.T) {
	p := newPolicyPool(t, &QueuePolicy{AdaptiveLIFO: true, DeadlineAdmission: true,
		Target: time.Microsecond, Interval: 200 * time.Microsecond, ShedAfter: 300 * time.Microsecond}, WithMaxConns(2))
	var calls atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			for range 300 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rng.IntN(2000))*time.Microsecond)
				var c net.Conn
				var err error
				if rng.IntN(8) == 0 {
					c, err = p.DialContext(ctx, "fake", "fake:0")
				} else {
					c, err = p.Get(ctx)
				}
				calls.Add(1)
				if err == nil {
					for range rng.IntN(3) {
						runtime.Gosched()
					}
					assert.NoError(t, c.Close())
				} else if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, ErrShed) {
					assert.NoError(t, err)
				}
				cancel()
			}
		})
	}
	wg.Wait()
	s := p.Stats()
	sum := s.Hits + s.Misses
	for _, f := range GetFailures() {
		sum += s.Failed(f)
	}
	assert.Equal(t, calls.Load(), sum, "every call counted once: %+v", s)
	require.NoError(t, p.CheckInvariants())
	t.Logf("shed at once %d, shed waiting %d, timeouts %d, hits %d", s.ShedDeadline, s.ShedOverload, s.Timeouts, s.Hits)
}

// TestWithQueuePolicyValidates: a negative duration is named in New's
// error; zeros take the documented defaults.
func TestWithQueuePolicyValidates(t *testing.T) {
	for _, q := range []QueuePolicy{{Target: -1}, {Interval: -1}, {ShedAfter: -1}} {
		_, err := New("fake", "fake:0", WithQueuePolicy(q))
		require.ErrorIs(t, err, ErrInvalidOption)
		assert.Contains(t, err.Error(), "WithQueuePolicy")
	}
	p := newPolicyPool(t, &QueuePolicy{AdaptiveLIFO: true})
	assert.Equal(t, QueuePolicy{AdaptiveLIFO: true, Target: defaultQueueTarget, Interval: defaultQueueInterval,
		ShedAfter: defaultQueueInterval}, p.cfg.queuePolicy)
	assert.Nil(t, newPolicyPool(t, nil).overload, "FIFO by default: no controller")
	assert.Nil(t, newPolicyPool(t, &QueuePolicy{}).overload, "the zero policy is FIFO")
}

// TestDeadlineAdmissionSparesDialContextCallers: a DialContext caller
// waits for a conn never handed out, not for the queue to drain, so the
// queue's estimate does not judge it: with evidence that would turn a Get
// away, it queues.
func TestDeadlineAdmissionSparesDialContextCallers(t *testing.T) {
	p := newPolicyPool(t, &QueuePolicy{DeadlineAdmission: true}, WithMaxConns(1))
	held, err := p.Get(context.Background())
	require.NoError(t, err)
	_, errs := queueInOrder(t, p, 1)
	p.mu.Lock()
	base := clock.Nanotime()
	for i := range 9 {
		p.overload.Served(base+int64(i+1)*int64(time.Second), 0, 1)
	}
	p.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = p.Get(ctx)
	require.ErrorIs(t, err, ErrShed, "a Get is turned away")
	done := make(chan error, 1)
	go func() {
		c, err := p.DialContext(ctx, "fake", "fake:0")
		if err == nil {
			err = c.Close()
		}
		done <- err
	}()
	require.Eventually(t, func() bool { return p.Stats().Waiting == 2 }, 5*time.Second, time.Millisecond,
		"the DialContext caller queued")
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	require.NoError(t, held.Close())
	select {
	case err := <-errs:
		require.NoError(t, err)
	default:
	}
	assert.Equal(t, int64(1), p.Stats().ShedDeadline)
}
