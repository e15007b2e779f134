package connpool

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
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
