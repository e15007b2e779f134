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
)

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
