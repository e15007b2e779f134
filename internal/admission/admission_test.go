package admission

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const ms = int64(time.Millisecond)

func lifo() Policy {
	return Policy{AdaptiveLIFO: true, Target: 5 * time.Millisecond, Interval: 100 * time.Millisecond, ShedAfter: 100 * time.Millisecond}
}

// TestNoEvidenceAdmitsAll: before MinSamples serves, even a Get whose
// deadline has passed is admitted: the pool has no figure to refuse it on.
func TestNoEvidenceAdmitsAll(t *testing.T) {
	c := New(Policy{Deadline: true})
	now := int64(0)
	c.Arrive(now, 0, time.Second, true)
	for range MinSamples - 1 {
		now += 10 * ms
		c.Served(now, 0, 5)
		est, ok := c.Arrive(now, 100, 0, true)
		require.True(t, ok)
		require.Zero(t, est)
	}
	now += 10 * ms
	c.Served(now, 0, 5)
	_, ok := c.Arrive(now, 100, 0, true)
	assert.False(t, ok, "with evidence, a Get with no time left is refused")
}

// TestDeadlineAdmission: one serve every 10ms; a Get behind 9 waiters
// expects 100ms, so one with 99ms left is refused and one with 100ms is
// admitted; a Get without a deadline always is.
func TestDeadlineAdmission(t *testing.T) {
	c := New(Policy{Deadline: true})
	now := int64(0)
	c.Arrive(now, 0, 0, false)
	for range 20 {
		now += 10 * ms
		c.Served(now, 0, 9)
	}
	assert.Equal(t, 10*time.Millisecond, c.Gap())
	est, ok := c.Arrive(now, 9, 99*time.Millisecond, true)
	assert.False(t, ok)
	assert.Equal(t, 100*time.Millisecond, est)
	_, ok = c.Arrive(now, 9, 100*time.Millisecond, true)
	assert.True(t, ok)
	_, ok = c.Arrive(now, 1000, 0, false)
	assert.True(t, ok, "no deadline: admitted")

	// The queue stalls: 50ms without a serve makes the gap under way the
	// estimate, before the next serve.
	now += 50 * ms
	est, ok = c.Arrive(now, 1, 99*time.Millisecond, true)
	assert.False(t, ok)
	assert.Equal(t, 100*time.Millisecond, est)
}

// TestIdleTimeIsNotDrainTime: time with an empty queue does not count as
// a gap: the first serve after the queue filled again is measured from
// the arrival that filled it.
func TestIdleTimeIsNotDrainTime(t *testing.T) {
	c := New(Policy{Deadline: true})
	now := int64(0)
	c.Arrive(now, 0, 0, false)
	for range 20 {
		now += 2 * ms
		c.Served(now, 0, 3)
	}
	now += 2 * ms
	c.Served(now, 0, 0) // drained
	now += 10 * int64(time.Second)
	c.Arrive(now, 0, 0, false) // fills again
	now += 2 * ms
	c.Served(now, 0, 1)
	assert.Equal(t, 2*time.Millisecond, c.Gap())
}

// TestCoDelEntersAndLeavesOverload drives a standing queue with a fake
// clock: a window whose least standing wait is above Target turns the
// next one LIFO and shedding; a window where it dipped below turns it
// back; a drained queue is FIFO at once.
func TestCoDelEntersAndLeavesOverload(t *testing.T) {
	c := New(lifo())
	now := int64(0)
	c.Arrive(now, 0, 0, false)
	serve := func(oldest time.Duration) { now += ms; c.Served(now, oldest, 10) }
	// Window 1 (100ms): the standing wait stays at 6ms or more.
	for range 100 {
		serve(6 * time.Millisecond)
		require.False(t, c.LIFO(), "not before a whole window")
	}
	serve(20 * time.Millisecond) // closes window 1
	assert.True(t, c.LIFO())
	assert.True(t, c.Shed(101*time.Millisecond))
	assert.False(t, c.Shed(100*time.Millisecond), "the bound itself is kept")

	// Window 2: one serve at 4ms standing wait, under Target.
	serve(4 * time.Millisecond)
	for range 98 {
		serve(50 * time.Millisecond)
	}
	assert.True(t, c.LIFO(), "still overloaded until window 2 closes")
	serve(50 * time.Millisecond)
	assert.False(t, c.LIFO(), "window 2 dipped under Target")
	assert.False(t, c.Shed(time.Hour))

	// Window 3 overloaded again, then the queue drains.
	for range 101 {
		serve(50 * time.Millisecond)
	}
	require.True(t, c.LIFO())
	now += ms
	c.Served(now, 50*time.Millisecond, 0)
	assert.False(t, c.LIFO(), "a drained queue is FIFO at once")
}

// TestCoDelStaysFIFOBelowTarget: a queue that always waits, but under
// Target, never goes LIFO.
func TestCoDelStaysFIFOBelowTarget(t *testing.T) {
	c := New(lifo())
	now := int64(0)
	c.Arrive(now, 0, 0, false)
	for range 1000 {
		now += ms
		c.Served(now, 5*time.Millisecond, 3)
		require.False(t, c.LIFO())
	}
}

// TestArrivalAtEmptyQueueDrains: an arrival that finds no waiter ends
// the overload even if no serve saw the queue empty (its last waiters
// left on their own).
func TestArrivalAtEmptyQueueDrains(t *testing.T) {
	c := New(lifo())
	now := int64(0)
	for range 202 {
		now += ms
		c.Served(now, time.Second, 5)
	}
	require.True(t, c.LIFO())
	c.Arrive(now, 0, 0, false)
	assert.False(t, c.LIFO())
}

// TestLIFOEstimatesOneGap: while serving newest first, a new Get is next
// in line whatever the queue's length, and admission says so.
func TestLIFOEstimatesOneGap(t *testing.T) {
	p := lifo()
	p.Deadline = true
	c := New(p)
	now := int64(0)
	for range 202 {
		now += ms
		c.Served(now, time.Second, 50)
	}
	require.True(t, c.LIFO())
	est, ok := c.Arrive(now, 50, 2*time.Millisecond, true)
	assert.True(t, ok)
	assert.Equal(t, time.Millisecond, est)
}

// TestSimulatedOverload runs a queue served every 10ms, fed every 5ms
// (200% load) by Gets with a 100ms deadline, under each policy, and
// checks what each promises: FIFO serves Gets that waited about their
// whole deadline; deadline admission turns away at once about half of
// them and serves the rest in time; adaptive LIFO serves Gets that
// waited little and sheds the old ones.
func TestSimulatedOverload(t *testing.T) {
	type get struct {
		at       int64
		deadline int64
	}
	run := func(p Policy, on bool) (served []time.Duration, refused, shed, timedOut int) {
		c := New(p)
		var q []get
		now := int64(0)
		for step := range 2000 { // 2s, 1ms a step: 400 arrivals, 200 serves
			now = int64(step) * ms
			// Timeouts: a Get whose deadline passed leaves.
			kept := q[:0]
			for _, g := range q {
				if now >= g.deadline {
					timedOut++
					continue
				}
				kept = append(kept, g)
			}
			q = kept
			if step%5 == 0 {
				g := get{at: now, deadline: now + 100*ms}
				ok := true
				if on {
					_, ok = c.Arrive(now, len(q), time.Duration(g.deadline-now), true)
				}
				if ok {
					q = append(q, g)
				} else {
					refused++
				}
			}
			if step%10 == 9 && len(q) > 0 {
				if on {
					for len(q) > 0 && c.Shed(time.Duration(now-q[0].at)) {
						q, shed = q[1:], shed+1
					}
				}
				if len(q) == 0 {
					continue
				}
				oldest := time.Duration(now - q[0].at)
				var g get
				if on && c.LIFO() {
					g, q = q[len(q)-1], q[:len(q)-1]
				} else {
					g, q = q[0], q[1:]
				}
				served = append(served, time.Duration(now-g.at))
				if on {
					c.Served(now, oldest, len(q))
				}
			}
		}
		return
	}
	p95 := func(d []time.Duration) time.Duration {
		s := append([]time.Duration(nil), d...)
		for i := range s { // insertion sort: small
			for j := i; j > 0 && s[j] < s[j-1]; j-- {
				s[j], s[j-1] = s[j-1], s[j]
			}
		}
		return s[len(s)*95/100]
	}

	fifo, _, _, fifoTO := run(Policy{}, false)
	require.NotEmpty(t, fifo)
	assert.Greater(t, p95(fifo), 80*time.Millisecond, "FIFO: a standing queue near the deadline")
	assert.Greater(t, fifoTO, 150)

	dl, refused, _, dlTO := run(Policy{Deadline: true}, true)
	assert.GreaterOrEqual(t, len(dl), len(fifo)-1, "as many served")
	assert.Greater(t, refused, 150, "about half turned away at once")
	assert.Less(t, dlTO, 10, "few admitted Gets time out")

	lf, _, shed, lfTO := run(lifo(), true)
	assert.GreaterOrEqual(t, len(lf), len(fifo)-1, "as many served")
	assert.Less(t, p95(lf), 20*time.Millisecond, "LIFO serves fresh Gets")
	assert.Positive(t, shed+lfTO)
}
