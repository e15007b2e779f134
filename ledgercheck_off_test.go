//go:build !(race || connpoolcheck)

package connpool

// CheckInvariants is the ledger check of ledgercheck.go, which a plain
// build leaves out: without -race or -tags connpoolcheck it reports
// nothing. CI runs the tests with -race.
func (p *Pool) CheckInvariants() error { return nil }
