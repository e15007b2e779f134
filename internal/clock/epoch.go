package clock

import "time"

// Epoch is a pool's clock: nanoseconds of the monotonic clock since the
// pool was made. Its readings compare within one pool; Time turns one
// into a time.Time, to compare across pools.
type Epoch struct{ start time.Time }

// NewEpoch returns a clock that reads 0 now.
func NewEpoch() Epoch { return Epoch{start: time.Now()} }

// Now reads the clock. time.Since on a monotonic start reads only the
// monotonic clock, half the cost of time.Now.
func (e Epoch) Now() int64 { return int64(time.Since(e.start)) }

// Time returns the instant the clock read at.
func (e Epoch) Time(at int64) time.Time { return e.start.Add(time.Duration(at)) }
