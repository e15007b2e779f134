package connpool

import (
	"fmt"
	"math/bits"
	"strings"
	"sync/atomic"
	"time"
)

// HistogramBuckets is the number of bounded buckets of a [Histogram]: the
// upper bounds start at [HistogramFirstBound] and double, to 50µs × 2¹⁵ ≈
// 1.64s; one more bucket counts what lies above the last bound.
const HistogramBuckets = 16

// HistogramFirstBound is the upper bound of a [Histogram]'s first bucket.
const HistogramFirstBound = 50 * time.Microsecond

// HistogramBound returns the upper bound of bucket i, for i from 0 to
// HistogramBuckets-1: HistogramFirstBound << i.
func HistogramBound(i int) time.Duration { return HistogramFirstBound << i }

// Histogram is a snapshot of a distribution of durations, kept by the
// pool in fixed exponential buckets: Buckets[i] counts the observations
// in (HistogramBound(i-1), HistogramBound(i)], Buckets[0] those up to the
// first bound, and Buckets[HistogramBuckets] those above the last. It is
// a plain value; the pool's own copy is updated with atomic adds.
type Histogram struct {
	Buckets [HistogramBuckets + 1]uint64
	Sum     time.Duration // of every observation
}

// Count returns the number of observations.
func (h Histogram) Count() uint64 {
	var n uint64
	for _, c := range h.Buckets {
		n += c
	}
	return n
}

// Quantile returns an upper estimate of the q-quantile (q in [0, 1]): the
// upper bound of the bucket that holds it, or, for the overflow bucket,
// twice the last bound. It returns 0 for an empty histogram.
func (h Histogram) Quantile(q float64) time.Duration {
	n := h.Count()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n) + 0.5)
	rank = min(max(rank, 1), n)
	var seen uint64
	for i, c := range h.Buckets {
		if seen += c; seen >= rank {
			return HistogramBound(i)
		}
	}
	return HistogramBound(HistogramBuckets)
}

// String summarizes h as "n=12 p50≤100µs p99≤1.6ms".
func (h Histogram) String() string {
	n := h.Count()
	if n == 0 {
		return "n=0"
	}
	return fmt.Sprintf("n=%d p50≤%v p99≤%v", n, h.Quantile(0.5), h.Quantile(0.99))
}

// histogram is the pool's live Histogram: atomic counts, no lock, no
// allocation, one clock read by the caller per observation.
type histogram struct {
	buckets [HistogramBuckets + 1]atomic.Uint64
	sum     atomic.Int64
}

// bucketOf returns the bucket of d: 0 up to the first bound, then one
// more for each doubling.
func bucketOf(d time.Duration) int {
	if d <= HistogramFirstBound {
		return 0
	}
	return min(bits.Len64(uint64((d-1)/HistogramFirstBound)), HistogramBuckets)
}

func (h *histogram) observe(d time.Duration) {
	h.buckets[bucketOf(d)].Add(1)
	h.sum.Add(int64(d))
}

func (h *histogram) snapshot() Histogram {
	var s Histogram
	for i := range h.buckets {
		s.Buckets[i] = h.buckets[i].Load()
	}
	s.Sum = time.Duration(h.sum.Load())
	return s
}

// String renders s on one line for a log: the name, the gauges, the
// counters that are not zero, and the histograms' quantiles.
func (s Stats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: open %d/%d (in use %d, idle %d, dialing %d), waiting %d",
		s.Name, s.OpenConns, s.MaxConns, s.InUse, s.Idle, s.Dialing, s.Waiting)
	if s.Waiting > 0 {
		fmt.Fprintf(&b, " (oldest %v)", s.OldestWait.Round(time.Microsecond))
	}
	fmt.Fprintf(&b, "; gets: hits %d, misses %d", s.Hits, s.Misses)
	for _, c := range []struct {
		name string
		n    int64
	}{
		{"waits", s.WaitCount}, {"timeouts", s.Timeouts}, {"too many waiters", s.TooManyWaiters},
		{"gets failed dialing", s.GetDialErrors}, {"gets after close", s.ClosedPoolGets},
		{"no idle conn", s.NoIdleConn}, {"invalid gets", s.InvalidGets},
		{"shed at once", s.ShedDeadline}, {"shed waiting", s.ShedOverload},
		{"dials", s.Dials}, {"dial errors", s.DialErrors},
		{"closed idle", s.IdleClosed}, {"closed lifetime", s.LifetimeClosed},
		{"closed unhealthy", s.HealthFailures}, {"closed broken", s.BrokenClosed},
		{"closed max idle", s.MaxIdleClosed}, {"released", s.ReleasedClosed},
		{"closed by pool", s.PoolClosed}, {"closed by reset", s.ResetClosed},
		{"detached", s.DetachedClosed}, {"leaked", s.LeakedClosed},
		{"closed by resize", s.ResizedClosed}, {"closed address removed", s.AddressRemovedClosed},
		{"rebalanced", s.RebalancedClosed}, {"resolve errors", s.ResolveErrors}, {"leaks reported", s.Leaks},
	} {
		if c.n != 0 {
			fmt.Fprintf(&b, ", %s %d", c.name, c.n)
		}
	}
	for _, h := range []struct {
		name string
		h    Histogram
	}{{"wait", s.WaitTime}, {"dial", s.DialTime}, {"use", s.UseTime}} {
		if h.h.Count() > 0 {
			fmt.Fprintf(&b, "; %s %v", h.name, h.h)
		}
	}
	return b.String()
}
