package clock_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/connpool/connpool/internal/clock"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestSinceAgreesWithNanotime: over a few milliseconds, the clock and the
// runtime's monotonic clock agree within 1% (the first rate is good to
// about 5e-4) and a few microseconds of reading apart.
func TestSinceAgreesWithNanotime(t *testing.T) {
	t.Logf("source: %s", clock.Source())
	for _, d := range []time.Duration{time.Millisecond, 5 * time.Millisecond, 20 * time.Millisecond} {
		start, n0 := clock.Ticks(), clock.Nanotime()
		for clock.Nanotime()-n0 < int64(d) {
		}
		got, want := clock.Since(start), time.Duration(clock.Nanotime()-n0)
		assert.InDelta(t, float64(want), float64(got), float64(want)/100+float64(20*time.Microsecond), "over %v", d)
	}
}

// TestSinceRefined: past the refinement (a second after the first
// reading), the rate is still right.
func TestSinceRefined(t *testing.T) {
	if testing.Short() {
		t.Skip("waits a second")
	}
	start, n0 := clock.Ticks(), clock.Nanotime()
	for clock.Nanotime()-n0 < int64(1100*time.Millisecond) {
		clock.Since(start) // passes the refinement point
	}
	got, want := clock.Since(start), time.Duration(clock.Nanotime()-n0)
	assert.InDelta(t, float64(want), float64(got), float64(want)/1000, "refined to better than 0.1%")
}

func TestSinceNeverNegative(t *testing.T) {
	assert.Zero(t, clock.Since(clock.Ticks()+int64(time.Hour)))
	now := clock.Ticks()
	assert.Zero(t, clock.Between(now, now-1))
	assert.Zero(t, clock.Between(now, now))
}

func TestBetweenIsSince(t *testing.T) {
	start := clock.Ticks()
	a := clock.Since(start)
	end := clock.Ticks()
	b := clock.Between(start, end)
	assert.GreaterOrEqual(t, b, a)
	assert.GreaterOrEqual(t, clock.Since(start), b)
}

func TestSinceMonotonic(t *testing.T) {
	start := clock.Ticks()
	prev := time.Duration(0)
	for range 10000 {
		d := clock.Since(start)
		require.GreaterOrEqual(t, d, prev)
		prev = d
	}
}

func TestSource(t *testing.T) {
	assert.Contains(t, []string{"tsc", "nanotime"}, clock.Source())
}

var sink int64

var epoch = time.Now()

// BenchmarkRead compares one reading of each monotonic clock the pool
// could use.
func BenchmarkRead(b *testing.B) {
	b.Run("src=time.Now", func(b *testing.B) {
		for b.Loop() {
			sink += time.Now().UnixNano()
		}
	})
	b.Run("src=time.Since", func(b *testing.B) {
		for b.Loop() {
			sink += int64(time.Since(epoch))
		}
	})
	b.Run("src=nanotime", func(b *testing.B) {
		for b.Loop() {
			sink += clock.Nanotime()
		}
	})
	b.Run("src=Ticks", func(b *testing.B) {
		for b.Loop() {
			sink += clock.Ticks()
		}
	})
}

// BenchmarkStamp measures what a Get and a Put pay together: a reading,
// and a duration since it.
func BenchmarkStamp(b *testing.B) {
	b.Run("src=time.Since", func(b *testing.B) {
		for b.Loop() {
			start := time.Since(epoch)
			sink += int64(time.Since(epoch) - start)
		}
	})
	b.Run("src=clock", func(b *testing.B) {
		for b.Loop() {
			sink += int64(clock.Since(clock.Ticks()))
		}
	})
}
