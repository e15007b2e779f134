package connpool

import "context"

// TryGet returns an idle conn that passes its checks, or [ErrNoIdleConn]
// at once. It never waits and never dials in the caller's path (it does
// nudge the warmer when MinIdle is set). After Close it returns
// [ErrClosed].
func (p *Pool) TryGet() (*Conn, error) {
	op := getOp{ctx: context.Background()}
	id, start := p.getStarted()
	c, err := p.tryCheckOut()
	if c != nil {
		op.served = ServedIdle
	}
	p.observedDone(&op, c, err, id, start)
	return c, err
}

// tryCheckOut finds TryGet's conn: the idle stack's top, without mu and
// then under it, vetted like Get's, or ErrNoIdleConn.
func (p *Pool) tryCheckOut() (*Conn, error) {
	for {
		c := p.popIdle()
		if c == nil {
			p.mu.Lock()
			if p.closed.Load() {
				p.mu.Unlock()
				return nil, ErrClosed
			}
			c, _ = p.takeIdle(idleAsk{})
			p.nudgeWarmer()
			p.mu.Unlock()
			if c == nil {
				return nil, ErrNoIdleConn
			}
		}
		if p.vet(c, 0) {
			return c, nil
		}
	}
}
