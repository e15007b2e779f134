package connpool_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/internal/fakeconn"
)

// recordingDialer dials in-memory conns and keeps them, so that a test can
// check every conn the pool ever had.
type recordingDialer struct {
	mu    sync.Mutex
	conns []*fakeconn.Conn
}

func (d *recordingDialer) dial(context.Context, string, string) (net.Conn, error) {
	c := &fakeconn.Conn{}
	d.mu.Lock()
	d.conns = append(d.conns, c)
	d.mu.Unlock()
	return c, nil
}

func (d *recordingDialer) open() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, c := range d.conns {
		if !c.Closed() {
			n++
		}
	}
	return n
}

// TestPutServesGetThatQueuedMeanwhile races Puts, which push to the idle
// stack without the pool lock, against Gets that find the stack empty and
// queue. A conn pushed just after a Get looked would sit idle while that
// Get waits; with one conn, every Get would then wait until its context
// ended.
func TestPutServesGetThatQueuedMeanwhile(t *testing.T) {
	p := newPool(t, "fake:0", connpool.WithMaxConns(1), connpool.WithDialer(fakeconn.Dial))
	const workers, rounds = 8, 3000
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range rounds {
				ctx, cancel := context.WithTimeout(context.Background(), waitFor)
				c, err := p.Get(ctx)
				cancel()
				if !assert.NoError(t, err, "a Get waited while the conn sat idle") {
					return
				}
				assert.NoError(t, c.Close())
			}
		})
	}
	wg.Wait()
	st := p.Stats()
	checkBooks(t, st)
	assert.Equal(t, int64(1), st.Dials)
	assert.Equal(t, int64(workers*rounds), st.Hits+st.Misses)
}

// borrowAllThenReturn borrows every conn of a new pool of n in-memory
// conns and returns them all from their own goroutines; the caller closes
// the pool meanwhile and waits for the returns with the WaitGroup.
func borrowAllThenReturn(t *testing.T, n int) (*connpool.Pool, *recordingDialer, *sync.WaitGroup) {
	t.Helper()
	d := &recordingDialer{}
	p, err := connpool.New("fake", "fake:0", connpool.WithMaxConns(n), connpool.WithDialer(d.dial))
	require.NoError(t, err)
	borrowed := make([]*connpool.Conn, n)
	for i := range borrowed {
		borrowed[i], err = p.Get(context.Background())
		require.NoError(t, err)
	}
	var wg sync.WaitGroup
	for _, c := range borrowed {
		wg.Go(func() { assert.NoError(t, c.Close()) })
	}
	return p, d, &wg
}

// TestPutRacingCloseClosesTheConn returns conns while the pool closes: a
// Put that pushed its conn as Close emptied the idle stack must close it
// itself, or it stays open for good.
func TestPutRacingCloseClosesTheConn(t *testing.T) {
	const conns = 8
	for range 200 {
		p, d, returns := borrowAllThenReturn(t, conns)
		require.NoError(t, p.Close())
		returns.Wait()
		require.Zero(t, d.open(), "conns left open after Close and every Put")
		st := p.Stats()
		require.Zero(t, st.OpenConns)
		require.Equal(t, int64(conns), st.PoolClosed)
	}
}

// TestShutdownWaitsForRacingPuts checks that Shutdown does not report the
// pool drained while a conn returned at the moment it closed is still
// open.
func TestShutdownWaitsForRacingPuts(t *testing.T) {
	for range 200 {
		p, d, returns := borrowAllThenReturn(t, 8)
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		require.NoError(t, p.Shutdown(ctx))
		cancel()
		open := d.open()
		returns.Wait()
		require.Zero(t, open, "Shutdown returned with conns open")
	}
}

// TestFastGetBelowMinIdleWarms takes idle conns through the lock-free
// path and checks that warming still refills MinIdle straight away, with
// no background tick to fall back on.
func TestFastGetBelowMinIdleWarms(t *testing.T) {
	p := newPool(t, "fake:0", connpool.WithMaxConns(8), connpool.WithMinIdle(2),
		connpool.WithDialer(fakeconn.Dial), connpool.WithIdleTimeout(time.Hour))
	require.Eventually(t, func() bool { return p.Stats().Idle == 2 }, waitFor, tick)
	var held []*connpool.Conn
	for range 4 {
		c, err := p.Get(context.Background())
		require.NoError(t, err)
		held = append(held, c)
		require.Eventually(t, func() bool { return p.Stats().Idle == 2 }, waitFor, tick)
	}
	for _, c := range held {
		require.NoError(t, c.Close())
	}
	checkBooks(t, p.Stats())
}
