package adaptive

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// median returns the median of xs, which it sorts.
func median(xs []int) int {
	slices.Sort(xs)
	return xs[len(xs)/2]
}

// within returns the fraction of xs within frac of want.
func within(xs []int, want int, frac float64) float64 {
	n := 0
	for _, x := range xs {
		if float64(x) >= float64(want)*(1-frac) && float64(x) <= float64(want)*(1+frac) {
			n++
		}
	}
	return float64(n) / float64(len(xs))
}

// TestSettlesNearBackendConcurrency runs steady loads against a backend of
// concurrency 8 from a cap of 1, and checks that the cap settles within
// 25% of 8 (median over the last 20s) and stays there most of the time.
func TestSettlesNearBackendConcurrency(t *testing.T) {
	for _, load := range []float64{0.9, 1.0, 2.0} {
		t.Run(fmt.Sprintf("load=%v", load), func(t *testing.T) {
			s := newSim(DefaultConfig(1, 128, 1), 1, constant(8), constant(load*capacity(8)))
			s.run(30 * time.Second)
			caps := s.limits(10*time.Second, 30*time.Second)
			m := median(caps)
			assert.InDelta(t, 8, m, 2, "median cap")
			assert.GreaterOrEqual(t, within(caps, 8, 0.25), 0.5, "time within 25%% of 8")
			t.Logf("load %v: median cap %d, %.0f%% of the time within 25%%, baseline %v", load, m, 100*within(caps, 8, 0.25), s.ctl.Baseline())
		})
	}
}

// TestFollowsDoubledBackend doubles the backend's concurrency under a load
// that needs it, and checks that the cap follows within 30s (it takes
// about a second).
func TestFollowsDoubledBackend(t *testing.T) {
	c := func(t time.Duration) int {
		if t < 20*time.Second {
			return 8
		}
		return 16
	}
	rate := func(t time.Duration) float64 {
		if t < 20*time.Second {
			return 0.9 * capacity(8)
		}
		return 0.9 * capacity(16)
	}
	s := newSim(DefaultConfig(1, 128, 1), 2, c, rate)
	s.run(60 * time.Second)
	followed := time.Duration(-1)
	for _, p := range s.trace {
		if p.at >= 20*time.Second && p.limit >= 12 {
			followed = p.at - 20*time.Second
			break
		}
	}
	require.GreaterOrEqual(t, followed, time.Duration(0), "the cap never reached 12")
	assert.Less(t, followed, 30*time.Second)
	caps := s.limits(30*time.Second, 60*time.Second)
	assert.InDelta(t, 16, median(caps), 4, "median cap after the doubling")
	t.Logf("followed in %v; median cap after %d", followed, median(caps))
}

// TestFollowsHalvedBackend is the other way round: the backend loses
// half its concurrency (a failover to a smaller replica) under the same
// load, now 180% of its capacity. The cap must come down to the new
// concurrency in a few windows, not hold at what the backend used to
// serve without queueing (the floor of a latency cut, which such a rise
// in latency refutes).
func TestFollowsHalvedBackend(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		c := func(t time.Duration) int {
			if t < 30*time.Second {
				return 16
			}
			return 8
		}
		s := newSim(DefaultConfig(1, 128, 1), seed, c, constant(0.9*capacity(16)))
		s.run(60 * time.Second)
		followed := time.Duration(-1)
		for _, p := range s.trace {
			if p.at >= 30*time.Second && p.limit <= 10 {
				followed = p.at - 30*time.Second
				break
			}
		}
		require.GreaterOrEqual(t, followed, time.Duration(0), "seed %d: the cap never came down to 10", seed)
		assert.Less(t, followed, 3*time.Second, "seed %d", seed)
		assert.InDelta(t, 8, median(s.limits(35*time.Second, 60*time.Second)), 2, "seed %d: median cap after the halving", seed)
		t.Logf("seed %d: cap %d before, down to 10 in %v", seed, median(s.limits(20*time.Second, 30*time.Second)), followed)
	}
}

// TestNoGrowthWhileLatencyIsFlat is failure case (a): a controller that
// reads flat latency as headroom grows to its max even when demand never
// reaches the cap. Here the backend has room for 1000 and latency never
// moves, but demand averages 4 conns in use: the cap must stay near what
// is used, not climb to the max of 1000. With demand of 60 conns, it must
// grow to serve it.
func TestNoGrowthWhileLatencyIsFlat(t *testing.T) {
	s := newSim(DefaultConfig(1, 1000, 8), 3, constant(1000), constant(0.5*capacity(8)))
	s.run(10 * time.Minute)
	top := slices.Max(s.limits(0, 10*time.Minute))
	assert.LessOrEqual(t, top, 32, "a cap of 8 in use by 4 on average may grow for the peaks, not to 1000")
	t.Logf("demand 4: highest cap %d", top)

	s = newSim(DefaultConfig(1, 1000, 8), 3, constant(1000), constant(60*capacity(1)))
	s.run(10 * time.Second)
	failed := s.failed
	s.run(30 * time.Second)
	caps := s.limits(10*time.Second, 30*time.Second)
	assert.GreaterOrEqual(t, median(caps), 60, "demand of 60 conns at flat latency")
	assert.Equal(t, failed, s.failed, "no Get ran out of budget once the cap grew")
}

// TestBaselineDoesNotDriftUnderSustainedLoad is failure case (b): under
// load that never lets up, a baseline taken from recent latency (a long
// average, or a minimum that expires) creeps up to the loaded latency, and
// the cap with it. Thirty minutes at twice the backend's capacity: the
// baseline must stay near the true mean service time and the cap near 8
// from the first minutes to the last.
func TestBaselineDoesNotDriftUnderSustainedLoad(t *testing.T) {
	s := newSim(DefaultConfig(1, 128, 8), 4, constant(8), constant(2*capacity(8)))
	s.run(30 * time.Minute)
	for _, p := range s.trace {
		if p.at < 10*time.Second {
			continue
		}
		if !assert.InDelta(t, float64(s.service), float64(p.baseline), 0.2*float64(s.service), "baseline at %v", p.at) {
			break
		}
	}
	first, last := median(s.limits(time.Minute, 5*time.Minute)), median(s.limits(25*time.Minute, 30*time.Minute))
	assert.InDelta(t, 8, first, 2)
	assert.InDelta(t, 8, last, 2)
	assert.LessOrEqual(t, last, first+1, "no creep")
	assert.GreaterOrEqual(t, within(s.limits(time.Minute, 30*time.Minute), 8, 0.25), 0.8)
	t.Logf("median cap %d in minutes 1-5, %d in 25-30; baseline %v", first, last, s.ctl.Baseline())
}

// TestProbeKeepsBaselineAtTheMinimum is the baseline's other way to go
// wrong under sustained load: a probe's window is one noisy mean, and
// taken as it was, a low one set the baseline below the true minimum for
// two epochs, where every window reads as queueing, the cap cannot grow,
// and noise cuts it. At 90%, 100% and 200% of the backend's capacity,
// where probes run, the baseline must stay at or above 95% of the mean
// service time but for one spell (an unlucky candidate counts for two
// epochs, 7% of these runs). Before probes were offered with their noise
// and without the conns lent before them, it was below for 10% to 38% of
// the run in 6 of these 9 runs.
func TestProbeKeepsBaselineAtTheMinimum(t *testing.T) {
	for _, load := range []float64{0.9, 1, 2} {
		for seed := uint64(1); seed <= 3; seed++ {
			s := newSim(DefaultConfig(1, 128, 8), seed, constant(8), constant(load*capacity(8)))
			s.run(5 * time.Minute)
			below, n := 0, 0
			for _, p := range s.trace {
				if p.at < 10*time.Second {
					continue
				}
				n++
				if float64(p.baseline) < 0.95*float64(s.service) {
					below++
				}
			}
			frac := float64(below) / float64(n)
			assert.LessOrEqual(t, frac, 0.1, "load %v, seed %d: share of the time the baseline was below 95%% of the service time", load, seed)
			t.Logf("load %v, seed %d: baseline below 95%% of the service time %.1f%% of the time", load, seed, 100*frac)
		}
	}
}

// TestBaselineFollowsSlowerBackend is the other side of (b): a minimum
// that never expires would keep cutting the cap of a backend that really
// got slower. The service time doubles; within two epochs the baseline
// follows and the cap returns near the backend's concurrency.
func TestBaselineFollowsSlowerBackend(t *testing.T) {
	s := newSim(DefaultConfig(1, 128, 8), 5, constant(8), constant(0.9*capacity(8)/2))
	s.run(20 * time.Second)
	s.service *= 2
	s.run(60 * time.Second)
	assert.InDelta(t, float64(10*time.Millisecond), float64(s.ctl.Baseline()), float64(2*time.Millisecond))
	assert.InDelta(t, 8, median(s.limits(45*time.Second, 60*time.Second)), 2)
}

// TestLatencyCutKeepsWhatWasServedWithoutQueueing pins the floor of a
// latency cut. The cap over one window's gradient lands below the
// backend's concurrency when noise adds to the gradient: in poolbench's
// sizing run at 90% load, cuts from 9.7 to 7.6 at a gradient of 1.34 with
// C at 8, each a dip that queued Gets where a fixed cap of 8 does not. A
// cut goes no lower than the most conns kept busy in a recent window that
// did not queue, unless the rise is too large for noise.
func TestLatencyCutKeepsWhatWasServedWithoutQueueing(t *testing.T) {
	c := New(DefaultConfig(1, 128, 9))
	f := feeder{c: c}
	window := func(returns int64, held, length time.Duration, saturated bool) {
		f.window(returns, held, 0, length, saturated)
	}
	window(50, 20*time.Millisecond, 100*time.Millisecond, false) // the baseline: 20ms
	require.Equal(t, 20*time.Millisecond, c.Baseline())
	// Not in use, so no growth: 50 returns of 20ms in 107.5ms kept 9.3
	// conns busy, 8 once its noise is allowed for.
	window(50, 20*time.Millisecond, 107500*time.Microsecond, false)
	require.Equal(t, 9, c.Limit())

	// Queueing: 9/1.34*1.05 would be 7.
	window(50, 26800*time.Microsecond, 150*time.Millisecond, true)
	assert.Equal(t, 8, c.Limit(), "cut to the conns served without queueing")

	// A rise of 2x is not noise: the backend lost concurrency, and the
	// floor goes with it.
	window(50, 40*time.Millisecond, 250*time.Millisecond, true)
	assert.Less(t, c.Limit(), 8, "cut below a floor the rise refutes")
}

// feeder feeds a controller whole windows of samples.
type feeder struct {
	c   *Controller
	now time.Duration
}

// window feeds one window of length: returns conns held for held on
// average, with cv their coefficient of variation (0: no noise known).
func (f *feeder) window(returns int64, held time.Duration, cv float64, length time.Duration, saturated bool) {
	f.c.Observe(f.now, Sample{})
	f.now += length
	var heldSq int64
	if cv > 0 {
		us := float64(held / time.Microsecond)
		heldSq = int64(float64(returns) * us * us * (1 + cv*cv))
	}
	f.c.Observe(f.now, Sample{Returns: returns, Held: time.Duration(returns) * held, HeldSq: heldSq, Saturated: saturated})
}

// TestGrowthStepSurvivesNoisyWindows: a window whose held time is within
// its noise but above tolerance neither grows the cap nor restarts the
// doubling of its growth. On a loaded machine such windows came between
// nearly every two growth windows, so after the backend's C doubled the
// cap grew by one a window, and took 0.5 to 0.8s to follow instead of
// 0.2 to 0.3s.
func TestGrowthStepSurvivesNoisyWindows(t *testing.T) {
	f := feeder{c: New(DefaultConfig(1, 128, 8))}
	const held = 20 * time.Millisecond
	f.window(50, held, 0.5, 100*time.Millisecond, false) // the baseline
	base := f.c.Baseline()
	f.window(50, base, 0.5, 100*time.Millisecond, true)
	require.Equal(t, 9, f.c.Limit(), "grown by 1")
	f.window(50, base*110/100, 0.5, 100*time.Millisecond, true) // above 1.05, within 1.05 x (1 + 2 x 0.07)
	require.Equal(t, 9, f.c.Limit(), "held")
	f.window(50, base, 0.5, 100*time.Millisecond, true)
	assert.Equal(t, 11, f.c.Limit(), "grown by 2: the step survived the noisy window")
	f.window(50, base, 0.5, 100*time.Millisecond, true)
	assert.Equal(t, 15, f.c.Limit(), "grown by 4")
	f.window(50, base, 0.5, 100*time.Millisecond, false)
	f.window(50, base, 0.5, 100*time.Millisecond, true)
	assert.Equal(t, 16, f.c.Limit(), "a window not in use restarts the step")
}

// TestBurstOfTimeoutsIsBounded is failure case (c): an AIMD limiter that
// cuts on every timeout collapses to its minimum after a burst of them and
// takes minutes to climb back. The backend stalls for a second, every
// request times out; the cap may halve, no more, and is back near 8 within
// a second of the stall's end.
func TestBurstOfTimeoutsIsBounded(t *testing.T) {
	s := newSim(DefaultConfig(1, 128, 8), 6, constant(8), constant(1.5*capacity(8)))
	stallFrom, stallTo := 20*time.Second, 21*time.Second
	s.stall = func(t time.Duration) bool { return t >= stallFrom && t < stallTo }
	s.stallEnd = func(time.Duration) time.Duration { return stallTo }
	s.run(stallFrom)
	before := median(s.limits(10*time.Second, stallFrom))
	s.run(40 * time.Second)
	low := slices.Min(s.limits(stallFrom, stallTo+time.Second))
	assert.GreaterOrEqual(t, low, before/2, "bounded: at most halved")
	var back time.Duration = -1
	for _, p := range s.trace {
		if p.at >= stallTo && p.limit >= 6 {
			back = p.at - stallTo
			break
		}
	}
	require.GreaterOrEqual(t, back, time.Duration(0), "never recovered")
	assert.LessOrEqual(t, back, time.Second, "recovery")
	assert.InDelta(t, 8, median(s.limits(25*time.Second, 40*time.Second)), 2)
	t.Logf("cap %d before, lowest %d, back in %v", before, low, back)
}

func TestBoundsAndSetLimit(t *testing.T) {
	c := New(Config{Min: 2, Max: 4, Initial: 9})
	assert.Equal(t, 4, c.Limit(), "Initial clamped to Max")
	c.SetLimit(0)
	assert.Equal(t, 2, c.Limit())
	c.SetLimit(3)
	assert.Equal(t, 3, c.Limit())
	assert.Zero(t, c.Baseline())
	// A window with nothing returned changes nothing.
	n, why := c.Observe(0, Sample{Saturated: true})
	assert.Equal(t, 3, n)
	assert.Equal(t, Unchanged, why)
	n, why = c.Observe(2*time.Second, Sample{Saturated: true})
	assert.Equal(t, 3, n)
	assert.Equal(t, Unchanged, why)
	// Saturated at flat latency: it grows, within Max.
	for i := range 10 {
		c.Observe(time.Duration(3+i)*time.Second, Sample{Returns: 100, Held: 100 * time.Millisecond, Saturated: true})
	}
	assert.Equal(t, 4, c.Limit())
	assert.Equal(t, time.Millisecond, c.Baseline())
}

// TestGoodputAgainstFixedCaps compares, in the model, the requests served
// within their deadline by the adaptive cap and by fixed caps of 4 to 128
// at steady loads: the adaptive cap must serve at least 95% of the best.
func TestGoodputAgainstFixedCaps(t *testing.T) {
	for _, load := range []float64{0.5, 0.9, 1.0, 2.0} {
		served := func(cfg Config) int64 {
			s := newSim(cfg, 7, constant(8), constant(load*capacity(8)))
			s.run(10 * time.Second)
			before := s.served
			s.run(70 * time.Second)
			return s.served - before
		}
		best := int64(0)
		for _, n := range []int{4, 8, 16, 32, 128} {
			best = max(best, served(DefaultConfig(n, n, n)))
		}
		got := served(DefaultConfig(1, 128, 1))
		assert.GreaterOrEqual(t, float64(got), 0.95*float64(best), "load %v", load)
		t.Logf("load %v: adaptive served %.1f%% of the best fixed cap's", load, 100*float64(got)/float64(best))
	}
}

// TestTailAgainstFixedCaps compares the p99 latency, arrival to reply, of
// the requests served by the adaptive cap and by fixed caps, in a model at
// poolbench's sizing scale (20ms mean service, 100ms for a Get, 200ms for
// the request). Below capacity, where the queue forms does not change the
// latency, so every fixed cap of at least 8 has the same tail: an adaptive
// cap that swings below 8 after a burst (cut to what the load kept busy,
// or probing a baseline that needs no probe) makes Gets queue where no
// fixed cap does. Its p99 must be within 1.1x the best fixed cap's (the
// one with the most goodput), at every load and seed.
func TestTailAgainstFixedCaps(t *testing.T) {
	for _, load := range []float64{0.5, 0.9, 1.0, 2.0} {
		for seed := uint64(7); seed < 10; seed++ {
			run := func(cfg Config) (served int64, p99 time.Duration) {
				s := newSim(cfg, seed, constant(8), constant(load*8/(20*time.Millisecond).Seconds()))
				s.service, s.getBudget, s.deadline = 20*time.Millisecond, 100*time.Millisecond, 200*time.Millisecond
				s.run(10 * time.Second)
				before := s.served
				s.record = true
				s.run(70 * time.Second)
				if len(s.latencies) == 0 {
					return 0, 0
				}
				slices.Sort(s.latencies)
				return s.served - before, s.latencies[len(s.latencies)*99/100]
			}
			var best int64
			var bestP99 time.Duration
			for _, n := range []int{4, 8, 16, 32, 128} {
				if served, p99 := run(DefaultConfig(n, n, n)); served > best || (served == best && p99 < bestP99) {
					best, bestP99 = served, p99
				}
			}
			served, p99 := run(DefaultConfig(1, 128, 1))
			assert.GreaterOrEqual(t, float64(served), 0.95*float64(best), "load %v, seed %d: goodput", load, seed)
			assert.LessOrEqual(t, float64(p99), 1.1*float64(bestP99), "load %v, seed %d: p99 %v against %v", load, seed, p99, bestP99)
			t.Logf("load %v, seed %d: p99 %v, %.2fx the best fixed cap's; goodput %.1f%%", load, seed, p99, float64(p99)/float64(bestP99), 100*float64(served)/float64(best))
		}
	}
}

// TestTrialTellsClientLoadFromQueueing pins the trial (see trialFirst):
// at a cap of 8, Gets waiting, windows held 20% above a baseline of 20ms
// are cut to 7 and lead to a trial at 11. If the 11 conns held at once
// were served at the same held time (the client was slower, the backend
// not queueing), the cap stays and the baseline moves to 24ms; if the
// held time rose with the conns (the backend queues), the cap goes back,
// and the next trial waits for twice as many stuck windows.
func TestTrialTellsClientLoadFromQueueing(t *testing.T) {
	for _, queueing := range []bool{false, true} {
		f := feeder{c: New(DefaultConfig(1, 128, 8))}
		// window feeds returns held for held on average, conc of them
		// held at once.
		window := func(returns int64, held time.Duration, conc float64) {
			f.window(returns, held, 0, time.Duration(float64(returns)*float64(held)/conc), true)
		}
		window(50, 20*time.Millisecond, 8) // the baseline
		require.Equal(t, 20*time.Millisecond, f.c.Baseline())
		require.Equal(t, 9, f.c.Limit(), "grown by 1: in use at the baseline")
		f.c.SetLimit(8)
		window(50, 24*time.Millisecond, 8)
		require.False(t, f.c.trialing, "one stuck window")
		window(50, 24*time.Millisecond, 8)
		require.True(t, f.c.trialing, "two stuck windows: a trial")
		from := f.c.trialFrom
		require.Equal(t, 7.0, math.Round(from), "the stuck windows' cuts took it to 7: 8 x 1.05 / 1.2")
		require.Equal(t, 11, f.c.Limit(), "a trial at 1.5x")
		held := 24 * time.Millisecond
		if queueing {
			held = 24 * time.Millisecond * 11 / 7 // as many served as at 7, with 11 held at once
		}
		for range 4 {
			window(50, held, 11)
		}
		require.False(t, f.c.trialing, "judged after 4 full windows")
		if !queueing {
			assert.Equal(t, 11, f.c.Limit(), "kept: the extra conns were served")
			assert.Equal(t, 24*time.Millisecond, f.c.Baseline(), "the baseline moved to the client's held time")
			continue
		}
		assert.Equal(t, from, f.c.limit, "back: the backend queued")
		assert.Equal(t, 20*time.Millisecond, f.c.Baseline())
		assert.Equal(t, 2*trialFirst, f.c.trialAfter, "the next trial waits longer")
	}
}

// TestClientStallIsNotQueueing pins Sample.Lag: while the client process
// waits for CPU (its sampling goroutine wakes late), every conn it holds
// is held longer, with no queueing at the backend. On a shared machine,
// poolbench's sizing run saw the cap cut from 9 to 1 by such windows, at
// 200% load where the best fixed cap was 16. A window a third of which
// the process spent stalled, held 1.5x the baseline, is the baseline
// held: the cap grows as Gets wait. A window stalled for most of it says
// nothing.
func TestClientStallIsNotQueueing(t *testing.T) {
	c := New(DefaultConfig(1, 128, 8))
	c.Observe(0, Sample{})
	c.Observe(100*time.Millisecond, Sample{Returns: 50, Held: 50 * 20 * time.Millisecond, Saturated: false})
	require.Equal(t, 20*time.Millisecond, c.Baseline())
	n, why := c.Observe(250*time.Millisecond, Sample{Returns: 50, Held: 50 * 30 * time.Millisecond, Saturated: true, Lag: 50 * time.Millisecond})
	assert.Equal(t, Demand, why, "a stall, not the backend's queue")
	assert.Equal(t, 9, n)
	n, why = c.Observe(400*time.Millisecond, Sample{Returns: 50, Held: 50 * 60 * time.Millisecond, Saturated: true, Lag: 100 * time.Millisecond})
	assert.Equal(t, Unchanged, why, "stalled for two thirds of the window")
	assert.Equal(t, 9, n)
}
