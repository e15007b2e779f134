//go:build race || connpoolcheck

package connpool

// The ledger's invariant check, for tests only: it is compiled into
// race-detector builds (go test -race, as CI and the README run the
// tests) and into builds with -tags connpoolcheck, never into a plain
// build. The root package's tests reach it through CheckInvariants
// (export_test.go), the other modules' tests (chaos) through
// internal/poolcheck, which the init below feeds.

import (
	"errors"
	"fmt"

	"github.com/connpool/connpool/internal/poolcheck"
)

// checkInvariants reports every way the ledger is out of balance: the
// counts against the cap and each other, and each conn's recorded holder
// against the counts and the idle stack. It takes mu and idleMu; tests
// call it after each step of a run, and at its end.
func (p *Pool) checkInvariants() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.idleMu.Lock()
	defer p.idleMu.Unlock()
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	lent := p.inUseIdleLocked()
	if p.numDialing < 0 || p.numWarming < 0 || p.numWarming > p.numDialing ||
		p.numChecking < 0 || p.numClosing < 0 || lent < 0 {
		fail("negative count: dialing %d (warming %d), lent %d, checking %d, closing %d",
			p.numDialing, p.numWarming, lent, p.numChecking, p.numClosing)
	}
	if p.numGroupWaiting < 0 || p.numGroupWaiting > p.numDialing-p.numWarming {
		fail("%d dials waiting at the group's cap, of %d dialing (%d warming, which never wait)",
			p.numGroupWaiting, p.numDialing, p.numWarming)
	}
	if p.numOpen > p.cfg.maxConns && (!p.overCap.Load() || p.numOpen > p.overCapLimit) {
		fail("open %d exceeds MaxConns %d (over the cap since it was lowered: %v, at most %d)",
			p.numOpen, p.cfg.maxConns, p.overCap.Load(), p.overCapLimit)
	}
	if n := len(p.all); n != p.numOpen-p.numDialing {
		fail("%d conns known, but open %d - dialing %d", n, p.numOpen, p.numDialing)
	}
	var held [heldClosing + 1]int
	for pc := range p.all {
		held[pc.holder]++
	}
	onStack := make(map[*poolConn]bool, p.idle.Len())
	for _, pc := range p.idle.All() {
		if onStack[pc] {
			fail("conn %d is on the idle stack twice", pc.id)
		}
		onStack[pc] = true
		if _, ok := p.all[pc]; !ok || pc.holder != heldIdle {
			fail("idle conn %d is held by %d, known %v", pc.id, pc.holder, ok)
		}
	}
	for _, c := range []struct {
		name        string
		held, count int
	}{
		{"dialing", held[heldDialing], 0},
		{"idle", held[heldIdle], p.idle.Len()},
		{"lent", held[heldLent], lent},
		{"checking", held[heldChecking], p.numChecking},
		{"closing", held[heldClosing], p.numClosing},
	} {
		if c.held != c.count {
			fail("%d conns held %s, but the count is %d", c.held, c.name, c.count)
		}
	}
	p.checkEndpointsIdleLocked(fail)
	if q := int(p.queued.Load()); q < p.waiters.Len() {
		fail("queued %d is below the %d waiters", q, p.waiters.Len())
	}
	return errors.Join(errs...)
}

func init() {
	poolcheck.Invariants = func(v any) error {
		p, ok := v.(*Pool)
		if !ok {
			return fmt.Errorf("connpool: poolcheck of a %T", v)
		}
		return p.checkInvariants()
	}
}

// checkEndpointsIdleLocked reports through fail every way the addresses'
// counts disagree with the conns, for checkInvariants. mu and idleMu must
// be held.
func (p *Pool) checkEndpointsIdleLocked(fail func(format string, args ...any)) {
	type counts struct{ open, leaving int }
	seen := make(map[*endpoint]*counts)
	dialing := 0
	for _, ep := range p.addrs.All() {
		if seen[ep] != nil {
			fail("address %s is listed twice", ep.Addr)
		}
		seen[ep] = &counts{}
		dialing += ep.Dialing
		if ep.Open < 0 || ep.Dialing < 0 || ep.Leaving < 0 || ep.Leaving > ep.Open ||
			ep.GroupWaiting < 0 || ep.GroupWaiting > ep.Dialing {
			fail("address %s: open %d, dialing %d (%d waiting at the group's cap), leaving %d",
				ep.Addr, ep.Open, ep.Dialing, ep.GroupWaiting, ep.Leaving)
		}
	}
	if dialing > p.numDialing {
		fail("%d dials counted on addresses, but %d dialing", dialing, p.numDialing)
	}
	for pc := range p.all {
		c := seen[pc.ep]
		if c == nil {
			fail("conn %d goes to an address the pool does not list", pc.id)
			continue
		}
		c.open++
		if pc.why != 0 {
			c.leaving++
			if !pc.retire {
				fail("conn %d is leaving but not flagged to retire", pc.id)
			}
		}
	}
	for ep, c := range seen {
		if c.open != ep.Open || c.leaving != ep.Leaving {
			fail("address %s counts open %d, leaving %d; its conns say %d, %d", ep.Addr, ep.Open, ep.Leaving, c.open, c.leaving)
		}
	}
}
