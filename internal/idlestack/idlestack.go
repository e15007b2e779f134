// Package idlestack is the pool's set of idle conns: a stack whose top is
// the most recently returned conn.
//
// Handing out the top first (LIFO) keeps a few conns busy and lets the rest
// age, so that after a burst the idle-timeout reaper can shrink the pool
// back. Because items are pushed in the order they were returned, the
// stack is also sorted by return time, oldest at the bottom, and the reaper
// can walk it from the bottom and stop early.
//
// A Stack is not safe for concurrent use; the pool guards it with its lock.
package idlestack

// Stack holds idle items, bottom (oldest) first. The zero value is an empty
// stack ready to use.
//
// Invariant: items is sorted by the caller's recency key, ascending, as
// long as the caller only pushes items newer than the top and re-inserts
// older items with [Stack.Insert].
type Stack[T any] struct {
	items []T
}

// Len returns the number of items on s.
func (s *Stack[T]) Len() int { return len(s.items) }

// Push puts x on top of s.
func (s *Stack[T]) Push(x T) { s.items = append(s.items, x) }

// Pop removes and returns the top (most recent) item.
func (s *Stack[T]) Pop() (T, bool) {
	var zero T
	n := len(s.items)
	if n == 0 {
		return zero, false
	}
	x := s.items[n-1]
	s.items[n-1] = zero // drop the reference for the garbage collector
	s.items = s.items[:n-1]
	return x, true
}

// PopFunc removes and returns the topmost (most recent) item for which ok
// returns true.
func (s *Stack[T]) PopFunc(ok func(T) bool) (T, bool) {
	var zero T
	for i := len(s.items) - 1; i >= 0; i-- {
		if x := s.items[i]; ok(x) {
			copy(s.items[i:], s.items[i+1:])
			s.items[len(s.items)-1] = zero
			s.items = s.items[:len(s.items)-1]
			return x, true
		}
	}
	return zero, false
}

// PopBottom removes and returns the bottom (least recent) item.
func (s *Stack[T]) PopBottom() (T, bool) {
	var zero T
	if len(s.items) == 0 {
		return zero, false
	}
	x := s.items[0]
	copy(s.items, s.items[1:])
	s.items[len(s.items)-1] = zero
	s.items = s.items[:len(s.items)-1]
	return x, true
}

// Insert puts x where it belongs by recency: below every item that is not
// older than it. before(a, b) must report whether a is older than b. Insert
// is for items coming back from a background check, which keep the age
// they had; a freshly returned item is pushed with [Stack.Push].
func (s *Stack[T]) Insert(x T, before func(a, b T) bool) {
	// Binary search for the first item that x is older than.
	lo, hi := 0, len(s.items)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if before(x, s.items[mid]) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	var zero T
	s.items = append(s.items, zero)
	copy(s.items[lo+1:], s.items[lo:])
	s.items[lo] = x
}

// RemoveFunc walks s from the bottom (oldest) up, removes every item for
// which remove returns true, and appends the removed items to out, which it
// returns. Order among the kept items is preserved. remove sees the items
// in age order, so it can stop removing once enough are left.
func (s *Stack[T]) RemoveFunc(remove func(T) bool, out []T) []T {
	kept := s.items[:0]
	for _, x := range s.items {
		if remove(x) {
			out = append(out, x)
		} else {
			kept = append(kept, x)
		}
	}
	var zero T
	for i := len(kept); i < len(s.items); i++ {
		s.items[i] = zero
	}
	s.items = kept
	return out
}

// All returns the items bottom first. The slice is s's own storage: the
// caller may read it under the same lock, and must not keep it.
func (s *Stack[T]) All() []T { return s.items }
