// Package clock is the pool's cheapest monotonic clock, for stamps taken
// on the fast path of every Get and Put (the use-time histogram): a
// reading is a tick count, and only the difference of two readings is
// converted to a duration.
//
// On linux/amd64 a tick is a cycle of the processor's time-stamp counter
// (RDTSC, about 9 ns here against 21 ns for the runtime's monotonic
// clock through the vDSO and 23 ns for time.Since), when it is safe to
// use: the CPU says its TSC is invariant (it ticks at a constant rate in
// every P-state and sleep state), and the kernel chose it as its own
// clocksource, which it does only once it has found the TSC in sync
// across CPUs and stable against another clock. Everywhere else, or
// built with the tag connpool_notsc, a tick is a nanosecond of the
// runtime's monotonic clock (runtime.nanotime, the clock under
// time.Since).
//
// What the TSC does not promise, and the kernel's check at boot cannot
// see: a TSC the kernel later finds unstable (its watchdog then moves the
// system to another clocksource; this package does not follow it), and a
// virtual machine migrated to a host whose TSC runs at another rate
// without the hypervisor scaling it. Either skews durations, by the ratio
// of the rates; neither affects correctness, only what the histogram
// shows, and [Since] never returns a negative duration, so a reading
// taken on one CPU and compared on another with a slightly earlier TSC
// reads as 0. Build with connpool_notsc where that matters.
package clock

import (
	_ "unsafe" // for go:linkname
)

// nanotime is the runtime's monotonic clock, in nanoseconds: what
// time.Since reads, without converting a time.Time. The runtime keeps
// the linkname for the packages that use it (go.dev/issue/67401).
//
//go:linkname nanotime runtime.nanotime
func nanotime() int64

// Nanotime returns the runtime's monotonic clock in nanoseconds, from an
// arbitrary origin.
func Nanotime() int64 { return nanotime() }
