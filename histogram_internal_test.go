package connpool

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/connpool/connpool/internal/clock"
)

func TestBucketOf(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want int
	}{
		{0, 0},
		{50 * time.Microsecond, 0},
		{50*time.Microsecond + 1, 1},
		{100 * time.Microsecond, 1},
		{100*time.Microsecond + 1, 2},
		{time.Millisecond, 5}, // (800µs, 1.6ms]
		{HistogramBound(15), 15},
		{HistogramBound(15) + 1, HistogramBuckets},
		{time.Hour, HistogramBuckets},
	} {
		assert.Equal(t, tc.want, bucketOf(tc.d), "%v", tc.d)
		if tc.want < HistogramBuckets {
			assert.LessOrEqual(t, tc.d, HistogramBound(tc.want))
		}
		if tc.want > 0 {
			assert.Greater(t, tc.d, HistogramBound(tc.want-1))
		}
	}
}

// BenchmarkUseTimeCost takes apart what WithUseTimeMetrics adds to a
// Get+Put: the two clock reads, and the histogram's two atomic adds.
func BenchmarkUseTimeCost(b *testing.B) {
	var h histogram
	var sink time.Duration
	b.Run("part=observe", func(b *testing.B) {
		for b.Loop() {
			h.observe(120 * time.Microsecond)
		}
	})
	b.Run("part=stamps", func(b *testing.B) {
		for b.Loop() {
			sink += clock.Since(clock.Ticks())
		}
	})
	b.Run("part=both", func(b *testing.B) {
		for b.Loop() {
			h.observe(clock.Since(clock.Ticks()))
		}
	})
	_ = sink
}
