// Package admission is the policy behind connpool's WithQueuePolicy: which
// Get waiting at the pool's cap is served next, and which are turned away
// under overload. It reads no clock and starts no goroutine: the caller
// passes the time with each call, under the lock that guards the queue,
// so the tests drive it through simulated overloads with a fake clock.
//
// Two parts, each on its own switch:
//
//   - Deadline admission. The controller keeps an estimate of how fast the
//     queue drains: the time between two serves while Gets waited (a gap
//     that begins when the queue goes from empty to not empty is measured
//     from then, so idle time is not read as a slow queue), the least of
//     the first MinSamples, then an EWMA whose samples are capped at
//     maxJump times the estimate. A Get about to queue behind n others
//     expects to wait n+1 gaps (one, while the queue is served newest
//     first); if its deadline is nearer, Arrive says no and the Get fails
//     at once instead of taking a place it would abandon. Without evidence
//     (fewer than MinSamples gaps since the controller began) every Get is
//     admitted. Every error is on the side of admitting: the least sample
//     to begin with, the cap on a long one. A version that read the gap
//     under way as the next gap, to see a stalled backend before its next
//     serve, turned away almost every Get of a stress test: a queue whose
//     Gets are served by dials, or left by their callers, has no serve to
//     end that gap (connpoolotel's TestObserveMatchesStatsUnderLoad shed
//     28,851 Gets and served 12).
//   - Adaptive LIFO with CoDel. The signal is the queue's standing wait:
//     the age of its oldest waiter at each serve. Once it has been above
//     Target at every serve for Interval (CoDel's test), the queue is
//     overloaded: the pool serves the newest waiter first, whose caller is
//     still there and whose deadline is furthest, and it sheds the
//     waiters older than ShedAfter, whose callers would only give up
//     later. The oldest waiter, not the one served, is measured, so that
//     serving the newest does not read as a cured queue. (CoDel proper
//     measures the packet it dequeues; Facebook's "Fail at Scale" pairs
//     CoDel with adaptive LIFO as done here.) When the queue drains, or
//     its oldest waiter has waited no more than Target, the controller is
//     back to first come, first served at once. ShedAfter must be well
//     above Target: shedding down to Target would itself end the
//     overload, and the queue would flip between the two orders (a
//     poolbench run with 10ms against 5ms served its median Get after
//     65ms at 200% load, against 23ms with 100ms).
//
// Overloaded windows were tried first (CoDel's interval as a fixed
// window, the overload decided at its end by its least standing wait):
// it took one to two intervals to see an overload, and the Gets served
// first come, first served meanwhile made the p99 at 200% load.
package admission

import "time"

// MinSamples is how many drain gaps the controller must have measured
// before deadline admission turns any Get away.
const MinSamples = 8

// ewmaShift is the weight of a new gap in the drain estimate: 1/8.
const ewmaShift = 3

// maxJump bounds a gap sample, in multiples of the estimate: a gap whose
// start is stale (the queue emptied by Gets that gave up, which the
// controller does not see, then filled again by a Get it did not see
// either) must not throw the estimate off, and a real slowdown still
// raises it by up to 3/8 a serve.
const maxJump = 4

// Policy configures a Controller. Durations must be positive when the
// part that uses them is on.
type Policy struct {
	Deadline     bool          // deadline admission
	AdaptiveLIFO bool          // adaptive LIFO with CoDel
	Target       time.Duration // the standing wait above which the queue may be overloaded
	Interval     time.Duration // how long the standing wait must stay above Target
	ShedAfter    time.Duration // while overloaded, waiters older than this are shed
}

// Controller is the state of one queue's policy. It is not safe for
// concurrent use: its caller guards it with the queue's lock.
type Controller struct {
	p Policy

	// The drain estimate.
	gap     int64 // EWMA of the nanoseconds between serves while Gets waited
	samples int   // gaps measured, up to MinSamples
	last    int64 // the last serve, or when the queue last went from empty to not: the start of the gap under way; unknown while known is false
	known   bool  // last is known: a Get may have filled the queue without Arrive (one the pool dialed for)

	// CoDel.
	aboveUntil int64 // 0, or: the standing wait has been above Target at every serve since, and overload begins at aboveUntil
	overloaded bool
}

// New returns a Controller for p.
func New(p Policy) *Controller { return &Controller{p: p} }

// Policy returns the policy c was made with.
func (c *Controller) Policy() Policy { return c.p }

// Arrive is told of a Get about to queue behind ahead waiters at now; left
// is the time to its deadline, if hasDeadline. It reports whether the Get
// should queue, and the wait the controller expects for it (0 without
// evidence). An arrival at an empty queue marks the queue drained.
func (c *Controller) Arrive(now int64, ahead int, left time.Duration, hasDeadline bool) (est time.Duration, ok bool) {
	if ahead == 0 {
		c.drained()
		c.last, c.known = now, true
	}
	if !c.p.Deadline || !hasDeadline || c.samples < MinSamples {
		return 0, true
	}
	ahead64 := int64(ahead)
	if c.LIFO() {
		ahead64 = 0
	}
	est = time.Duration((ahead64 + 1) * c.gap)
	return est, est <= left
}

// Served is told that the queue served a waiter at now, when its oldest
// waiter had waited oldest, leaving left waiters queued.
func (c *Controller) Served(now int64, oldest time.Duration, left int) {
	if c.known {
		g := max(now-c.last, 0)
		switch {
		case c.samples == 0:
			c.gap = g
		case c.samples < MinSamples:
			c.gap = min(c.gap, g)
		default:
			c.gap += (min(g, maxJump*c.gap) - c.gap) >> ewmaShift
		}
		c.samples = min(c.samples+1, MinSamples)
	}
	c.last, c.known = now, true

	if c.p.AdaptiveLIFO {
		switch {
		case oldest <= c.p.Target:
			c.drained()
		case c.aboveUntil == 0:
			c.aboveUntil = now + int64(c.p.Interval)
		case now >= c.aboveUntil:
			c.overloaded = true
		}
	}
	if left == 0 {
		c.drained()
		c.known = false // the next gap begins when the queue fills again
	}
}

// drained marks the queue empty, or fresh: first come, first served
// again, and an overload is only seen a whole Interval later.
func (c *Controller) drained() {
	c.overloaded, c.aboveUntil = false, 0
}

// LIFO reports whether the newest waiter is to be served first.
func (c *Controller) LIFO() bool { return c.overloaded }

// Shed reports whether a waiter that has waited waited is to be shed now.
func (c *Controller) Shed(waited time.Duration) bool {
	return c.overloaded && waited > c.p.ShedAfter
}

// Overloaded reports whether the controller is in its overloaded state:
// serving newest first and shedding.
func (c *Controller) Overloaded() bool { return c.overloaded }

// Gap returns the current estimate of the time between two serves, 0
// before there is evidence.
func (c *Controller) Gap() time.Duration {
	if c.samples < MinSamples {
		return 0
	}
	return time.Duration(c.gap)
}
