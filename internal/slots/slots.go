// Package slots is a counting semaphore whose size can change while it is
// in use: the cap of a connpool Group, which SetGroupMaxConns resizes.
package slots

import (
	"container/list"
	"context"
	"sync"
)

// Slots hands out up to Max slots at once. Waiters are served first come,
// first served, by direct hand-off: a released slot goes to the first
// waiter, never to a newcomer. A waiter keeps its place for as long as it
// waits, however often it stops to do something else meanwhile (see
// [Slots.Join]). It is safe for concurrent use.
type Slots struct {
	mu      sync.Mutex // guards the fields below
	used    int        // may exceed max after a shrink, until enough are released
	max     int
	waiters list.List // of *Waiter, oldest first; each leaves it granted or by Leave
}

// Waiter is a place in the queue of a [Slots], from [Slots.Join].
type Waiter struct {
	granted chan struct{} // closed, under Slots.mu, when the waiter is granted a slot
	e       *list.Element // its place; nil once granted or gone
	at      int64         // the caller's stamp, for Waiting
}

// Granted returns a channel closed when w is granted a slot.
func (w *Waiter) Granted() <-chan struct{} { return w.granted }

// At returns the stamp w joined with.
func (w *Waiter) At() int64 { return w.at }

// New returns Slots of size n.
func New(n int) *Slots { return &Slots{max: n} }

// TryAcquire takes a slot if one is free and nobody waits.
func (s *Slots) TryAcquire() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.used < s.max && s.waiters.Len() == 0 {
		s.used++
		return true
	}
	return false
}

// Join queues for a slot behind every waiter already queued, or takes one
// at once if one is free and nobody waits: w.Granted is then closed when
// Join returns. at is the caller's stamp of when it began to wait, which
// [Slots.Waiting] reports for the oldest waiter. The waiter holds its
// place until it is granted a slot or calls [Slots.Leave].
func (s *Slots) Join(at int64) *Waiter {
	w := &Waiter{granted: make(chan struct{}), at: at}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.used < s.max && s.waiters.Len() == 0 {
		s.used++
		close(w.granted)
		return w
	}
	w.e = s.waiters.PushBack(w)
	return w
}

// Leave takes w out of the queue. It reports false if w was granted a
// slot first: the caller holds that slot, to use or to Release.
func (s *Slots) Leave(w *Waiter) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w.e == nil {
		return false
	}
	s.waiters.Remove(w.e)
	w.e = nil
	s.grantLocked() // a waiter behind this one may fit now
	return true
}

// Acquire takes a slot, waiting for one until ctx ends. It returns ctx's
// error if ctx ended first; a slot granted at that instant is kept, and
// Acquire returns nil.
func (s *Slots) Acquire(ctx context.Context) error {
	w := s.Join(0)
	select {
	case <-w.granted:
		return nil
	case <-ctx.Done():
	}
	if !s.Leave(w) { // granted as ctx ended: keep it
		return nil
	}
	return ctx.Err()
}

// Release gives back a slot, to the first waiter if the size allows.
func (s *Slots) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.used--
	s.grantLocked()
}

// Resize sets the size to n. Growing serves waiters at once; shrinking
// takes back no slot: the next ones released are not handed out until
// fewer than n are used.
func (s *Slots) Resize(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.max = n
	s.grantLocked()
}

// Used returns the slots held now and the size.
func (s *Slots) Used() (used, size int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.used, s.max
}

// Free reports whether a newcomer would get a slot now: fewer than the
// size are used and nobody waits.
func (s *Slots) Free() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.used < s.max && s.waiters.Len() == 0
}

// Waiting returns how many wait for a slot now and the stamp the oldest
// of them joined with (0 when none waits).
func (s *Slots) Waiting() (n int, oldest int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.waiters.Front(); f != nil {
		oldest = f.Value.(*Waiter).at
	}
	return s.waiters.Len(), oldest
}

// grantLocked hands free slots to waiters, first come first served.
func (s *Slots) grantLocked() {
	for s.used < s.max && s.waiters.Len() > 0 {
		w := s.waiters.Remove(s.waiters.Front()).(*Waiter)
		w.e = nil
		s.used++
		close(w.granted)
	}
}
