package connpoolfleet

import (
	"github.com/connpool/connpool"
)

// Target is what a member steers: a pool, or a group of pools with a cap
// across them. Make one with PoolTarget or GroupTarget.
type Target interface {
	setCap(n int) error
	load() load
	reset()
	valid() bool // it steers a pool or a group, not nil
}

// load is a target's numbers at one instant.
type load struct {
	open    int // open plus dialing: what the target may be using
	inUse   int
	waiting int
}

// PoolTarget steers p's cap (Pool.SetMaxConns).
func PoolTarget(p *connpool.Pool) Target { return poolTarget{p} }

type poolTarget struct{ p *connpool.Pool }

func (t poolTarget) setCap(n int) error { return t.p.SetMaxConns(n) }
func (t poolTarget) valid() bool        { return t.p != nil }
func (t poolTarget) reset()             { _ = t.p.Reset() }
func (t poolTarget) load() load {
	s := t.p.Stats()
	return load{open: s.OpenConns + s.Dialing, inUse: s.InUse, waiting: s.Waiting}
}

// GroupTarget steers g's cap across its pools (Group.SetGroupMaxConns): g
// must have been created with connpool.WithGroupMaxConns.
func GroupTarget(g *connpool.Group) Target { return groupTarget{g} }

type groupTarget struct{ g *connpool.Group }

func (t groupTarget) setCap(n int) error { return t.g.SetGroupMaxConns(n) }
func (t groupTarget) valid() bool        { return t.g != nil }
func (t groupTarget) reset() {
	// A Group has no Reset; its conns close as the cap asks.
}
func (t groupTarget) load() load {
	var l load
	for _, s := range t.g.Stats() {
		l.open += s.OpenConns + s.Dialing
		l.inUse += s.InUse
		l.waiting += s.Waiting
	}
	return l
}
