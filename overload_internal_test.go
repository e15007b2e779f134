package connpool

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool/internal/clock"
	"github.com/connpool/connpool/internal/fakeconn"
	"github.com/connpool/connpool/internal/lagctx"
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

// TestShedSparesAWaiterPastItsDeadline: while the queue sheds, a waiter
// whose deadline has passed is not shed: it leaves with its deadline's
// error, as any Get that times out, and counts as a timeout. Regression:
// under AdaptiveLIFO with a deadline at or below ShedAfter (the default
// ShedAfter is Interval, 100ms), every Get shed had already timed out, and
// its error, ErrShed alone, failed errors.Is(err, DeadlineExceeded).
func TestShedSparesAWaiterPastItsDeadline(t *testing.T) {
	p := newPolicyPool(t, &QueuePolicy{AdaptiveLIFO: true, Target: time.Nanosecond, Interval: time.Hour, ShedAfter: time.Nanosecond},
		WithMaxConns(1))
	held, err := p.Get(context.Background())
	require.NoError(t, err)
	ctx := lagctx.New(context.Background(), context.DeadlineExceeded) // its deadline passes while it waits
	late := make(chan error, 1)
	go func() {
		_, err := p.Get(ctx)
		late <- err
	}()
	require.Eventually(t, func() bool { return p.Stats().Waiting == 1 }, 5*time.Second, time.Millisecond)
	newer := make(chan *Conn, 1)
	go func() {
		c, err := p.Get(context.Background())
		assert.NoError(t, err)
		newer <- c
	}()
	require.Eventually(t, func() bool { return p.Stats().Waiting == 2 }, 5*time.Second, time.Millisecond)
	forceOverload(p)

	ctx.End()
	require.NoError(t, held.Close()) // to the newest; the older would be shed
	require.NoError(t, (<-newer).Close())
	ctx.Wake()
	err = <-late
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.NotErrorIs(t, err, ErrShed)
	s := p.Stats()
	assert.Zero(t, s.ShedOverload)
	assert.Equal(t, int64(1), s.Timeouts)
}
