// Package share is the share computation of connpoolfleet, pure: no Redis,
// no clock. The ledger script (ledger.lua) runs the same steps inside Redis;
// this copy is what the tests simulate, and the two must change together.
package share

import (
	"math"
	"sort"
)

// Unlimited is the level when every demand fits: no share is cut.
const Unlimited = -1.0

// Level returns the water level of a max-min fair split of rest among
// excess demands: the x such that the sum over i of min(excess[i], x) is
// rest, or Unlimited when the demands add up to rest or less. It returns 0
// when rest <= 0. excess is not modified.
func Level(rest float64, excess []float64) float64 {
	if rest <= 0 {
		return 0
	}
	e := append([]float64(nil), excess...)
	sort.Float64s(e)
	for i, x := range e {
		k := float64(len(e) - i)
		if x*k > rest {
			return rest / k
		}
		rest -= x
	}
	return Unlimited
}

// Excess is the demand above the floor that a member asks the split for:
// its demand rounded up (less a hundredth, so that 3.004 is 3), less its
// floor, and never negative.
func Excess(demand float64, floor int) float64 {
	return math.Max(0, math.Ceil(demand-0.01)-float64(floor))
}

// Target is a seated member's target at the given level: its floor plus
// its excess cut at the level, rounded down. old is its previous target:
// a fall of at most damping is held back while old stays within damping of
// what the member asks for and there is room in the budget (roomy), so
// that no other member waits on it; a rise is taken at once.
func Target(floor int, excess, level float64, old, damping int, roomy bool) int {
	x := excess
	if level >= 0 && x > level {
		x = level
	}
	nt := floor + int(math.Floor(x+1e-9))
	if roomy && nt < old && old-nt <= damping && float64(old) <= float64(floor)+excess+float64(damping) {
		return old
	}
	return nt
}

// Grant is one member's grant after a renew, and the change to the sum of
// grants. A grant above the target falls to the larger of the target and
// what the member may still be using (used: open plus dialing; held: its
// caps); a grant below the target rises into the room left under budget,
// never while learning.
func Grant(grant, target, used, held, budget, granted int, learning bool) (newGrant, newGranted int) {
	if grant > target {
		if k := max(target, used, held); k < grant {
			granted -= grant - k
			grant = k
		}
	}
	if target > grant && !learning && budget-granted > 0 {
		inc := min(budget-granted, target-grant)
		grant += inc
		granted += inc
	}
	return grant, granted
}
