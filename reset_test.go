package connpool_test

import (
	"context"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
)

// seqDialer numbers every socket it dials, in the order its dials start.
type seqDialer struct{ n atomic.Int64 }

type seqConn struct {
	net.Conn
	seq int64
}

func (d *seqDialer) dial(ctx context.Context, network, address string) (net.Conn, error) {
	seq := d.n.Add(1)
	var nd net.Dialer
	c, err := nd.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return &seqConn{Conn: c, seq: seq}, nil
}

func seqOf(c *connpool.Conn) int64 { return c.Unwrap().(*seqConn).seq }

// TestResetRetiresOlderConns: idle conns close at once, a borrowed one
// closes on return, a waiter keeps waiting and is served by a new dial.
func TestResetRetiresOlderConns(t *testing.T) {
	srv := startServer(t)
	d := &seqDialer{}
	log := newEventLog()
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(2), connpool.WithDialer(d.dial), connpool.WithHooks(log.hooks()))
	conns := holdAll(t, p, 2)
	require.NoError(t, conns[0].Close()) // idle
	borrowed := conns[1]

	require.NoError(t, p.Reset())
	st := p.Stats()
	assert.Equal(t, int64(1), st.ResetClosed, "the idle conn closed at once")
	assert.Equal(t, 1, st.InUse)

	got := make(chan *connpool.Conn, 1)
	go func() {
		c, err := p.Get(context.Background())
		if err != nil {
			c = nil
		}
		got <- c
	}()
	c := <-got // the freed slot dials for it
	require.NotNil(t, c)
	assert.Equal(t, int64(3), seqOf(c), "a conn dialed after the Reset")
	mustRoundTrip(t, c, "new")

	mustRoundTrip(t, borrowed, "still works for its borrower")
	require.NoError(t, borrowed.Close())
	assert.Equal(t, int64(2), p.Stats().ResetClosed, "the borrowed conn closed on return")
	require.NoError(t, c.Close())
	next := getConn(t, p)
	assert.Equal(t, int64(3), seqOf(next), "the new conn is reused")
	require.NoError(t, next.Close())
	log.mu.Lock()
	assert.Equal(t, 1, log.reset, "one PoolReset event")
	log.mu.Unlock()
	checkBooks(t, p.Stats())
	require.NoError(t, p.CheckInvariants())
	require.NoError(t, p.Close())
	assert.ErrorIs(t, p.Reset(), connpool.ErrClosed)
}

// TestResetRacingGetsAndPuts resets a busy pool over and over: no Get
// that starts after a Reset returns may return a conn whose dial started
// before that Reset began. Gets come from Get and DialContext, with
// contexts that end at random; the ledger is checked throughout.
func TestResetRacingGetsAndPuts(t *testing.T) {
	srv := startServer(t)
	d := &seqDialer{}
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(4), connpool.WithMinIdle(2), connpool.WithDialer(d.dial))
	stopWatch := watchLedger(t, p)
	var floor atomic.Int64 // conns numbered at most this are older than the last Reset
	var stale, served atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			for {
				select {
				case <-stop:
					return
				default:
				}
				before := floor.Load()
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rng.IntN(5000))*time.Microsecond)
				var c *connpool.Conn
				var err error
				if w%4 == 0 {
					var nc net.Conn
					if nc, err = p.DialContext(ctx, "tcp", srv.Addr()); err == nil {
						c = nc.(*connpool.Conn)
					}
				} else {
					c, err = p.Get(ctx)
				}
				cancel()
				if err != nil {
					continue
				}
				if seqOf(c) <= before {
					stale.Add(1)
				}
				served.Add(1)
				_ = c.Close()
			}
		})
	}
	for range 50 {
		seq := d.n.Load()
		require.NoError(t, p.Reset())
		floor.Store(seq)
		n := served.Load() // let some Gets run between Resets
		require.Eventually(t, func() bool { return served.Load() >= n+4 }, waitFor, 100*time.Microsecond)
	}
	close(stop)
	wg.Wait()
	stopWatch()
	assert.Zero(t, stale.Load(), "Gets returned conns dialed before a Reset")
	assert.Positive(t, p.Stats().ResetClosed)
	checkBooks(t, p.Stats())
}

// TestResetRacingClose: Reset and Close at once leave a closed pool with
// nothing open, whichever wins.
func TestResetRacingClose(t *testing.T) {
	srv := startServer(t)
	for range 50 {
		p := newPool(t, srv.Addr(), connpool.WithMaxConns(2), connpool.WithMinIdle(2))
		require.NoError(t, p.WaitReady(context.Background()))
		var wg sync.WaitGroup
		wg.Go(func() {
			if err := p.Reset(); err != nil {
				assert.ErrorIs(t, err, connpool.ErrClosed)
			}
		})
		wg.Go(func() { assert.NoError(t, p.Close()) })
		wg.Wait()
		require.NoError(t, p.CheckInvariants())
		st := p.Stats()
		assert.Zero(t, st.OpenConns)
		checkBooks(t, st)
	}
}
