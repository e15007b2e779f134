package connpool

// Emitting the events of events.go to the hooks of [Hooks]: each hook runs
// with no lock held, a panic in it is recovered, and events whose order
// spans goroutines are kept in step (eventOrder).

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/connpool/connpool/internal/clock"
)

// emit calls hook f with e, recovering a panic: a broken hook must not
// break the pool, whose locks are all released when hooks run. The first
// panic is logged.
func emit[E any](p *Pool, f func(E), e E) {
	defer func() {
		if r := recover(); r != nil && p.hookPanicked.CompareAndSwap(false, true) {
			p.log.Error("connpool: a hook panicked; later panics are not logged",
				"event", fmt.Sprintf("%T", e), "panic", r)
		}
	}()
	f(e)
}

func (p *Pool) emitPool(f func(PoolEvent)) {
	if f != nil {
		emit(p, f, PoolEvent{Pool: p.name})
	}
}

// emitReady emits the PoolReady event, with the pool's settings.
func (p *Pool) emitReady() {
	if p.hooks.PoolReady == nil {
		return
	}
	c := &p.cfg
	emit(p, p.hooks.PoolReady, PoolEvent{Pool: p.name, Settings: PoolSettings{
		Network: p.network, Address: p.address,
		MaxConns: c.maxConns, MinIdle: c.minIdle, MaxIdle: c.maxIdle, MaxConnecting: c.maxConnecting,
		MaxWaiters: c.maxWaiters, IdleTimeout: c.idleTimeout, MaxLifetime: c.maxLifetime,
		DialTimeout: c.dialTimeout, HealthCheckInterval: c.checkInterval,
	}})
}

// eventOrder keeps the events whose order spans goroutines in step:
// the GetIDs, the PoolReset event before the ConnClosed events of the
// conns its Reset retires, and an AddressEjected event before those of
// the conns its ejection closes (held the same way). A Reset moves the
// generation under mu and emits its event after; meanwhile another
// goroutine may already close a conn the Reset retired (a Put, a dial's
// end, a waiter's accept). Such a ConnClosed event is held here, not
// emitted, until the Reset has emitted its own, and then emitted by the
// Reset's goroutine; nobody waits, so a hook that calls Put or Reset from
// any hook cannot deadlock.
type eventOrder struct {
	getIDs atomic.Uint64 // the GetID of the last Get started, when a Get hook is set

	mu        sync.Mutex        // guards the fields below and endpoint.EjectionsReported; held for a few steps, never across a hook
	resetGen  uint64            // the highest generation whose Reset has emitted its PoolReset event
	heldClose []ConnClosedEvent // ConnClosed events of CloseReset waiting for their PoolReset
	// heldEjected are ConnClosed events of CloseEjected waiting for the
	// AddressEjected event of their address's ejection.
	heldEjected []heldEjectedClose
}

// heldEjectedClose is a ConnClosed event of CloseEjected held until its
// address's ejection number ejection is reported.
type heldEjectedClose struct {
	ep        *endpoint
	ejection  int64
	connClose ConnClosedEvent
}

// emitReset emits the PoolReset event of the Reset that moved the
// generation to gen, then the ConnClosed events held for it.
func (p *Pool) emitReset(gen uint64) {
	if p.hooks.PoolReset == nil {
		return
	}
	emit(p, p.hooks.PoolReset, PoolEvent{Pool: p.name})
	o := &p.events
	o.mu.Lock()
	o.resetGen = max(o.resetGen, gen)
	held := o.heldClose
	o.heldClose = nil
	o.mu.Unlock()
	for _, ev := range held {
		emit(p, p.hooks.ConnClosed, ev)
	}
}

// emitConnClosed emits closed conn pc's event, or holds it while the
// Reset that retired pc has not emitted its own (emitReset).
func (p *Pool) emitConnClosed(pc *poolConn, reason CloseReason) {
	ev := ConnClosedEvent{
		Pool: p.name, ConnID: pc.id, Address: pc.address(), Age: time.Duration(p.now() - pc.born), Reason: reason.public(),
	}
	if reason == CloseReset && p.hooks.PoolReset != nil {
		// pc was retired by the Reset that moved the generation past
		// pc.gen: hold the event until that Reset's has been emitted.
		o := &p.events
		o.mu.Lock()
		if o.resetGen <= pc.gen {
			o.heldClose = append(o.heldClose, ev)
			o.mu.Unlock()
			return
		}
		o.mu.Unlock()
	}
	if reason == CloseEjected && p.hooks.AddressEjected != nil {
		// pc was closed for its address's ejection: hold the event until
		// the maintainer has emitted the ejection's (ejectionReported).
		o := &p.events
		o.mu.Lock()
		if pc.ep.EjectionsReported < pc.ejection {
			o.heldEjected = append(o.heldEjected, heldEjectedClose{pc.ep, pc.ejection, ev})
			o.mu.Unlock()
			return
		}
		o.mu.Unlock()
	}
	emit(p, p.hooks.ConnClosed, ev)
}

// ejectionReported notes that the AddressEjected event of ep's ejection
// number n was emitted, then emits the ConnClosed events held for it.
func (p *Pool) ejectionReported(ep *endpoint, n int64) {
	o := &p.events
	o.mu.Lock()
	ep.EjectionsReported = max(ep.EjectionsReported, n)
	var due []ConnClosedEvent
	o.heldEjected = slices.DeleteFunc(o.heldEjected, func(h heldEjectedClose) bool {
		if h.ep == ep && h.ejection <= n {
			due = append(due, h.connClose)
			return true
		}
		return false
	})
	o.mu.Unlock()
	for _, ev := range due {
		emit(p, p.hooks.ConnClosed, ev)
	}
}

// emitDialFailed emits the ConnClosed event of a dial that failed.
func (p *Pool) emitDialFailed(d *dialOp) {
	if p.hooks.ConnClosed != nil {
		emit(p, p.hooks.ConnClosed, ConnClosedEvent{Pool: p.name, ConnID: d.id, Address: d.addr(p), Reason: CloseDialFailed})
	}
}

// getStarted starts an observed Get: it emits its GetStarted event and
// returns the Get's id and its start on the clock.ticks scale, both 0
// when no hook wants them, so that an observed pool without Get hooks
// reads no clock for them.
func (p *Pool) getStarted() (id uint64, start int64) {
	if p.hooks.GetStarted == nil && p.hooks.GetDone == nil {
		return 0, 0
	}
	id = p.events.getIDs.Add(1)
	if p.hooks.GetDone != nil {
		start = clock.Ticks()
	}
	if p.hooks.GetStarted != nil {
		emit(p, p.hooks.GetStarted, GetStartedEvent{Pool: p.name, GetID: id})
	}
	return id, start
}

// getFailure classifies the error of a failed Get, for its GetDone event
// and its Stats counter (getFailed). The bare sentinels come first, the
// cheap checks for a TryGet that polls. A dial error comes before the
// wrapped ones: it wraps whatever the dialer returned, which may be
// another pool's ErrClosed or timeout when the dialer is a pool's
// DialContext, and is a dial error all the same.
func getFailure(err error) GetFailure {
	switch err {
	case ErrNoIdleConn:
		return GetNoIdleConn
	case ErrClosed:
		return GetPoolClosed
	}
	var de *dialError
	var we *waitError
	var se *shedError
	switch {
	case errors.As(err, &de):
		return GetDialError
	case errors.As(err, &we):
		if we.err == ErrClientPoolOverCap { // failed fast, its ctx still live
			return GetClientsOverCap
		}
		return GetTimeout
	case errors.As(err, &se):
		return se.reason
	case errors.Is(err, ErrTooManyWaiters):
		return GetTooManyWaiters
	case errors.Is(err, ErrWrongAddress), errors.Is(err, ErrAdaptiveDialContext):
		return GetInvalid
	case errors.Is(err, ErrClosed):
		return GetPoolClosed
	}
	return GetDialError
}

func (p *Pool) emitMaxConnsChanged(old, n int, why MaxConnsReason) {
	if f := p.hooks.MaxConnsChanged; f != nil {
		emit(p, f, MaxConnsChangedEvent{Pool: p.name, Old: old, New: n, Reason: why})
	}
}

// emitGetDone emits the GetDone event of op, which returned c or err:
// the Get whose GetStarted had id and read start (getStarted).
func (p *Pool) emitGetDone(op *getOp, c *Conn, err error, id uint64, start int64) {
	ev := GetDoneEvent{
		Pool: p.name, GetID: id, Served: op.served, Queued: op.queued, Waited: op.waited,
		Duration: clock.Since(start), Err: err,
	}
	if c != nil {
		ev.ConnID, ev.Address = c.pc.id, c.pc.address()
	} else {
		ev.Served = 0
		ev.Failure = getFailure(err)
	}
	emit(p, p.hooks.GetDone, ev)
}
