package connpool

// ReapNow runs one reaper sweep now, for the sweep-cost benchmark.
func (p *Pool) ReapNow() { p.reap(p.now()) }
