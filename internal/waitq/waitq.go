// Package waitq is the pool's queue of waiting callers, in arrival order:
// served first come, first served from the front, or newest first from
// the back.
//
// It is an intrusive doubly linked list: the caller owns each [Elem], so a
// waiter whose context ends can take itself out in O(1) without searching.
// A Queue is not safe for concurrent use; the pool guards it with its lock.
package waitq

// Elem is one entry of a [Queue]. Its zero value is ready to use. An Elem
// belongs to at most one queue at a time.
type Elem[T any] struct {
	// Value is the caller's payload; the queue never reads it.
	Value T

	next, prev *Elem[T]
	queued     bool
}

// Queued reports whether e is in a queue now.
func (e *Elem[T]) Queued() bool { return e.queued }

// Queue is a first-in, first-out list of elements. The zero value is an
// empty queue ready to use.
//
// Invariant: head == nil exactly when tail == nil exactly when n == 0; every
// element reachable from head has queued set, and no other element does.
type Queue[T any] struct {
	head, tail *Elem[T]
	n          int
}

// Len returns the number of elements in q.
func (q *Queue[T]) Len() int { return q.n }

// Front returns the element at the front of q, or nil if q is empty.
func (q *Queue[T]) Front() *Elem[T] { return q.head }

// Next returns the element behind e in its queue, or nil.
func (e *Elem[T]) Next() *Elem[T] { return e.next }

// Back returns the element at the back of q, the newest, or nil if q is
// empty.
func (q *Queue[T]) Back() *Elem[T] { return q.tail }

// Prev returns the element before e in its queue, or nil.
func (e *Elem[T]) Prev() *Elem[T] { return e.prev }

// PushBack appends e to the back of q. It panics if e is already queued:
// that is a broken invariant of the caller, not user input.
func (q *Queue[T]) PushBack(e *Elem[T]) {
	if e.queued {
		panic("connpool: waitq element pushed twice")
	}
	e.queued = true
	e.next = nil
	e.prev = q.tail
	if q.tail == nil {
		q.head = e
	} else {
		q.tail.next = e
	}
	q.tail = e
	q.n++
}

// PopFront removes and returns the element at the front of q, or nil if q
// is empty.
func (q *Queue[T]) PopFront() *Elem[T] {
	e := q.head
	if e != nil {
		q.unlink(e)
	}
	return e
}

// Remove takes e out of q and reports whether it was there. Removing an
// element that was already popped or removed is a no-op that returns false,
// which is how a cancelled waiter learns it was served first.
func (q *Queue[T]) Remove(e *Elem[T]) bool {
	if !e.queued {
		return false
	}
	q.unlink(e)
	return true
}

func (q *Queue[T]) unlink(e *Elem[T]) {
	if e.prev == nil {
		q.head = e.next
	} else {
		e.prev.next = e.next
	}
	if e.next == nil {
		q.tail = e.prev
	} else {
		e.next.prev = e.prev
	}
	e.next, e.prev, e.queued = nil, nil, false
	q.n--
}
