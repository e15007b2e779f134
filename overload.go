package connpool

import (
	"context"
	"fmt"
	"time"

	"github.com/connpool/connpool/internal/admission"
	"github.com/connpool/connpool/internal/clock"
	"github.com/connpool/connpool/internal/waitq"
)

// Defaults of QueuePolicy, each documented on its field.
const (
	defaultQueueTarget   = 5 * time.Millisecond
	defaultQueueInterval = 100 * time.Millisecond
)

// QueuePolicy is how a pool orders the Gets waiting at its cap, and which
// of them it turns away under overload: the argument of
// [WithQueuePolicy]. The zero value is the default: first come, first
// served, and nobody turned away but by its own context or
// [WithMaxWaiters].
//
// Under sustained overload a first-come queue keeps a standing queue:
// every Get waits about as long as the oldest, and the Gets served are
// those whose callers are about to give up. The two parts below, each
// on its own switch, are the known answers (Facebook's "Fail at Scale":
// CoDel and adaptive LIFO). Both judge only Gets that queue at the cap: a
// Get the pool can dial for is not judged, DialContext callers are never
// judged (they wait for a conn never handed out, or a slot to dial one,
// not for the queue to drain), and a Get a dial was started for is never
// shed while it waits.
type QueuePolicy struct {
	// DeadlineAdmission fails at once a Get whose context's deadline is
	// nearer than the wait the pool expects for it, with an error that
	// wraps [ErrShed] and [context.DeadlineExceeded], instead of letting
	// it take a place in the queue it would abandon. The expected wait is
	// the Gets ahead of it, plus one, times the time between two
	// hand-offs at the cap (a moving average); while AdaptiveLIFO serves
	// newest first it is one such time. Until the pool has measured 8
	// hand-offs every Get queues, and the estimate errs on the side of
	// queueing. A Get without a deadline always queues.
	DeadlineAdmission bool

	// AdaptiveLIFO serves the newest waiter first while the queue is
	// overloaded, and sheds the waiters that have waited past ShedAfter
	// with an error that wraps [ErrShed]; when the queue drains, or its
	// oldest waiter has waited no more than Target, it is first come,
	// first served again. The queue is overloaded when, for a whole
	// Interval, the oldest waiter had always waited more than Target at
	// each hand-off (CoDel's test, on the oldest waiter, so that serving
	// the newest does not read as a cured queue). Shedding happens at
	// hand-offs: it frees callers that would only give up later, and it
	// never costs a conn its use, as the conn goes to the newest waiter
	// all the same. Near capacity it trades a little throughput for
	// latency: the Gets buried by newer ones may give up where first
	// come, first served would have served them just in time
	// (benchmarks/README.md measures 2-3% at 90% load, about 5% at 100%).
	AdaptiveLIFO bool

	// Target is the wait above which a queue that does not drain is
	// overloaded. 0 means 5ms.
	Target time.Duration
	// Interval is how long the wait must stay above Target before the
	// queue is overloaded, and how often the test is made again. 0 means
	// 100ms.
	Interval time.Duration
	// ShedAfter is how long a waiter may wait while the queue is
	// overloaded before it is shed. 0 means Interval. Give it at least the
	// longest wait a Get's caller would still take: a Get that would be
	// served after a longer wait is shed too.
	ShedAfter time.Duration
}

// WithQueuePolicy sets how Gets waiting at the cap are ordered and which
// are turned away under overload; see [QueuePolicy]. Without it the queue
// is first come, first served. Shed Gets are counted in [Stats]
// (ShedDeadline, ShedOverload) and their GetDone events carry
// [GetShedDeadline] or [GetShedOverload]. Durations must not be negative.
func WithQueuePolicy(q QueuePolicy) Option {
	return poolOption(func(c *config) {
		switch {
		case q.Target < 0:
			c.invalid("WithQueuePolicy: Target %v must not be negative", q.Target)
			return
		case q.Interval < 0:
			c.invalid("WithQueuePolicy: Interval %v must not be negative", q.Interval)
			return
		case q.ShedAfter < 0:
			c.invalid("WithQueuePolicy: ShedAfter %v must not be negative", q.ShedAfter)
			return
		}
		if q.Target == 0 {
			q.Target = defaultQueueTarget
		}
		if q.Interval == 0 {
			q.Interval = defaultQueueInterval
		}
		if q.ShedAfter == 0 {
			q.ShedAfter = q.Interval
		}
		c.queuePolicy = q
	})
}

// newOverload returns the controller of policy q, or nil for the
// default, first come, first served, which then costs the wait path
// nothing but a nil check.
func newOverload(q QueuePolicy) *admission.Controller {
	if !q.DeadlineAdmission && !q.AdaptiveLIFO {
		return nil
	}
	return admission.New(admission.Policy{
		Deadline: q.DeadlineAdmission, AdaptiveLIFO: q.AdaptiveLIFO,
		Target: q.Target, Interval: q.Interval, ShedAfter: q.ShedAfter,
	})
}

// admitLocked asks the queue policy whether a Get with ctx may queue at
// the cap, behind the waiters queued now; it returns the error to fail
// it with, or nil. The controller is guarded by mu.
func (p *Pool) admitLocked(ctx context.Context) error {
	ahead := p.waiters.Len()
	dl, has := ctx.Deadline()
	now := clock.Nanotime()
	var left time.Duration
	if has {
		left = time.Until(dl)
	}
	est, ok := p.overload.Arrive(now, ahead, left, has)
	if ok {
		return nil
	}
	return &shedError{pool: p.name, reason: GetShedDeadline, ahead: ahead, est: est, left: left, gap: p.overload.Gap(),
		lifo: p.overload.LIFO()}
}

// pickWaiterLocked is waiterForLocked under a queue policy: it takes out
// of the queue the newest waiter that can take pc while the queue is
// overloaded, else the oldest, and returns it, or nil; while overloaded
// it then sheds, from the front, the other waiters that have waited past
// ShedAfter. It tells the controller of the hand-off.
//
// The promises it keeps: a DialContext caller (unusedOnly) is never
// handed a used conn (the same skip as first come, first served) and is
// never shed, as it waits for a dial slot, not a conn back; and a waiter
// a dial was started for (dialing) is never shed, so that the dial's conn
// finds its Get still queued and is delivered to it (dialed,
// forWaiterLocked), never orphaned by the policy.
func (p *Pool) pickWaiterLocked(pc *poolConn) *waitq.Elem[waiter] {
	ctl := p.overload
	f := p.waiters.Front()
	if f == nil {
		return nil
	}
	now := clock.Nanotime()
	oldest := clock.Since(f.Value.since)
	shedding := ctl.Overloaded()
	var e *waitq.Elem[waiter]
	if ctl.LIFO() {
		e = p.waiters.Back()
		for pc.used && e != nil && e.Value.unusedOnly {
			e = e.Prev()
		}
	} else {
		e = f
		for pc.used && e != nil && e.Value.unusedOnly {
			e = e.Next()
		}
	}
	if e != nil {
		p.dequeueLocked(e)
	}
	if shedding {
		// Ages grow from the back to the front: stop at the first
		// waiter that may stay.
		for s := p.waiters.Front(); s != nil; {
			next := s.Next()
			waited := clock.Since(s.Value.since)
			if !ctl.Shed(waited) {
				break
			}
			// A waiter whose ctx has ended leaves with its ctx's error, as
			// a Get past its deadline does (errors.Is DeadlineExceeded),
			// not as shed.
			if !s.Value.dialing && !s.Value.unusedOnly && s.Value.ctx.Err() == nil {
				p.dequeueLocked(s)
				p.failLocked(s, &shedError{pool: p.name, reason: GetShedOverload, waited: waited, policy: ctl.Policy()})
			}
			s = next
		}
	}
	if e != nil {
		ctl.Served(now, oldest, p.waiters.Len())
	}
	return e
}

// shedError is the error of a Get a queue policy turned away.
type shedError struct {
	pool   string
	reason GetFailure // GetShedDeadline or GetShedOverload

	// GetShedDeadline: the waiters ahead, the wait expected, the time to
	// the Get's deadline, the time between hand-offs, and whether the
	// queue was served newest first.
	ahead     int
	est, left time.Duration
	gap       time.Duration
	lifo      bool
	waited    time.Duration    // GetShedOverload: how long it had waited
	policy    admission.Policy // GetShedOverload
}

func (e *shedError) Error() string {
	if e.reason == GetShedDeadline {
		order := fmt.Sprintf("%d Gets wait ahead of it", e.ahead)
		if e.lifo {
			order = "the queue is overloaded and served newest first"
		}
		return fmt.Sprintf("connpool: get %s: %v: shed at once, as its deadline is in %v and the wait would be about %v "+
			"(%s; one is served every %v) (WithQueuePolicy DeadlineAdmission); give the Get more time, "+
			"or raise WithMaxConns if the backend can take more",
			e.pool, context.DeadlineExceeded, e.left.Round(time.Microsecond), e.est.Round(time.Microsecond), order, e.gap.Round(time.Microsecond))
	}
	return fmt.Sprintf("connpool: get %s: %v after waiting %v: the queue has kept Gets waiting over %v (Target) for %v (Interval), "+
		"so the newest are served first and those waiting past %v (ShedAfter) are shed (WithQueuePolicy AdaptiveLIFO); "+
		"raise WithMaxConns if the backend can take more, or shed load before the pool",
		e.pool, ErrShed, e.waited.Round(time.Microsecond), e.policy.Target, e.policy.Interval, e.policy.ShedAfter)
}

func (e *shedError) Unwrap() []error {
	if e.reason == GetShedDeadline {
		return []error{ErrShed, context.DeadlineExceeded}
	}
	return []error{ErrShed}
}
