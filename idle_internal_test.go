package connpool

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool/internal/fakeconn"
)

// pausePutIdle makes the next putIdle stop between its checks and its
// push. It returns a channel closed once a Put is stopped there, and a
// function that lets it go on.
func pausePutIdle(t *testing.T) (paused <-chan struct{}, resume func()) {
	stopped, goOn := make(chan struct{}), make(chan struct{})
	first := true
	testHookPutIdle = func() {
		if first { // only the paused Put runs putIdle until resume
			first = false
			close(stopped)
			<-goOn
		}
	}
	t.Cleanup(func() { testHookPutIdle = nil })
	return stopped, func() { close(goOn) }
}

// borrowOne returns a pool of at most one in-memory conn and that conn,
// borrowed.
func borrowOne(t *testing.T) (*Pool, *Conn) {
	p, err := New("fake", "fake:0", WithMaxConns(1), WithDialer(fakeconn.Dial))
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	c, err := p.Get(context.Background())
	require.NoError(t, err)
	return p, c
}

// putPaused returns c in the background and waits until its Put stops
// between its checks and its push. finish lets the Put go on and returns
// its error.
func putPaused(t *testing.T, c *Conn) (finish func() error) {
	paused, resume := pausePutIdle(t)
	done := make(chan error)
	go func() { done <- c.Close() }()
	<-paused
	return func() error {
		resume()
		return <-done
	}
}

// queueGet starts a Get on p and waits until it is queued. The channel
// yields the conn it got.
func queueGet(t *testing.T, p *Pool) <-chan *Conn {
	got := make(chan *Conn, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := p.Get(ctx)
		assert.NoError(t, err, "the Get waited while a conn sat idle")
		got <- c
	}()
	require.Eventually(t, func() bool { return p.Stats().Waiting == 1 }, 5*time.Second, time.Millisecond)
	return got
}

// retire flags pc past its lifetime, as the reaper does.
func retire(p *Pool, pc *poolConn) {
	p.mu.Lock()
	p.idleMu.Lock()
	pc.retire = true
	p.idleMu.Unlock()
	p.mu.Unlock()
}

// TestPutIdleServesGetQueuedBeforePush stops a Put after it found no Get
// queued and before its push, queues a Get meanwhile, and lets the Put go
// on: the Put must serve the Get, which would otherwise wait with the only
// conn sitting idle.
func TestPutIdleServesGetQueuedBeforePush(t *testing.T) {
	p, c := borrowOne(t)
	finish := putPaused(t, c)
	got := queueGet(t, p)
	require.NoError(t, finish())
	c2 := <-got
	require.NotNil(t, c2)
	require.NoError(t, c2.Close())
}

// TestPutIdleClosesConnPushedAfterClose stops a Put the same way, closes
// the pool meanwhile, and lets the Put go on: the conn it pushes after
// Close emptied the idle stack must be closed, and Shutdown must wait for
// that.
func TestPutIdleClosesConnPushedAfterClose(t *testing.T) {
	p, c := borrowOne(t)
	fc := c.pc.nc.(*fakeconn.Conn)
	finish := putPaused(t, c)

	shut := make(chan error)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- p.Shutdown(ctx)
	}()
	require.Eventually(t, func() bool { return p.closed.Load() }, 5*time.Second, time.Millisecond)
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) before the borrowed conn came back", err)
	default:
	}
	require.NoError(t, finish())
	require.NoError(t, <-shut)
	assert.True(t, fc.Closed(), "conn pushed after Close left open")
	assert.Zero(t, p.Stats().OpenConns)
}

// TestConnRetiredAsItIsPushedIsNotHandedOut flags a conn past its
// lifetime while a Put is between its checks and its push, as the reaper
// may: the conn must be closed, not handed out again.
func TestConnRetiredAsItIsPushedIsNotHandedOut(t *testing.T) {
	p, c := borrowOne(t)
	old := c.pc
	finish := putPaused(t, c)
	retire(p, old)
	require.NoError(t, finish())

	c2, err := p.Get(context.Background())
	require.NoError(t, err)
	assert.NotSame(t, old, c2.pc, "a retired conn was handed out")
	assert.True(t, old.nc.(*fakeconn.Conn).Closed())
	st := p.Stats()
	assert.Equal(t, int64(1), st.LifetimeClosed)
	assert.Equal(t, int64(2), st.Dials)
	require.NoError(t, c2.Close())
}

// TestRetiredConnServedToWaiterIsClosed is the same race with a Get
// queued meanwhile: the retired conn must not reach the waiting Get, which
// gets a fresh dial.
func TestRetiredConnServedToWaiterIsClosed(t *testing.T) {
	p, c := borrowOne(t)
	old := c.pc
	finish := putPaused(t, c)
	retire(p, old)
	got := queueGet(t, p)
	require.NoError(t, finish())
	c2 := <-got
	require.NotNil(t, c2)
	assert.NotSame(t, old, c2.pc, "a retired conn was handed to a waiter")
	assert.Equal(t, int64(1), p.Stats().LifetimeClosed)
	require.NoError(t, c2.Close())
}

// TestQueuedBalancesUnderCancellation hammers a small pool with Gets whose
// contexts end at random, some before and some after they queue, and then
// checks that queued came back to zero: a count left behind would send
// every later Put down the slow path, and one lost would let a Put strand
// a conn behind a waiter.
func TestQueuedBalancesUnderCancellation(t *testing.T) {
	p, err := New("fake", "fake:0", WithMaxConns(2), WithDialer(fakeconn.Dial))
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 500 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration((w+i)%4)*20*time.Microsecond)
				c, err := p.Get(ctx)
				cancel()
				if err == nil {
					runtime.Gosched() // hold the conn while others run, so they queue
					assert.NoError(t, c.Close())
				}
			}
		})
	}
	wg.Wait()
	assert.NoError(t, p.CheckInvariants())
	assert.Zero(t, p.queued.Load())
	p.mu.Lock()
	assert.Zero(t, p.waiters.Len())
	p.mu.Unlock()
	st := p.Stats()
	assert.Equal(t, st.OpenConns, st.Idle, "every conn back and idle")
	assert.Positive(t, st.WaitCount, "some Gets queued")
	assert.Positive(t, st.Timeouts, "some contexts ended")
}
