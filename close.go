package connpool

import (
	"context"
	"fmt"
)

// Close closes the pool now: idle conns are closed, dials in flight and
// background checks are cancelled, waiting Gets and later ones fail with
// [ErrClosed], and borrowed conns are closed as they are returned. Close
// waits for the pool's goroutines to end, not for borrowed conns. A second
// Close returns ErrClosed.
func (p *Pool) Close() error {
	if _, err := p.beginClose(); err != nil {
		return err
	}
	p.awaitClosed()
	return nil
}

// Shutdown closes the pool gracefully: like Close it stops new Gets, fails
// waiting ones and closes idle conns, and then it waits for borrowed conns
// to be returned (each is closed on return). If ctx ends first, Shutdown
// closes the sockets still borrowed, so their holders' I/O fails, and
// returns an error wrapping ctx's. A Shutdown after Close, or a second
// one, returns [ErrClosed].
func (p *Pool) Shutdown(ctx context.Context) error {
	drained, err := p.beginClose()
	if err != nil {
		return err
	}
	select {
	case <-drained:
	case <-ctx.Done():
		err = p.forceClose(ctx)
	}
	p.awaitClosed()
	return err
}

// awaitClosed waits for the pool's goroutines to end, reports the
// ejections the maintainer had not (readmit), which lets the ConnClosed
// events held for them go, gives a Group's pool's default name back for
// a new pool (names.go), and emits the PoolClosed event.
func (p *Pool) awaitClosed() {
	p.wg.Wait()
	p.readmit(p.now())
	if p.cfg.nameDefault && p.cfg.inGroup {
		releaseName(p.name)
	}
	p.emitPool(p.hooks.PoolClosed)
}

// forceClose ends a Shutdown whose ctx ended: it closes the sockets still
// borrowed and returns an error wrapping ctx's. The answer comes from the
// pool's state under mu, not from which of Shutdown's channels won: a
// drain that completed (the drained channel is closed under mu, and the
// field cleared) returns nil, even when ctx had ended too.
func (p *Pool) forceClose(ctx context.Context) error {
	p.mu.Lock()
	if p.drained == nil {
		p.mu.Unlock()
		return nil
	}
	borrowed := make([]*poolConn, 0, len(p.all))
	for pc := range p.all {
		borrowed = append(borrowed, pc)
	}
	p.mu.Unlock()
	for _, pc := range borrowed {
		_ = pc.nc.Close()
	}
	return fmt.Errorf("connpool: shutdown with %d conns still borrowed: %w", len(borrowed), ctx.Err())
}

// beginClose marks the pool closed, fails the waiters, cancels background
// work and closes the idle conns. The returned channel is closed once no
// conn is borrowed.
func (p *Pool) beginClose() (<-chan struct{}, error) {
	p.mu.Lock()
	if p.closed.Load() {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	p.closed.Store(true) // before emptying the stack: see idle.go
	for e := p.popWaiterLocked(); e != nil; e = p.popWaiterLocked() {
		p.failLocked(e, ErrClosed)
	}
	idle := p.evictIdle(everyConn)
	drained := make(chan struct{})
	p.drained = drained
	p.checkDrained()
	p.mu.Unlock()

	p.cancel()
	p.closeConns(idle, ClosePool)
	return drained, nil
}

// checkDrained closes the drained channel once the pool is closed and no
// conn is borrowed, or returned and not yet closed. An idle conn in a
// closed pool is one a Put pushed as the pool closed, and is about to
// close (see idle.go): it still counts. mu must be held; it takes idleMu.
func (p *Pool) checkDrained() {
	if p.drained == nil {
		return
	}
	p.idleMu.Lock()
	done := p.inUseIdleLocked() == 0 && p.idle.Len() == 0 && p.numClosing == 0
	p.idleMu.Unlock()
	if done {
		close(p.drained)
		p.drained = nil
	}
}
