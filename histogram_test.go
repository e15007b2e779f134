package connpool_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
)

func TestHistogramQuantile(t *testing.T) {
	var h connpool.Histogram
	assert.Zero(t, h.Quantile(0.5))
	assert.Equal(t, "n=0", h.String())
	h.Buckets[0] = 50 // up to 50µs
	h.Buckets[3] = 49 // (200µs, 400µs]
	h.Buckets[connpool.HistogramBuckets] = 1
	assert.Equal(t, uint64(100), h.Count())
	assert.Equal(t, connpool.HistogramFirstBound, h.Quantile(0.5))
	assert.Equal(t, 400*time.Microsecond, h.Quantile(0.99))
	assert.Equal(t, connpool.HistogramBound(connpool.HistogramBuckets), h.Quantile(1))
	assert.Equal(t, 50*time.Microsecond<<15, connpool.HistogramBound(15))
}

// TestStatsHistogramsAgreeWithCounters: the wait histogram counts what
// WaitCount and WaitDuration do, the dial histogram every dial, and the
// use histogram every return, only when asked for.
func TestStatsHistogramsAgreeWithCounters(t *testing.T) {
	srv := startServer(t)
	for _, useTime := range []bool{false, true} {
		p := newPool(t, srv.Addr(), connpool.WithMaxConns(2), connpool.WithUseTimeMetrics(useTime))
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 50 {
					c, err := p.Get(context.Background())
					if !assert.NoError(t, err) {
						return
					}
					_, err = roundTrip(c, "x")
					assert.NoError(t, err)
					assert.NoError(t, c.Close())
				}
			})
		}
		wg.Wait()
		st := p.Stats()
		require.Positive(t, st.WaitCount)
		assert.Equal(t, uint64(st.WaitCount), st.WaitTime.Count())
		assert.Equal(t, st.WaitDuration, st.WaitTime.Sum)
		assert.Equal(t, uint64(st.Dials), st.DialTime.Count())
		assert.Positive(t, st.DialTime.Sum)
		if useTime {
			assert.Equal(t, uint64(400), st.UseTime.Count())
		} else {
			assert.Zero(t, st.UseTime.Count())
		}
		assert.Contains(t, st.String(), st.Name+": open ")
		assert.Contains(t, st.String(), "; wait n=")
	}
}

func TestStatsOldestWait(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(1))
	held := holdAll(t, p, 1)[0]
	assert.Zero(t, p.Stats().OldestWait)
	got := make(chan error, 1)
	go func() {
		c, err := p.Get(context.Background())
		if err == nil {
			err = c.Close()
		}
		got <- err
	}()
	require.Eventually(t, waitersAre(p, 1), waitFor, tick)
	first := p.Stats().OldestWait
	require.Eventually(t, func() bool { return p.Stats().OldestWait > first }, waitFor, tick)
	assert.Contains(t, p.Stats().String(), "waiting 1 (oldest ")
	require.NoError(t, held.Close())
	require.NoError(t, <-got)
	assert.Zero(t, p.Stats().OldestWait)
}

// TestCloseReasonsCoverStats: every close reason has its Stats counter,
// and the counters add up to the closes the books count.
func TestCloseReasonsCoverStats(t *testing.T) {
	var s connpool.Stats
	for i, r := range connpool.CloseReasons() {
		*closeCounter(&s, r) = int64(i + 1)
	}
	var sum int64
	for i, r := range connpool.CloseReasons() {
		assert.Equal(t, int64(i+1), s.Closed(r), "%v", r)
		sum += s.Closed(r)
	}
	assert.Equal(t, closedTotal(s), sum, "closedTotal knows every reason")
	assert.Zero(t, s.Closed(0))
}

// TestUseTimeMeasuresTheHold: each way of borrowing and returning a conn
// (the plain path, TryGet, a broken conn's return, DialContext) adds its
// hold, no less than the time the test held it, to the use histogram.
func TestUseTimeMeasuresTheHold(t *testing.T) {
	const hold = 3 * time.Millisecond
	srv := startServer(t)
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(2), connpool.WithUseTimeMetrics(true))
	ctx := context.Background()
	borrow := []func() (*connpool.Conn, error){ // in this order: TryGet takes the conn the first way returned
		func() (*connpool.Conn, error) { return p.Get(ctx) },
		p.TryGet,
		func() (*connpool.Conn, error) {
			c, err := p.Get(ctx)
			if err == nil {
				c.MarkUnusable()
			}
			return c, err
		},
		func() (*connpool.Conn, error) {
			nc, err := p.DialContext(ctx, "tcp", srv.Addr())
			if err != nil {
				return nil, err
			}
			return nc.(*connpool.Conn), nil
		},
	}
	var outer time.Duration // each hold as the test saw it, from before the Get to after the Close
	for i, get := range borrow {
		start := time.Now()
		c, err := get()
		require.NoError(t, err, "way %d", i)
		<-time.After(hold)
		require.NoError(t, c.Close())
		outer += time.Since(start)
		h := p.Stats().UseTime
		assert.Equal(t, uint64(i+1), h.Count())
		assert.GreaterOrEqual(t, h.Sum, time.Duration(i+1)*hold, "way %d", i)
		assert.LessOrEqual(t, h.Sum, outer+time.Millisecond, "way %d", i)
		assert.Zero(t, h.Buckets[0], "no hold fell in the first bucket (50µs)")
	}
}
