// Package poolcheck lets the tests of other modules of this repository
// (chaos, integration) check a pool's custody ledger, which the connpool
// package keeps unexported. The check is test code: connpool compiles it,
// and sets Invariants when it loads, only in race-detector builds and
// with -tags connpoolcheck (connpool's ledgercheck.go).
package poolcheck

// Invariants reports every way the ledger of a *connpool.Pool is out of
// balance, or nil. It takes the pool's locks; call it between steps, not
// from a callback the pool runs. It is nil in a build without the check:
// use Check.
var Invariants func(pool any) error

// Check is Invariants, or nil when the build leaves the check out.
func Check(pool any) error {
	if Invariants == nil {
		return nil
	}
	return Invariants(pool)
}
