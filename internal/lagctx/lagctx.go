// Package lagctx is a context for tests whose Err reports its end before
// its Done channel closes: the instant that a goroutine waiting on a
// context lives through between the context's end and its own turn to
// run, held open so that a test can act inside it.
package lagctx

import (
	"context"
	"sync"
	"sync/atomic"
)

// Context is a context.Context whose Err is err once End is called, while
// Done closes only at Wake. Its other methods are those of its parent.
type Context struct {
	context.Context
	err   error
	ended atomic.Bool
	done  chan struct{}
	wake  sync.Once
}

// New returns a Context of parent that ends with err.
func New(parent context.Context, err error) *Context {
	return &Context{Context: parent, err: err, done: make(chan struct{})}
}

// End makes Err report the end; Done stays open.
func (c *Context) End() { c.ended.Store(true) }

// Wake closes Done, and ends c if End was not called.
func (c *Context) Wake() {
	c.End()
	c.wake.Do(func() { close(c.done) })
}

// Done returns a channel closed by Wake.
func (c *Context) Done() <-chan struct{} { return c.done }

// Err returns the end's error once End was called, else nil.
func (c *Context) Err() error {
	if c.ended.Load() {
		return c.err
	}
	return nil
}
