//go:build linux && amd64 && !connpool_notsc

package clock

import (
	"math/bits"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// rdtsc reads the time-stamp counter. It does not wait for the
// instructions before it to finish (RDTSCP or LFENCE would, at twice the
// cost): the few cycles it may run early are nothing next to the 50µs
// that the first bucket of a histogram holds.
func rdtsc() int64

// cpuid executes CPUID with EAX=leaf and ECX=0.
func cpuid(leaf uint32) (eax, ebx, ecx, edx uint32)

// useTSC is decided once, by setup: whether ticks count TSC cycles.
// With it, cur holds the rate.
var (
	setupOnce sync.Once
	ready     atomic.Bool // setup has run
	useTSC    bool        // written by setup before ready
)

// rate converts TSC cycles to nanoseconds: ns = cycles*mult >> 32. The
// first one, measured over calibrateFor when the clock is first read, is
// refined once, over a second or more, at the first Since after refineAt.
type rate struct {
	mult     uint64
	refineAt int64 // TSC reading; 0 once refined
	t0, n0   int64 // the first calibration point: TSC and nanotime
}

var (
	cur      atomic.Pointer[rate]
	refining atomic.Bool
)

const (
	calibrateFor = 200 * time.Microsecond // the first rate: within about 5e-4
	refineAfter  = time.Second            // the refined rate: within about 1e-7
)

// setup decides whether to use the TSC and, if so, measures its rate. A
// TSC that does not advance over calibrateFor, or whose rate is not that
// of a processor clock (100 MHz to 10 GHz), is not used.
func setup() {
	setupOnce.Do(func() {
		if invariantTSC() && kernelClocksource() == "tsc" {
			if r := calibrate(); r != nil {
				cur.Store(r)
				useTSC = true
			}
		}
		ready.Store(true)
	})
}

// calibrate measures the TSC's rate against nanotime over calibrateFor,
// or returns nil if it is not a plausible processor clock.
func calibrate() *rate {
	t0, n0 := sample()
	for {
		t1, n1 := sample()
		ns := n1 - n0
		if ns < int64(calibrateFor) {
			continue
		}
		hz := float64(t1-t0) / float64(ns) * 1e9
		if hz < 100e6 || hz > 10e9 {
			return nil
		}
		return &rate{
			mult:     multFor(t1-t0, ns),
			refineAt: t0 + int64(hz*refineAfter.Seconds()),
			t0:       t0, n0: n0,
		}
	}
}

// invariantTSC reports whether CPUID says the TSC ticks at a constant
// rate in every power state (leaf 0x80000007, EDX bit 8).
func invariantTSC() bool {
	if maxExt, _, _, _ := cpuid(0x80000000); maxExt < 0x80000007 {
		return false
	}
	_, _, _, edx := cpuid(0x80000007)
	return edx&(1<<8) != 0
}

// kernelClocksource returns the kernel's current clocksource, or "".
func kernelClocksource() string {
	b, err := os.ReadFile("/sys/devices/system/clocksource/clocksource0/current_clocksource")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// sample reads the TSC and nanotime as close together as it can: of a
// few tries, the one whose TSC reading the two nanotime reads bracket
// most tightly, with nanotime taken as their midpoint.
func sample() (tsc, ns int64) {
	best := int64(-1)
	for range 8 {
		a := nanotime()
		t := rdtsc()
		b := nanotime()
		if best < 0 || b-a < best {
			best, tsc, ns = b-a, t, a+(b-a)/2
		}
	}
	return tsc, ns
}

// multFor returns the rate of cycles TSC cycles in ns nanoseconds, as a
// 32.32 fixed-point number of nanoseconds per cycle.
func multFor(cycles, ns int64) uint64 {
	hi, lo := bits.Mul64(uint64(ns), 1<<32)
	q, _ := bits.Div64(hi, lo, uint64(cycles))
	return q
}

// Source names what a tick counts: "tsc" or "nanotime".
func Source() string {
	if !ready.Load() {
		setup()
	}
	if useTSC {
		return "tsc"
	}
	return "nanotime"
}

// Ticks reads the clock: the TSC if it is safe to use, else nanotime.
// The first call decides which, and, for the TSC, measures its rate
// against nanotime (spinning for 200µs).
func Ticks() int64 {
	if !ready.Load() {
		setup()
	}
	if useTSC {
		return rdtsc()
	}
	return nanotime()
}

// Since returns the time elapsed since start, a reading of Ticks; never
// negative.
func Since(start int64) time.Duration {
	if !ready.Load() {
		setup()
	}
	if !useTSC {
		return time.Duration(max(nanotime()-start, 0))
	}
	return cycles(start, rdtsc())
}

// Between returns the time from start to end, two readings of Ticks;
// never negative.
func Between(start, end int64) time.Duration {
	if !ready.Load() {
		setup()
	}
	if !useTSC {
		return time.Duration(max(end-start, 0))
	}
	return cycles(start, end)
}

// cycles converts the TSC cycles from start to end to a duration.
func cycles(start, end int64) time.Duration {
	r := cur.Load()
	if r.refineAt != 0 && end > r.refineAt {
		r = refine(r)
	}
	d := end - start
	if d <= 0 {
		return 0
	}
	hi, lo := bits.Mul64(uint64(d), r.mult)
	return time.Duration(hi<<32 | lo>>32)
}

// refine measures the rate again over the whole time since the first
// calibration point, once; the caller that loses the race keeps r.
func refine(r *rate) *rate {
	if !refining.CompareAndSwap(false, true) {
		return r
	}
	t1, n1 := sample()
	fine := &rate{mult: multFor(t1-r.t0, n1-r.n0), t0: r.t0, n0: r.n0}
	cur.Store(fine)
	return fine
}
