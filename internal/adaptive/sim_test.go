package adaptive

import (
	"math"
	"math/rand/v2"
	"time"
)

// sim is a deterministic discrete-event model of a pool in front of a
// backend that admits c requests at once and queues the rest first come,
// first served, as poolbench's sizing server does. Requests arrive open
// loop (Poisson at rate(t)) and wait at most getBudget for a conn; each has
// a deadline after its arrival, after which its client gives up and
// returns the conn broken, while the backend still does the work. The
// controller is sampled every tick, as the pool's goroutine does.
type sim struct {
	ctl       *Controller
	rng       *rand.Rand
	now       time.Duration
	service   time.Duration // mean of the lognormal service time
	sigma     float64
	c         func(t time.Duration) int     // the backend's concurrency
	rate      func(t time.Duration) float64 // arrivals per second
	stall     func(t time.Duration) bool    // requests starting now wait until the stall ends
	stallEnd  func(t time.Duration) time.Duration
	getBudget time.Duration
	deadline  time.Duration
	tick      time.Duration

	// clients > 0 makes the load a closed loop: that many clients, each
	// sending its next request as soon as the last one ends (served,
	// timed out in Get, or given up at its deadline); rate is then unused.
	clients int
	// overhead, if set, is the mean of the client's own time between the
	// backend's reply and the Put (exponential): the client process's CPU
	// load, which the held time includes and the backend has no part in.
	overhead func(t time.Duration, inUse int) time.Duration

	events  eventQueue
	inUse   int
	waiters []time.Duration // arrival times, FIFO
	busy    int             // backend slots in use
	queue   []*job          // at the backend

	// Since the last tick.
	returns   int64
	held      time.Duration
	heldSq    int64
	drops     int64
	saturated bool
	queued    int64         // Gets that queued at the cap
	probeFrom time.Duration // when the probe being gathered began, or -1: see Sample

	// Totals and trace.
	served, failed int64
	latencies      []time.Duration // arrival to reply, of the requests served, if recording
	record         bool
	trace          []point
}

type point struct {
	at       time.Duration
	limit    int
	baseline time.Duration
	inUse    int
}

type job struct {
	arrived, acquired time.Duration
	gaveUp, done      bool
	replied           bool // the backend's reply came; the Put is pending (overhead)
}

type event struct {
	at   time.Duration
	kind int // evArrive, evDone, evGiveUp, evTick
	j    *job
}

const (
	evArrive = iota
	evDone
	evGiveUp
	evTick
	evPut        // the client puts a conn back after its overhead
	evGetTimeout // a closed-loop client's Get runs out of budget
)

// eventQueue is a binary min-heap of events by time. It does what
// container/heap does, step for step (so ties between events at the same
// time break as they did), without boxing each event in an interface: the
// long runs of the model spend most of their time here.
type eventQueue []event

func (q *eventQueue) push(e event) {
	*q = append(*q, e)
	h := *q
	for j := len(h) - 1; ; {
		i := (j - 1) / 2
		if i == j || !(h[j].at < h[i].at) {
			break
		}
		h[i], h[j] = h[j], h[i]
		j = i
	}
}

func (q *eventQueue) pop() event {
	h := *q
	n := len(h) - 1
	h[0], h[n] = h[n], h[0]
	for i := 0; ; {
		j1 := 2*i + 1
		if j1 >= n || j1 < 0 {
			break
		}
		j := j1
		if j2 := j1 + 1; j2 < n && h[j2].at < h[j1].at {
			j = j2
		}
		if !(h[j].at < h[i].at) {
			break
		}
		h[i], h[j] = h[j], h[i]
		i = j
	}
	e := h[n]
	*q = h[:n]
	return e
}

// newSim returns a model of a backend of concurrency c with 5ms mean
// service time, at rate arrivals per second, with the poolbench budgets.
func newSim(cfg Config, seed uint64, c func(time.Duration) int, rate func(time.Duration) float64) *sim {
	return &sim{
		ctl:       New(cfg),
		rng:       rand.New(rand.NewPCG(seed, 1)),
		service:   5 * time.Millisecond,
		sigma:     0.5,
		c:         c,
		rate:      rate,
		stall:     func(time.Duration) bool { return false },
		getBudget: 25 * time.Millisecond,
		deadline:  50 * time.Millisecond,
		tick:      25 * time.Millisecond,
		probeFrom: -1,
	}
}

func (s *sim) at(t time.Duration, kind int, j *job) {
	s.events.push(event{at: t, kind: kind, j: j})
}

func (s *sim) serviceTime() time.Duration {
	mu := math.Log(float64(s.service)) - s.sigma*s.sigma/2
	return time.Duration(math.Exp(mu + s.sigma*s.rng.NormFloat64()))
}

func (s *sim) nextArrival() {
	r := s.rate(s.now)
	if r <= 0 {
		s.at(s.now+time.Millisecond, evArrive, nil) // look again later
		return
	}
	s.at(s.now+time.Duration(s.rng.ExpFloat64()/r*float64(time.Second)), evArrive, nil)
}

// run advances the model to end.
func (s *sim) run(end time.Duration) {
	if len(s.events) == 0 {
		if s.clients > 0 {
			for i := range s.clients {
				s.at(s.now+time.Duration(i)*time.Millisecond/4, evArrive, nil)
			}
		} else {
			s.nextArrival()
		}
		s.at(s.now+s.tick, evTick, nil)
	}
	for len(s.events) > 0 && s.events[0].at <= end {
		e := s.events.pop()
		s.now = e.at
		switch e.kind {
		case evArrive:
			if s.clients > 0 {
				s.waiters = append(s.waiters, s.now)
				s.at(s.now+s.getBudget, evGetTimeout, nil)
				s.serveWaiters()
				s.countQueued()
				continue
			}
			if s.rate(s.now) > 0 && e.j == nil {
				s.waiters = append(s.waiters, s.now)
				s.serveWaiters()
				s.countQueued()
			}
			s.nextArrival()
		case evGetTimeout:
			s.serveWaiters() // drops the waiters out of budget, and sends their next
		case evDone:
			s.busy--
			if !e.j.gaveUp {
				if s.overhead != nil {
					e.j.replied = true
					m := s.overhead(s.now, s.inUse)
					s.at(s.now+time.Duration(s.rng.ExpFloat64()*float64(m)), evPut, e.j)
				} else {
					s.finish(e.j)
				}
			}
			s.startJobs()
		case evPut:
			if !e.j.gaveUp {
				s.finish(e.j)
			}
		case evGiveUp:
			if !e.j.done && !e.j.replied {
				e.j.gaveUp = true
				s.failed++
				s.giveBack(e.j.acquired, true)
				s.next()
			}
		case evTick:
			if s.inUse >= s.ctl.Limit() {
				s.saturated = true
			}
			s.ctl.Observe(s.now, Sample{Returns: s.returns, Held: s.held, HeldSq: s.heldSq, Drops: s.drops, Saturated: s.saturated, Queued: s.queued})
			s.returns, s.held, s.heldSq, s.drops, s.saturated, s.queued = 0, 0, 0, 0, false, 0
			if !s.ctl.Probing() {
				s.probeFrom = -1
			} else if s.probeFrom < 0 {
				s.probeFrom = s.now
			}
			s.trace = append(s.trace, point{at: s.now, limit: s.ctl.Limit(), baseline: s.ctl.Baseline(), inUse: s.inUse})
			s.serveWaiters()
			s.at(s.now+s.tick, evTick, nil)
		}
	}
	s.now = end
}

// countQueued counts the Get just arrived as queued if it is still
// waiting, as the pool counts a Get that joined its wait queue.
func (s *sim) countQueued() {
	if len(s.waiters) > 0 && s.waiters[len(s.waiters)-1] == s.now {
		s.queued++
	}
}

// finish ends a served request: the reply is counted and the conn put back.
func (s *sim) finish(j *job) {
	j.done = true
	s.served++
	if s.record {
		s.latencies = append(s.latencies, s.now-j.arrived)
	}
	s.giveBack(j.acquired, false)
	s.next()
}

// next sends a closed-loop client's next request, now.
func (s *sim) next() {
	if s.clients > 0 {
		s.at(s.now, evArrive, nil)
	}
}

// serveWaiters hands conns to waiters while the cap allows, dropping those
// whose Get budget ran out.
func (s *sim) serveWaiters() {
	for len(s.waiters) > 0 {
		arrived := s.waiters[0]
		if s.now-arrived > s.getBudget || (s.clients > 0 && s.now-arrived >= s.getBudget) {
			s.waiters = s.waiters[1:]
			s.failed++
			s.next()
			continue
		}
		if s.inUse >= s.ctl.Limit() {
			s.saturated = true
			return
		}
		s.waiters = s.waiters[1:]
		s.inUse++
		j := &job{arrived: arrived, acquired: s.now}
		s.at(arrived+s.deadline, evGiveUp, j)
		s.queue = append(s.queue, j)
		s.startJobs()
	}
}

func (s *sim) startJobs() {
	for len(s.queue) > 0 && s.busy < s.c(s.now) {
		j := s.queue[0]
		s.queue = s.queue[1:]
		s.busy++
		end := s.now + s.serviceTime()
		if s.stall(s.now) {
			end = max(end, s.stallEnd(s.now))
		}
		s.at(end, evDone, j)
	}
}

// giveBack returns a conn lent at acquired, broken or not. A probe's
// window leaves out the conns lent before it began (see Sample).
func (s *sim) giveBack(acquired time.Duration, broken bool) {
	s.inUse--
	if acquired < s.probeFrom {
		s.serveWaiters()
		return
	}
	held := s.now - acquired
	s.returns++
	s.held += held
	us := int64(held / time.Microsecond)
	s.heldSq += us * us
	if broken {
		s.drops++
	}
	s.serveWaiters()
}

// limits returns the caps traced in [from, to).
func (s *sim) limits(from, to time.Duration) []int {
	var out []int
	for _, p := range s.trace {
		if p.at >= from && p.at < to {
			out = append(out, p.limit)
		}
	}
	return out
}

// capacity is the backend's requests per second at concurrency c.
func capacity(c int) float64 { return float64(c) / (5 * time.Millisecond).Seconds() }

func constant[T any](v T) func(time.Duration) T { return func(time.Duration) T { return v } }
