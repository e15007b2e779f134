// Package adaptive is the controller behind connpool's WithAdaptiveMaxConns:
// it turns what a pool measures (how long conns are held, how many come
// back broken, whether Gets queue at the cap) into a cap on open conns. It
// reads no clock and starts no goroutine: the caller passes the time with
// each sample, so the tests drive it through simulated hours in
// milliseconds.
//
// The algorithm, adapted from Netflix's concurrency-limits (Vegas,
// Gradient2) and Envoy's adaptive concurrency filter:
//
//   - Samples are gathered into windows of at least MinWindow and
//     MinSamples returns (or MaxWindow, whichever has something). A
//     window's figure is the mean time conns were held in it, less the
//     share of the window the client process spent waiting for CPU
//     (Sample.Lag: on a shared machine such stalls cut the cap from 9 to
//     1 at a load the best fixed cap of 16 served;
//     TestClientStallIsNotQueueing). A window stalled for more than
//     half of it is left out.
//   - The baseline is the lowest mean of the current and the previous
//     epoch (Epoch long), each mean pooled over 4 full windows and offered
//     at its mean plus twice its standard error: the minimum of many
//     noisy means is biased low by about that much, and a baseline biased
//     low reads every window as queueing. It is a minimum, as Vegas and
//     Envoy keep, but one that is re-measured, so it follows a backend
//     that really got slower within two epochs. Under load that kept the
//     cap in use in every window since the last ProbeInterval, one window
//     runs at ProbeFactor of the cap (Envoy pins a low concurrency
//     instead; a gentle probe costs little goodput): such load may have
//     kept every window above the true minimum, and the probe finds it
//     again, so the baseline does not drift up with load
//     (TestBaselineDoesNotDriftUnderSustainedLoad). The probe's mean
//     leaves out the conns lent before it, held while the backend still
//     queued, and is offered as any candidate is: taken as it was, one
//     unlucky window set the baseline below the minimum
//     (TestProbeKeepsBaselineAtTheMinimum). A load that left the
//     cap unused in some window is not probed: quiet windows measure the
//     minimum already, and a probe below the backend's concurrency would
//     only queue Gets (TestTailAgainstFixedCaps).
//   - The gradient is the window mean over the baseline (Gradient2's and
//     Envoy's signal). Above Tolerance, plus twice the window mean's
//     standard error so that noise is not read as queueing, the backend
//     is queueing: the cap is cut to Tolerance times the higher of two
//     estimates of the backend's concurrency. One is the conns the
//     backend kept busy, by Little's law the window's throughput times
//     the baseline: a saturated backend's throughput is its concurrency
//     over its service time, so this lands the cap at its concurrency in
//     one step, whatever the queue was. The other is the cap over the
//     gradient (Gradient2's cut): under sustained overload the two agree,
//     but after a burst at partial load the first falls below the
//     backend's concurrency (the load kept fewer busy) and the second
//     does not, as the conns in flight, busy times the gradient, never
//     exceed the cap. Below capacity, where the queue forms does not
//     change the latency; a cap below the backend's concurrency does.
//     The cap over the gradient still lands below the backend's
//     concurrency when noise adds to a window's gradient, so a cut goes
//     no lower than the most conns a window of this epoch or the last
//     kept busy with its held time within Tolerance (each taken one
//     standard error low: the highest of many noisy rates is biased
//     high), unless the gradient is more than 1.5 times the threshold:
//     then the backend lost concurrency, and the floor is forgotten
//     (TestLatencyCutKeepsWhatWasServedWithoutQueueing,
//     TestFollowsHalvedBackend). A smaller loss, of less than about two
//     fifths of the backend's concurrency, is followed as the floor
//     expires, within two epochs.
//   - A window in which more than DropRatio of the returns were broken
//     (timeouts, failed I/O) scales the cap by DropFactor: once per
//     window, not once per timeout as AIMD limiters cut.
//   - Decreases are bounded: once a run of congested windows (an
//     episode) begins, the cap falls to no less than half of where it
//     began until HalvingInterval has passed, and then again. After the
//     episode, the cap returns at once to the level of its first cut
//     (TestBurstOfTimeoutsIsBounded).
//   - The cap grows only when it was in use: a Get queued at the cap, or
//     every conn was borrowed when sampled. Growing windows add 1, 2, 4,
//     ... (doubling, at most the cap itself) while the gradient stays
//     within Tolerance itself. A window within the noise allowance but
//     above Tolerance neither grows nor cuts, and keeps the step
//     (TestGrowthStepSurvivesNoisyWindows); any other window starts the
//     step again at 1. A cap that is not in use does not grow,
//     however flat the latency: the failure of a controller that reads
//     flat latency as headroom (TestNoGrowthWhileLatencyIsFlat).
//   - A held time above Tolerance is not always the backend's queue: the
//     client's own process, slower under its own CPU load, adds to it
//     too. Saturated windows held above Tolerance lead to a trial: the
//     cap is raised by half for one long window, and kept, with the
//     baseline moved up to the held time, only if the added conns were
//     served (see the const block of trialFirst). A failed trial backs
//     the next one off; the back-off ends when the Gets that queue come
//     demandShift times as fast as when it failed (Sample.Queued; see
//     demandWindow).
//
// A Controller is not safe for concurrent use: one goroutine owns it.
package adaptive

import (
	"math"
	"time"
)

// Config holds a Controller's parameters. Zero fields take the defaults of
// [DefaultConfig].
type Config struct {
	Min, Max int // bounds of the cap, 1 <= Min <= Max
	Initial  int // the cap to start from, within the bounds

	Tolerance       float64       // the gradient tolerated before the cap is cut, beyond twice the window's own noise: 1.05
	MinWindow       time.Duration // shortest window: 100ms
	MaxWindow       time.Duration // a window with fewer than MinSamples closes after this: 1s
	MinSamples      int           // returns a window needs before MaxWindow: 50
	Epoch           time.Duration // how long a measured minimum counts: 10s
	ProbeInterval   time.Duration // how often the cap, if in use in every window since, is lowered for a probe window: 10s
	ProbeFactor     float64       // the cap of a probe window, as a fraction of the cap: 0.75
	DropRatio       float64       // broken returns above this fraction congest a window: 0.2
	DropFactor      float64       // how a congested-by-drops window scales the cap: 0.8
	HalvingInterval time.Duration // an episode halves the cap at most once per interval: 2s
}

// DefaultConfig returns the defaults for a cap between min and max,
// starting at initial.
func DefaultConfig(min, max, initial int) Config {
	return Config{
		Min: min, Max: max, Initial: initial,
		Tolerance:       1.05,
		MinWindow:       100 * time.Millisecond,
		MaxWindow:       time.Second,
		MinSamples:      50,
		Epoch:           10 * time.Second,
		ProbeInterval:   10 * time.Second,
		ProbeFactor:     0.75,
		DropRatio:       0.2,
		DropFactor:      0.8,
		HalvingInterval: 2 * time.Second,
	}
}

// Sample is what the pool measured since its previous sample. While the
// controller is Probing, it leaves out the returns of conns lent before
// the probe began: they were held while the backend still queued at the
// cap before the probe, and would bias the probe's mean high.
type Sample struct {
	Returns   int64         // conns returned
	Held      time.Duration // the time they were held, added up
	HeldSq    int64         // the squares of those times, in microseconds squared, added up; 0 if unknown
	Drops     int64         // of Returns, those returned broken
	Saturated bool          // a Get queued at the cap, or every conn was borrowed
	Queued    int64         // Gets that queued at the cap; 0 if unknown
	// Lag is how much later than asked the sampling goroutine woke,
	// added up since the previous sample: the client process's own
	// scheduling delay, starved of CPU by its own work or the machine's.
	Lag time.Duration
}

// Reason says why the cap moved.
type Reason uint8

const (
	// Unchanged: the cap did not move.
	Unchanged Reason = iota
	// Demand: Gets queued at the cap and the held time stayed within
	// tolerance of the baseline.
	Demand
	// Latency: conns were held longer than the baseline allows.
	Latency
	// Drops: too many conns came back broken.
	Drops
	// Probe: the cap was lowered for one window to re-measure the
	// baseline, or restored after it.
	Probe
)

// Controller computes the cap. See the package documentation.
type Controller struct {
	cfg   Config
	limit float64

	// The window being gathered.
	winStart  time.Duration
	started   bool
	returns   int64
	held      time.Duration
	heldSq    int64
	drops     int64
	saturated bool
	lag       time.Duration
	queued    int64

	// The baseline: minimum window means of this epoch and the last.
	epochStart      time.Duration
	curMin          time.Duration // 0: none yet
	poolReturns     int64         // windows pooled into the next candidate
	poolHeld        time.Duration
	poolVar         float64 // the variance of poolHeld, in nanoseconds squared
	prevMin         time.Duration
	curGood         float64 // the most conns busy in a window of this epoch that did not queue
	prevGood        float64 // the same, of the previous epoch
	slackSinceProbe bool    // a window since the last probe was not saturated
	lastProbe       time.Duration

	probing    bool    // the current window is a probe
	probeLimit float64 // the cap to restore after it

	step float64 // the next growth step

	// Trials (see the const block of trialFirst).
	stuck      int     // saturated windows held above Tolerance (not refuted: see refuteFactor) since the cap was last unused
	trialAfter int     // stuck windows before the next trial
	ref        span    // those windows: the trial's reference
	trialing   bool    // a trial is being gathered
	trialSpan  span    // its windows
	trialFrom  float64 // the cap before it
	demand     float64 // Gets queued a second, a moving average (see demandWindow)
	failDemand float64 // demand when the last trial failed, or lower since; 0 if none

	inEpisode    bool
	episodeStart time.Duration
	episodeCap   float64 // the cap when the episode (or its last halving interval) began
	recoverTo    float64 // the cap after the episode's first cut; 0 outside episodes' aftermath
}

// New returns a controller with cfg, its zero fields filled from
// DefaultConfig.
func New(cfg Config) *Controller {
	d := DefaultConfig(cfg.Min, cfg.Max, cfg.Initial)
	fill := func(v *float64, def float64) {
		if *v <= 0 {
			*v = def
		}
	}
	fillD := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	fill(&cfg.Tolerance, d.Tolerance)
	fill(&cfg.ProbeFactor, d.ProbeFactor)
	fill(&cfg.DropRatio, d.DropRatio)
	fill(&cfg.DropFactor, d.DropFactor)
	fillD(&cfg.MinWindow, d.MinWindow)
	fillD(&cfg.MaxWindow, d.MaxWindow)
	fillD(&cfg.Epoch, d.Epoch)
	fillD(&cfg.ProbeInterval, d.ProbeInterval)
	fillD(&cfg.HalvingInterval, d.HalvingInterval)
	if cfg.MinSamples <= 0 {
		cfg.MinSamples = d.MinSamples
	}
	cfg.Min = max(cfg.Min, 1)
	cfg.Max = max(cfg.Max, cfg.Min)
	c := &Controller{cfg: cfg, step: 1, trialAfter: trialFirst}
	c.limit = float64(min(max(cfg.Initial, cfg.Min), cfg.Max))
	return c
}

// Limit returns the cap.
func (c *Controller) Limit() int { return c.round(c.limit) }

// Probing reports whether the window being gathered is a probe: the cap
// was lowered to re-measure the baseline (see the package documentation
// and Sample).
func (c *Controller) Probing() bool { return c.probing }

// Baseline returns the baseline held time, 0 until the first window.
func (c *Controller) Baseline() time.Duration {
	switch {
	case c.prevMin == 0:
		return c.curMin
	case c.curMin == 0:
		return c.prevMin
	}
	return min(c.curMin, c.prevMin)
}

// SetLimit moves the cap to n, within the bounds, as a user's resize does:
// any probe or episode ends and growth starts again from a step of 1; the
// baseline is kept.
func (c *Controller) SetLimit(n int) {
	c.limit = float64(min(max(n, c.cfg.Min), c.cfg.Max))
	c.probing, c.inEpisode, c.recoverTo, c.step = false, false, 0, 1
	c.trialing, c.stuck, c.ref = false, 0, span{}
}

func (c *Controller) round(v float64) int {
	return min(max(int(math.Floor(v+0.5)), c.cfg.Min), c.cfg.Max)
}

func (c *Controller) clamp(v float64) float64 {
	return math.Min(math.Max(v, float64(c.cfg.Min)), float64(c.cfg.Max))
}

// Observe adds s, measured up to now, and returns the cap and why it
// moved (Unchanged if it did not).
func (c *Controller) Observe(now time.Duration, s Sample) (int, Reason) {
	if !c.started {
		c.started, c.winStart, c.epochStart, c.lastProbe = true, now, now, now
	}
	c.returns += s.Returns
	c.held += s.Held
	c.heldSq += s.HeldSq
	c.drops += s.Drops
	c.saturated = c.saturated || s.Saturated
	c.lag += s.Lag
	c.queued += s.Queued
	elapsed := now - c.winStart
	if elapsed < c.cfg.MinWindow || (c.returns < int64(c.cfg.MinSamples) && elapsed < c.cfg.MaxWindow) {
		return c.Limit(), Unchanged
	}
	returns, held, heldSq, drops, saturated, lag, queued := c.returns, c.held, c.heldSq, c.drops, c.saturated, c.lag, c.queued
	c.winStart, c.returns, c.held, c.heldSq, c.drops, c.saturated, c.lag, c.queued = now, 0, 0, 0, 0, false, 0, 0
	if returns == 0 {
		return c.Limit(), Unchanged // nothing came back: nothing to learn
	}
	if saturated && queued >= returns {
		c.demandWindow(float64(queued) / elapsed.Seconds())
	}
	// The share of the window the client process spent waiting for CPU
	// (see Sample.Lag): every conn it held was held that much longer, by
	// no fault of the backend's. The held time is taken without it; a
	// window the process spent mostly starved says nothing.
	stalled := min(float64(lag)/float64(elapsed), 1)
	if stalled > maxStalled {
		return c.Limit(), Unchanged
	}
	held = time.Duration(float64(held) * (1 - stalled))
	heldSq = int64(float64(heldSq) * (1 - stalled) * (1 - stalled))
	before := c.Limit()
	mean := held / time.Duration(returns)
	// The window mean's own noise: its standard error over the mean.
	var noise float64
	if heldSq > 0 && returns > 1 {
		m := float64(mean) / float64(time.Microsecond)
		if v := float64(heldSq)/float64(returns) - m*m; v > 0 {
			noise = math.Sqrt(v/float64(returns)) / m
		}
	}
	// Little's law: the conns the backend kept busy, on average, at the
	// window's throughput and the baseline held time.
	busy := float64(returns) / elapsed.Seconds() * c.Baseline().Seconds()
	reason := c.window(now, mean, noise, busy, span{returns, held, elapsed}, float64(drops)/float64(returns), saturated)
	if after := c.Limit(); after == before {
		return after, Unchanged
	}
	return c.Limit(), reason
}

// window decides on one closed window with mean held time mean.
func (c *Controller) window(now, mean time.Duration, noise, busy float64, w span, dropFrac float64, saturated bool) Reason {
	returns := w.returns
	full := returns >= int64(c.cfg.MinSamples)
	if c.probing {
		// The probe's mean is a baseline candidate whatever its size,
		// offered as any other: taken as it is, one window's mean, noisier
		// than a pooled candidate, would now and then set the baseline
		// well below the minimum, and it would stay there two epochs. The
		// conns lent before the probe, held while the backend still
		// queued, are not in it (see Sample).
		c.probing = false
		c.candidate(mean, noise)
		c.limit = c.probeLimit
		return Probe
	}
	switch {
	case c.Baseline() == 0:
		c.candidate(mean, noise) // provisional, until enough samples are pooled
	case full && dropFrac <= c.cfg.DropRatio:
		// Pool windows into candidates of baselineWindows x MinSamples
		// returns: the minimum of many small means is biased low.
		c.poolReturns += returns
		c.poolHeld += mean * time.Duration(returns)
		sd := noise * float64(mean) * float64(returns) // the window sum's standard deviation
		c.poolVar += sd * sd
		if c.poolReturns >= baselineWindows*int64(c.cfg.MinSamples) {
			m := c.poolHeld / time.Duration(c.poolReturns)
			c.candidate(m, math.Sqrt(c.poolVar)/float64(c.poolReturns)/float64(m))
			c.poolReturns, c.poolHeld, c.poolVar = 0, 0, 0
		}
	default:
		c.poolReturns, c.poolHeld, c.poolVar = 0, 0, 0
	}
	gradient := float64(mean) / float64(c.Baseline())
	c.slackSinceProbe = c.slackSinceProbe || !saturated
	if now-c.epochStart >= c.cfg.Epoch {
		c.prevMin, c.curMin, c.epochStart = c.curMin, 0, now
		c.prevGood, c.curGood = c.curGood, 0
	}
	if c.trialing {
		return c.trialWindow(w, dropFrac)
	}
	if now-c.lastProbe >= c.cfg.ProbeInterval {
		c.lastProbe = now
		probe := !c.slackSinceProbe
		c.slackSinceProbe = false
		if probe {
			c.probing, c.probeLimit = true, c.limit
			c.limit = c.clamp(math.Floor(c.limit * c.cfg.ProbeFactor))
			c.step = 1
			return Probe
		}
	}

	switch {
	case dropFrac > c.cfg.DropRatio:
		c.unstuck()
		c.cut(now, c.limit*c.cfg.DropFactor)
		return Drops
	case gradient > c.cfg.Tolerance*(1+2*noise):
		// Beyond tolerance by more than twice the window's standard
		// error: the backend is queueing, not the samples noisy.
		// It is cut to what the backend kept busy (at saturation, its
		// concurrency) or to the cap over the gradient, whichever is
		// higher, but not below what a recent window served without
		// queueing, unless the rise is beyond what noise on top of
		// queueing at that concurrency explains (see the package
		// documentation).
		refuted := gradient > refuteFactor*c.cfg.Tolerance*(1+2*noise)
		if refuted {
			c.curGood, c.prevGood = 0, 0
		}
		target := math.Max(busy, c.limit/gradient) * c.cfg.Tolerance
		c.cut(now, math.Min(math.Max(target, c.served()), c.limit))
		if !saturated || refuted {
			c.unstuck()
		} else if c.stuckWindow(w) {
			return Demand
		}
		return Latency
	}
	c.inEpisode = false
	if gradient <= c.cfg.Tolerance {
		// busy is a rate over a count of returns, noisy by about one
		// over its square root: the highest of many is biased high, so
		// each is taken one standard error low.
		c.curGood = math.Max(c.curGood, busy*(1-1/math.Sqrt(float64(returns))))
	}
	switch {
	case !saturated:
		// Not in use: no evidence that more conns are wanted.
		c.step = 1
		c.unstuck()
		return Unchanged
	case gradient > c.cfg.Tolerance:
		// Within the noise but above tolerance: no evidence either way.
		// The step is kept, so that a run of growth broken by such
		// windows still doubles.
		if c.stuckWindow(w) {
			return Demand
		}
		return Unchanged
	}
	if c.recoverTo > c.limit {
		c.limit, c.recoverTo = c.clamp(c.recoverTo), 0
		return Demand
	}
	c.recoverTo = 0
	c.limit = c.clamp(c.limit + c.step)
	c.step = math.Min(2*c.step, c.limit)
	return Demand
}

// span is a run of windows: the returns in it, the time they were held,
// added up, and its length.
type span struct {
	returns      int64
	held, length time.Duration
}

func (s *span) add(w span) {
	s.returns, s.held, s.length = s.returns+w.returns, s.held+w.held, s.length+w.length
}

// mean is the mean held time; conc the mean conns held at once (Little's
// law: the time held, added up, over the span's length).
func (s span) mean() float64 { return float64(s.held) / float64(s.returns) }
func (s span) conc() float64 { return float64(s.held) / float64(s.length) }

// Trials. The held time rises above the baseline for two reasons: the
// backend queues, or the client's own process got slower (its CPU load
// rose with the work it does: on a shared machine, after the backend
// doubled, the held time rose 10% with no queueing at all). A cut cannot
// tell them apart, so a cap that Gets wait at, held above Tolerance but
// not cut, stays stuck: at the old concurrency for 10 to 33s after the
// backend's doubled, until the baseline followed
// (TestClosedLoopFollowsDoubledBackendDespiteClientLoad). What tells
// them apart is what more conns do. A backend that queues serves no
// more: the held time grows with the conns held at once, and the
// throughput stays. A client that is only slower gets more served. So
// after trialAfter such windows, the cap is raised by half for one long
// window (a trial, of trialWindows full windows' returns), and judged
// against the stuck windows before it: if at least half of the added
// concurrency turned into throughput, the cap stays and the baseline
// moves to the lower held time of the two (the client's, not the
// backend's, rise); if not, the cap goes back, and the next trial waits
// twice as long (up to trialLast windows). A trial whose extra conns the
// Gets did not take (open loop, below capacity) proves nothing, and the
// cap stays: it costs nothing that no Get uses.
const (
	trialFirst   = 2    // stuck windows before the first trial
	trialLast    = 16   // and at most, after failed ones
	trialWindows = 4    // full windows' returns a trial gathers
	trialRise    = 1.5  // the cap of a trial, over the cap before it
	trialFill    = 1.15 // a trial whose conns held at once rose less than this proves nothing
	trialGain    = 0.5  // the share of the added concurrency that must turn into throughput
)

// unstuck ends a run of stuck windows.
func (c *Controller) unstuck() { c.stuck, c.ref = 0, span{} }

// stuckWindow counts a stuck window (see Trials) and starts a trial when
// enough have come; it reports whether it did.
func (c *Controller) stuckWindow(w span) bool {
	c.stuck++
	c.ref.add(w)
	if c.stuck < c.trialAfter {
		return false
	}
	from := c.limit
	c.limit = c.clamp(math.Max(math.Ceil(from*trialRise), from+2))
	if c.Limit() == c.round(from) {
		c.limit = from // at Max: nothing to try
		c.unstuck()
		return false
	}
	c.trialing, c.trialFrom, c.trialSpan, c.step = true, from, span{}, 1
	c.inEpisode, c.recoverTo = false, 0
	return true
}

// trialWindow gathers a trial's window and judges it (see Trials).
func (c *Controller) trialWindow(w span, dropFrac float64) Reason {
	c.trialSpan.add(w)
	ref, t := c.ref, c.trialSpan
	switch {
	case dropFrac > c.cfg.DropRatio || t.mean() > 2*ref.mean():
		// Broken returns, or a rise no client noise explains: over.
	case t.returns < trialWindows*int64(c.cfg.MinSamples) && t.length < trialWindows*c.cfg.MaxWindow:
		return Unchanged
	}
	c.trialing = false
	c.unstuck()
	fill := t.conc() / ref.conc()
	if fill < trialFill && dropFrac <= c.cfg.DropRatio && t.mean() <= 2*ref.mean() {
		return Unchanged // the Gets did not take the conns: no verdict, and the cap stays
	}
	gain := 0.0
	if fill > 1 {
		gain = math.Log((float64(t.returns)/float64(t.length))/(float64(ref.returns)/float64(ref.length))) / math.Log(fill)
	}
	if gain >= trialGain && dropFrac <= c.cfg.DropRatio {
		// More was served: the rise above the baseline was not the
		// backend's queue. The baseline moves to it.
		b := time.Duration(math.Min(ref.mean(), t.mean()))
		c.curMin, c.prevMin = b, b
		c.poolReturns, c.poolHeld, c.poolVar = 0, 0, 0
		c.trialAfter = trialFirst
		return Demand
	}
	c.limit = c.trialFrom
	c.trialAfter = min(2*c.trialAfter, trialLast)
	c.failDemand = c.demand
	return Latency
}

// demandWindow adds the rate of Gets queued at the cap, in a window in
// which at least as many Gets queued as conns came back, to the demand,
// and ends a trial back-off that the load has outgrown. A trial that
// failed at overload backs the next one off (up to trialLast windows), as
// more conns there only queue at the backend. On the sizing server, the
// backend's C then doubled with the load, the held time rose with the
// client's doubled work, and the backed-off trial held the cap at the old
// C for 1.5 to 2.6s (TestSizingRunAgainstFixedCaps, "client load"). When
// the Gets that queue come demandShift times as fast as when the trial
// failed, the load changed: the back-off ends. A demand that fell by as
// much is where a later rise is measured from (the sizing run's 200%
// phase, then its 100%). Partial load, which queues Gets in bursts, is
// left out, and under steady overload the average moves by far less, so
// trials stay backed off there (TestBaselineDoesNotDriftUnderSustainedLoad).
func (c *Controller) demandWindow(rate float64) {
	if c.demand == 0 {
		c.demand = rate
	} else {
		c.demand += demandWeight * (rate - c.demand)
	}
	switch {
	case c.failDemand <= 0 || c.trialAfter == trialFirst:
	case c.demand >= demandShift*c.failDemand:
		c.trialAfter, c.failDemand = trialFirst, 0
	case c.demand*demandShift <= c.failDemand:
		c.failDemand = c.demand
	}
}

// demandWeight is the weight of a window in the demand's moving average;
// demandShift the change in it that ends a trial back-off.
const (
	demandWeight = 0.5
	demandShift  = 1.3
)

// served returns the most conns a window of this epoch or the last kept
// busy without queueing: the floor of a latency cut.
func (c *Controller) served() float64 { return math.Max(c.curGood, c.prevGood) }

// maxStalled: a window whose client process waited for CPU (Sample.Lag)
// for more than this share of it is left out.
const maxStalled = 0.5

// refuteFactor: a gradient beyond this many times the cut's threshold is
// not noise on top of a queue at the concurrency served() remembers: the
// backend lost concurrency, and the floor is forgotten
// (TestFollowsHalvedBackend).
const refuteFactor = 1.5

// baselineWindows is how many full windows' returns make one baseline
// candidate.
const baselineWindows = 4

// candidate offers a mean held time, with noise its standard error over
// it, to this epoch's minimum. The minimum of many noisy means is biased
// low, by about twice their standard error: each is offered at its mean
// plus twice its standard error.
func (c *Controller) candidate(mean time.Duration, noise float64) {
	v := time.Duration(float64(mean) * (1 + 2*noise))
	if v > 0 && (c.curMin == 0 || v < c.curMin) {
		c.curMin = v
	}
}

// cut lowers the cap toward target, no lower than half of where the
// episode (or its current halving interval) began.
func (c *Controller) cut(now time.Duration, target float64) {
	first := !c.inEpisode
	if first || now-c.episodeStart >= c.cfg.HalvingInterval {
		c.inEpisode, c.episodeStart, c.episodeCap = true, now, c.limit
	}
	c.limit = c.clamp(math.Max(target, c.episodeCap/2))
	if first {
		c.recoverTo = c.limit
	}
	c.step = 1
}
