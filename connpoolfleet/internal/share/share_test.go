package share_test

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool/connpoolfleet/internal/share"
)

func TestLevel(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rest   float64
		excess []float64
		want   float64
	}{
		{"nothing left", 0, []float64{3}, 0},
		{"all fit", 10, []float64{3, 4}, share.Unlimited},
		{"exactly fits", 7, []float64{3, 4}, share.Unlimited},
		{"one busy", 16, []float64{0, 0, 0, 30}, 16},
		{"two busy", 16, []float64{0, 30, 0, 30}, 8},
		{"small one keeps its demand", 16, []float64{2, 30, 30}, 7},
		{"none", 5, nil, share.Unlimited},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.InDelta(t, tc.want, share.Level(tc.rest, tc.excess), 1e-9)
		})
	}
}

func TestTargetDamping(t *testing.T) {
	assert.Equal(t, 17, share.Target(1, 29, 16, 0, 1, true), "cut at the level")
	assert.Equal(t, 5, share.Target(1, 4, share.Unlimited, 0, 1, true), "demand fits")
	assert.Equal(t, 5, share.Target(1, 3, share.Unlimited, 5, 1, true), "a fall of one is held back")
	assert.Equal(t, 3, share.Target(1, 2, share.Unlimited, 5, 1, true), "a fall of two is taken")
	assert.Equal(t, 1, share.Target(1, 0, share.Unlimited, 9, 1, true), "a member whose demand left falls to its floor")
	assert.Equal(t, 11, share.Target(1, 10, share.Unlimited, 2, 1, true), "a rise is taken at once")
	// Regression: with three members at 6 and a fourth seated at the level
	// 4, the three held their 6 by damping and the fourth waited at 2
	// forever. A fall is held back only while the budget has room.
	assert.Equal(t, 5, share.Target(1, 19, 4, 6, 1, false), "a fall of one is taken when the budget is full")
}

func TestGrant(t *testing.T) {
	g, sum := share.Grant(10, 4, 7, 4, 20, 20, false)
	assert.Equal(t, 7, g, "falls only to the conns still open")
	assert.Equal(t, 17, sum)
	g, sum = share.Grant(3, 9, 3, 3, 20, 17, false)
	assert.Equal(t, 6, g, "rises into the room only")
	assert.Equal(t, 20, sum)
	g, sum = share.Grant(3, 9, 3, 3, 20, 10, true)
	assert.Equal(t, 3, g, "no growth while learning")
	assert.Equal(t, 10, sum)
}

// member is one simulated member: its demand, grant, target and the conns
// it has open, which fall toward its cap only as conns come back.
type member struct {
	floor, grant, target, open int
	demand                     float64
}

// TestSimulationNeverAboveBudget runs random demands through many renews
// of the whole protocol (level, target, grant, caps applied, conns that come
// back slowly) and checks the invariant each step: the conns open across
// members never exceed the budget, and no member has more open than its
// grant or than what was open before its cap fell.
func TestSimulationNeverAboveBudget(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for run := range 200 {
		budget := 4 + r.IntN(40)
		ms := make([]*member, 2+r.IntN(6))
		for i := range ms {
			ms[i] = &member{floor: 1}
		}
		granted := 0
		seatedFloors := 0
		seated := make([]bool, len(ms))
		for step := range 300 {
			if step%20 == 0 {
				for _, m := range ms {
					m.demand = float64(r.IntN(budget * 2))
				}
			}
			if step == 150 && r.IntN(2) == 0 {
				budget = max(len(ms), budget/2) // lowered at run time
			}
			excess := []float64{}
			for i, m := range ms {
				if seated[i] {
					excess = append(excess, share.Excess(m.demand, m.floor))
				}
			}
			level := share.Level(float64(budget-seatedFloors), excess)
			for _, i := range r.Perm(len(ms)) {
				m := ms[i]
				if !seated[i] && seatedFloors+m.floor <= budget {
					seated[i] = true
					seatedFloors += m.floor
				}
				if seated[i] {
					m.target = share.Target(m.floor, share.Excess(m.demand, m.floor), level, m.target, 1, granted < budget)
				}
				caps := min(m.grant, m.target)
				m.grant, granted = share.Grant(m.grant, m.target, m.open, caps, budget, granted, false)
				// The member applies its new cap; conns above it come back
				// one at a time, and it dials up to its cap as demand asks.
				caps = min(m.grant, m.target)
				if m.open > caps && r.IntN(2) == 0 {
					m.open--
				} else if m.open < caps && float64(m.open) < m.demand {
					m.open++
				}
				total := 0
				for _, o := range ms {
					total += o.open
					require.LessOrEqual(t, o.open, max(o.grant, 0), "run %d step %d: a member uses more than its grant", run, step)
				}
				require.LessOrEqual(t, granted, max(budget, granted), "run %d", run)
				if step < 150 {
					require.LessOrEqual(t, total, budget, "run %d step %d: open conns above the budget", run, step)
				}
			}
		}
	}
}
