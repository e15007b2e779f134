package connpool

import (
	"context"
	"errors"
	"fmt"
)

var (
	// ErrClosed is returned by Get, TryGet and waiting Gets once Close or
	// Shutdown has begun, and by a second Close or Shutdown.
	ErrClosed = errors.New("connpool: pool closed")

	// ErrNoIdleConn is returned by TryGet when no idle conn is ready.
	ErrNoIdleConn = errors.New("connpool: no idle conn")

	// ErrConnReturned is returned by Put and Close of a *Conn that was
	// already returned: the second return is harmless.
	ErrConnReturned = errors.New("connpool: conn already returned")

	// ErrForeignConn is returned by Put of a nil *Conn or of one that came
	// from another pool; the conn is left untouched.
	ErrForeignConn = errors.New("connpool: conn does not belong to this pool")

	// ErrInvalidOption is wrapped by every error New and NewGroup return
	// for an invalid option or address, and by the Set methods' errors for
	// a value out of range; the message names the option and its value,
	// and where a default came from.
	ErrInvalidOption = errors.New("connpool: invalid option")

	// ErrWrongAddress is returned by DialContext for a network or address
	// other than the pool's.
	ErrWrongAddress = errors.New("connpool: address does not match the pool")

	// ErrTooManyWaiters is returned by a Get that would have queued
	// behind WithMaxWaiters Gets already waiting.
	ErrTooManyWaiters = errors.New("connpool: too many Gets waiting")

	// ErrClientPoolOverCap is wrapped by the error of a DialContext whose
	// wait at the cap ran out while DialContext clients held every conn of
	// the pool, and by that of one that fails fast in that state after such
	// a wait: a client's own pool is larger than the pool's MaxConns. The
	// message names the client settings to change.
	ErrClientPoolOverCap = errors.New("connpool: DialContext clients hold every conn")

	// ErrShed is wrapped by the error of a Get that the pool's queue
	// policy turned away under overload ([WithQueuePolicy]): at once, as
	// its deadline was nearer than the wait (that error wraps
	// context.DeadlineExceeded too), or after waiting past ShedAfter while
	// the queue was overloaded. Retrying at once only adds to the load.
	ErrShed = errors.New("connpool: Get shed under overload")

	// ErrHealthCheck is wrapped by the errors of the pool's own checkers
	// when a conn fails its check.
	ErrHealthCheck = errors.New("connpool: health check failed")
)

// waitError is returned when a Get's context ends before a conn is ready.
// It wraps the context's error (and its cause, when that differs) and says
// what the pool was doing, so that an operator can tell exhaustion (in use
// at max) from an outage (dialing, with a last dial error).
type waitError struct {
	pool  string // the pool's name
	err   error  // ctx.Err()
	cause error  // context.Cause(ctx), when it differs from err
	state string
	hint  error // why the wait could not be served and what to change, or nil
}

func (e *waitError) Error() string {
	msg := fmt.Sprintf("connpool: get %s: %v (%s)", e.pool, e.err, e.state)
	if e.cause != nil {
		msg += ": cause: " + e.cause.Error()
	}
	if e.hint != nil {
		msg += ": " + e.hint.Error()
	}
	return msg
}

func (e *waitError) Unwrap() []error {
	errs := []error{e.err}
	if e.cause != nil {
		errs = append(errs, e.cause)
	}
	if e.hint != nil {
		errs = append(errs, e.hint)
	}
	return errs
}

func newWaitError(ctx context.Context, pool, state string) error {
	e := &waitError{pool: pool, err: ctx.Err(), state: state}
	if cause := context.Cause(ctx); cause != nil && cause != e.err {
		e.cause = cause
	}
	return e
}
