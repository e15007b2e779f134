package connpool_test

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

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/internal/fakeconn"
)

// tagConn is an in-memory conn that tells its dial apart: its local port
// is its dial's number.
type tagConn struct {
	fakeconn.Conn
	id int
}

func (c *tagConn) LocalAddr() net.Addr { return &net.TCPAddr{Port: c.id} }

// TestHammerHandOffAtCancel hammers the instant a waiter's context ends as
// a conn is handed to it, with waiter records recycled from each wait to
// the next: 16 goroutines with random deadlines of up to 40µs share 3
// in-memory conns, whose holders return them together, each time a
// driver moves a gate, so that many hand-offs meet many deadlines; a
// quarter of them call DialContext, whose dials are delivered to waiter
// records that may have been recycled meanwhile. It pins the race of a
// hand-off sent after mu is released (send) with the waiter leaving
// (leave), and the record reuse guard (newWaiterElem): no conn is held by
// two borrowers at once or lost, the ledger balances throughout, every
// Get served is counted once as a hit or a miss, and every conn dialed
// is closed with the pool.
func TestHammerHandOffAtCancel(t *testing.T) {
	rounds := 3000
	if testing.Short() {
		rounds = 300
	}
	var (
		dialMu sync.Mutex
		dialed []*tagConn
	)
	dial := func(context.Context, string, string) (net.Conn, error) {
		dialMu.Lock()
		defer dialMu.Unlock()
		c := &tagConn{id: len(dialed) + 1}
		dialed = append(dialed, c)
		return c, nil
	}
	p, err := connpool.New("tcp", "fake:0", connpool.WithMaxConns(3), connpool.WithDialer(dial),
		connpool.WithLivenessCheck(false))
	require.NoError(t, err)
	stopWatch := watchLedger(t, p)

	var gate atomic.Int64 // holders return their conns when it moves
	stopDriver := make(chan struct{})
	var driver sync.WaitGroup
	driver.Go(func() {
		for {
			select {
			case <-stopDriver:
				return
			default:
			}
			gate.Add(1)
			runtime.Gosched()
		}
	})

	var (
		owners                  sync.Map // dial number -> *atomic.Int64, the holder's id or 0
		doubles, served, failed atomic.Int64
		firstErr                atomic.Value
		workers                 sync.WaitGroup
	)
	for w := range 16 {
		workers.Go(func() {
			who := int64(w + 1)
			for range rounds {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rand.IntN(40))*time.Microsecond)
				var c net.Conn
				var err error
				if w%4 == 0 {
					c, err = p.DialContext(ctx, "tcp", "fake:0")
				} else {
					c, err = p.Get(ctx)
				}
				cancel()
				if err != nil {
					if !errors.Is(err, context.DeadlineExceeded) {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err)
					}
					continue
				}
				served.Add(1)
				v, _ := owners.LoadOrStore(c.LocalAddr().(*net.TCPAddr).Port, new(atomic.Int64))
				owner := v.(*atomic.Int64)
				if !owner.CompareAndSwap(0, who) {
					doubles.Add(1)
				}
				for g := gate.Load(); gate.Load() == g; {
					runtime.Gosched()
				}
				if !owner.CompareAndSwap(who, 0) {
					doubles.Add(1)
				}
				if err := c.Close(); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		})
	}
	workers.Wait()
	close(stopDriver)
	driver.Wait()
	stopWatch()

	assert.Zero(t, failed.Load(), "unexpected errors, the first: %v", firstErr.Load())
	assert.Zero(t, doubles.Load(), "conns held by two borrowers at once")
	assert.Positive(t, served.Load())
	st := p.Stats()
	assert.Positive(t, st.Timeouts, "no deadline ended a wait: the race was not hit")
	assert.Positive(t, st.WaitCount)
	assert.Zero(t, st.InUse)
	assert.Zero(t, st.Waiting)
	assert.Equal(t, served.Load(), st.Hits+st.Misses, "each Get served counts once, as a hit or a miss")
	checkBooks(t, st)
	require.NoError(t, p.Close()) // waits for the dials of waiters that left
	dialMu.Lock()
	defer dialMu.Unlock()
	assert.Equal(t, int64(len(dialed)), p.Stats().Dials, "conns dialed, against Stats.Dials")
	for _, c := range dialed {
		assert.True(t, c.Closed(), "conn %d left open after Close", c.id)
	}
}

// TestRecycledWaiterMissesTheDialOfItsEarlierUse pins the guard of
// recycled waiter records (newWaiterElem, dialOp.forWaiterLocked): a dial
// started for a Get that then left must not deliver its conn to a later
// Get that took the same record, ahead of the Get queued first; the conn
// goes to the first waiter. GOMAXPROCS 1 makes the later Get take the
// very record the first one gave back (sync.Pool's per-P slot); with
// another record the test passes trivially.
func TestRecycledWaiterMissesTheDialOfItsEarlierUse(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	gate := make(chan struct{})
	started := make(chan struct{}, 4)
	var dials atomic.Int64
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		if dials.Add(1) > 1 { // the first dial is the held conn's; the second waits at the gate
			started <- struct{}{}
			<-gate
		}
		return &fakeconn.Conn{}, nil
	}
	p, err := connpool.New("tcp", "fake:0", connpool.WithMaxConns(2), connpool.WithMaxConnecting(1),
		connpool.WithDialer(dial), connpool.WithLivenessCheck(false))
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	held := getConn(t, p)

	type result struct {
		name string
		c    *connpool.Conn
		err  error
	}
	results := make(chan result, 3)
	get := func(ctx context.Context, name string) {
		c, err := p.Get(ctx)
		results <- result{name, c, err}
	}
	ctxA, cancelA := context.WithCancel(context.Background())
	go get(ctxA, "A") // queues and starts the dial, which waits at the gate
	<-started
	go get(context.Background(), "W") // queues behind A, at the cap
	require.Eventually(t, func() bool { return p.Stats().Waiting == 2 }, waitFor, tick)
	cancelA()
	a := <-results
	require.Equal(t, "A", a.name)
	require.ErrorIs(t, a.err, context.Canceled)
	go get(context.Background(), "B") // takes A's record, most likely
	require.Eventually(t, func() bool { return p.Stats().Waiting == 2 }, waitFor, tick)

	close(gate) // A's dial ends: its conn is for the first waiter, W
	var first result
	select {
	case first = <-results:
	case <-time.After(waitFor):
		t.Fatal("no waiter was served by the dial")
	}
	require.NoError(t, first.err)
	assert.Equal(t, "W", first.name, "the dial of A's record went to the Get that reused it")
	require.NoError(t, first.c.Close()) // now to the other waiter
	second := <-results
	require.NoError(t, second.err)
	require.NoError(t, second.c.Close())
	require.NoError(t, held.Close())
	require.NoError(t, p.CheckInvariants())
}
