package connpool

// Warming (WithMinIdle) under a group's cap: a warm dial takes only a
// free permit, and a pool that found none waits, noted hungry, to be
// woken when one frees (grouplimit.go holds the cap and its queue).

// warmSlotLocked takes a free slot under the group's cap for a warm dial,
// if the pool is in a group with a cap, and reports whether it may dial
// (takeWarmSlot). mu must be held.
func (p *Pool) warmSlotLocked() bool {
	return p.cfg.limit == nil || p.cfg.limit.takeWarmSlot(p)
}

// takeWarmSlot takes a free permit for a warm dial of p (MinIdle).
// Warming never queues at the cap nor evicts another pool's idle conn for
// it: a warm dial that evicted woke the warming of the pool it took from,
// whose own warm dial evicted in turn, without end. So when no permit is
// free, p is noted hungry and woken when one is (release, resized), and
// takeWarmSlot reports false. p's mu must be held.
func (l *groupLimit) takeWarmSlot(p *Pool) bool {
	if l.tryAcquire() {
		return true
	}
	l.hungryMu.Lock()
	if _, ok := l.hungry[p]; !ok {
		if l.hungry == nil {
			l.hungry = make(map[*Pool]struct{})
		}
		l.hungry[p] = struct{}{}
		l.numHungry.Add(1)
	}
	l.hungryMu.Unlock()
	// A permit released before p was noted woke nobody: try once more.
	if !l.tryAcquire() {
		return false
	}
	l.forget(p)
	return true
}

// wakeHungry wakes the maintainer of every pool noted hungry, to warm
// into the permits free now, and forgets them: those that find none free
// are noted again.
func (l *groupLimit) wakeHungry() {
	l.hungryMu.Lock()
	pools := make([]*Pool, 0, len(l.hungry))
	for p := range l.hungry {
		pools = append(pools, p)
	}
	clear(l.hungry)
	l.numHungry.Store(0)
	l.hungryMu.Unlock()
	for _, p := range pools {
		p.wakeMaintainer()
	}
}

// forget takes p off the hungry pools, when it got a permit or closed.
func (l *groupLimit) forget(p *Pool) {
	l.hungryMu.Lock()
	if _, ok := l.hungry[p]; ok {
		delete(l.hungry, p)
		l.numHungry.Add(-1)
	}
	l.hungryMu.Unlock()
}
