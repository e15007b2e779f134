//go:build race || connpoolcheck

package connpool

// CheckInvariants reports every way the pool's custody ledger is out of
// balance (see ledger.go), for tests to call between steps.
func (p *Pool) CheckInvariants() error { return p.checkInvariants() }
