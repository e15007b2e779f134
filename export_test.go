package connpool

// ReapNow runs one reaper sweep now, for the sweep-cost benchmark.
func (p *Pool) ReapNow() { p.reap(p.now()) }

// CheckInvariants reports every way the pool's custody ledger is out of
// balance (see ledger.go), for tests to call between steps.
func (p *Pool) CheckInvariants() error { return p.checkInvariants() }
