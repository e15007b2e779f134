// Package yieldlock is a mutex for critical sections of a few dozen
// nanoseconds that many goroutines contend for: the pool's idle stack.
//
// [sync.Mutex] spins briefly and then parks a goroutine that cannot get
// the lock. That is right when every thread has a core: the holder is
// running and finishes soon. When there are more threads than cores
// (GOMAXPROCS above the CPU count), the holder's thread is often waiting
// for a core, the spin is wasted, and parking and waking a goroutine
// costs microseconds, far more than the critical section. A [Mutex] set to
// yield gives its core away to another thread a few times first, as the
// runtime's own locks do, so that a descheduled holder runs and finishes;
// only then does it park like a sync.Mutex. Measured on a 2-core machine
// with a 20 ns critical section: at GOMAXPROCS 8, yielding halves the cost
// of a contended Lock; at GOMAXPROCS 2 it adds a third, so it is off by
// default.
package yieldlock

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// yields is how many times a contended Lock gives its thread's core away
// before it parks.
const yields = 4

// Mutex is a mutual exclusion lock. The zero value is an unlocked Mutex
// that does not yield. It must not be copied after first use.
type Mutex struct {
	mu    sync.Mutex
	yield atomic.Bool
}

// SetYield says whether a contended Lock yields its core before it parks.
// It may be called at any time, concurrently with Lock; it writes only on
// a change, so that calling it often does not steal the lock's cache line.
func (m *Mutex) SetYield(on bool) {
	if m.yield.Load() != on {
		m.yield.Store(on)
	}
}

// Oversubscribed reports whether there are more Ps than CPUs: the case for
// SetYield(true).
func Oversubscribed() bool { return runtime.GOMAXPROCS(0) > runtime.NumCPU() }

// Lock locks m, waiting if it is held.
func (m *Mutex) Lock() {
	if m.mu.TryLock() {
		return
	}
	m.lockSlow()
}

func (m *Mutex) lockSlow() {
	if m.yield.Load() {
		for range yields {
			yield()
			if m.mu.TryLock() {
				return
			}
		}
	}
	m.mu.Lock()
}

// TryLock locks m if it is free and reports whether it did.
func (m *Mutex) TryLock() bool { return m.mu.TryLock() }

// Unlock unlocks m. As with sync.Mutex, unlocking an unlocked Mutex is a
// fatal error.
func (m *Mutex) Unlock() { m.mu.Unlock() }
