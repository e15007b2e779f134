package clock

import (
	"testing"
	"time"
)

// TestEpochCountsFromItsStart pins that a reading is the time since the
// start, that Time turns it back into that instant, and that a later
// epoch starts no earlier.
func TestEpochCountsFromItsStart(t *testing.T) {
	before := time.Now()
	e := NewEpoch()
	now := e.Now()
	after := time.Now()
	if now < 0 || now > int64(after.Sub(before)) {
		t.Fatalf("Now() = %v, want within [0, %v]", time.Duration(now), after.Sub(before))
	}
	if at := e.Time(now); at.Before(before) || at.After(after) {
		t.Fatalf("Time(Now()) = %v, want between %v and %v", at, before, after)
	}
	if gap := NewEpoch().Time(0).Sub(e.Time(0)); gap < 0 {
		t.Fatalf("a later epoch starts %v before an earlier one", gap)
	}
}
