//go:build !(linux && amd64) || connpool_notsc

package clock

import "time"

// Source names what a tick counts: "tsc" or "nanotime".
func Source() string { return "nanotime" }

// Ticks reads the clock. Here a tick is a nanosecond of the runtime's
// monotonic clock.
func Ticks() int64 { return nanotime() }

// Since returns the time elapsed since start, a reading of Ticks; never
// negative.
func Since(start int64) time.Duration { return Between(start, nanotime()) }

// Between returns the time from start to end, two readings of Ticks;
// never negative.
func Between(start, end int64) time.Duration { return time.Duration(max(end-start, 0)) }
