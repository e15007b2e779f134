package connpool

import (
	"context"
	"fmt"
	"time"
)

// readyPoll is how often WaitReady looks at the idle count.
const readyPoll = 2 * time.Millisecond

// WaitReady returns nil once MinIdle conns are idle, at once if MinIdle is
// 0: a readiness probe for a service that gets traffic the moment it
// starts. When ctx ends first, it returns an error that wraps ctx's error
// and, if dials have been failing, the last dial error. After Close it
// returns [ErrClosed].
func (p *Pool) WaitReady(ctx context.Context) error {
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	for {
		ready, err := p.ready()
		if ready || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return p.notReady(ctx)
		case <-tick.C:
		}
	}
}

// ready reports whether MinIdle conns are idle, or ErrClosed. It takes mu
// and idleMu.
func (p *Pool) ready() (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed.Load() {
		return false, ErrClosed
	}
	p.idleMu.Lock()
	defer p.idleMu.Unlock()
	return p.idle.Len()+p.numChecking >= p.cfg.minIdle, nil
}

// notReady builds WaitReady's error once its ctx ended.
func (p *Pool) notReady(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.idleMu.Lock()
	idle := p.idle.Len() + p.numChecking
	p.idleMu.Unlock()
	if p.lastDialErr != nil {
		return fmt.Errorf("connpool: %s not ready, %d of %d idle: %w; last dial error: %w",
			p.name, idle, p.cfg.minIdle, ctx.Err(), p.lastDialErr)
	}
	return fmt.Errorf("connpool: %s not ready, %d of %d idle: %w", p.name, idle, p.cfg.minIdle, ctx.Err())
}
