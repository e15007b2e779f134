package connpool

// Reset retires every conn opened before it: idle ones are closed now,
// borrowed ones and those under a background check are closed when they
// come back, dials in flight are closed as they finish, and none of them
// is handed out again. Waiting Gets keep waiting and are served by new
// dials. Use it after a failover, a network change, or rotated
// credentials (with a dialer that reads the new ones). The conns it
// retires count in Stats.ResetClosed; the pool emits a PoolReset event.
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
	p.gen.Add(1)
	idle := p.idle.RemoveFunc(func(*poolConn) bool { return true }, nil)
	p.idleMu.Unlock()
	p.moveAllLocked(idle, heldClosing)
	p.mu.Unlock()
	p.closeConns(idle, CloseReset)
	p.wakeMaintainer() // to warm MinIdle with new conns
	p.emitPool(p.hooks.PoolReset)
	return nil
}
