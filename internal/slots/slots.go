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
// waiter, never to a newcomer. It is safe for concurrent use.
type Slots struct {
	mu      sync.Mutex // guards the fields below
	used    int        // may exceed max after a shrink, until enough are released
	max     int
	waiters list.List // of chan struct{}, closed when granted a slot
}

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

// Acquire takes a slot, waiting for one until ctx ends. It returns ctx's
// error if ctx ended first; a slot granted at that instant is kept, and
// Acquire returns nil.
func (s *Slots) Acquire(ctx context.Context) error {
	s.mu.Lock()
	if s.used < s.max && s.waiters.Len() == 0 {
		s.used++
		s.mu.Unlock()
		return nil
	}
	granted := make(chan struct{})
	e := s.waiters.PushBack(granted)
	s.mu.Unlock()
	select {
	case <-granted:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-granted: // granted as ctx ended: keep it
		return nil
	default:
	}
	s.waiters.Remove(e)
	s.grantLocked() // a waiter behind this one may fit now
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

// grantLocked hands free slots to waiters, first come first served.
func (s *Slots) grantLocked() {
	for s.used < s.max && s.waiters.Len() > 0 {
		e := s.waiters.Front()
		s.waiters.Remove(e)
		s.used++
		close(e.Value.(chan struct{}))
	}
}
