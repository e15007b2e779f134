package connpool

// Reset retires every conn opened before it: idle ones are closed now,
// borrowed ones and those under a background check are closed when they
// come back, dials already connecting are closed as they finish, and none
// of them is handed out again; a dial that had yet to connect (waiting for
// a slot under a group's cap, say) connects after the Reset, and its conn
// is kept. Waiting Gets keep waiting and are served by new
// dials. Use it after a failover, a network change, or rotated
// credentials (with a dialer that reads the new ones). The conns it
// retires count in Stats.ResetClosed; the pool emits a PoolReset event
// before their ConnClosed events.
// After Close, Reset returns [ErrClosed].
func (p *Pool) Reset() error {
	// Reset moves the pool's generation on, under mu and idleMu, and
	// empties the idle stack in the same step. Each conn carries the
	// generation its dial started in, and every way back into the pool
	// (Put's fast path under idleMu, offer under mu, a dial's end under
	// mu, a waiter's accept) closes a conn of an older one.
	p.mu.Lock()
	if p.closed.Load() {
		p.mu.Unlock()
		return ErrClosed
	}
	p.idleMu.Lock()
	gen := p.gen.Add(1)
	idle := p.evictIdleLocked(everyConn)
	p.idleMu.Unlock()
	p.mu.Unlock()
	p.closeConns(idle, CloseReset)
	p.wakeMaintainer() // to warm MinIdle with new conns
	// The PoolReset event comes before the ConnClosed events of the
	// conns it retires, these ones and those closed on other goroutines:
	// until it is emitted, they are held (eventOrder). The conns are
	// closed first, so that a PoolReset hook that calls Get finds their
	// slots free (TestHooksMayCallThePool).
	p.emitReset(gen)
	return nil
}
