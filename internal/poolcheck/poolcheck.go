// Package poolcheck lets the tests of other modules of this repository
// (chaos, integration) check a pool's custody ledger, which the connpool
// package keeps unexported: connpool sets Invariants when it loads.
package poolcheck

// Invariants reports every way the ledger of a *connpool.Pool is out of
// balance, or nil. It takes the pool's locks; call it between steps, not
// from a callback the pool runs.
var Invariants func(pool any) error
