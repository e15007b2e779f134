package addrset

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func ips(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)})
	}
	return out
}

func addrsOf(eps []*Endpoint) []string {
	out := make([]string, len(eps))
	for i, ep := range eps {
		out[i] = ep.Addr
	}
	return out
}

// TestResolvedIsTheDiff pins the diff of two resolutions: kept addresses
// keep their order and counts, new ones follow, removed ones drain while
// they have conns, and one that comes back while draining keeps its counts.
func TestResolvedIsTheDiff(t *testing.T) {
	s := New("db.example:5432", "5432")
	require.Nil(t, s.Pick(0), "no address before the first answer")
	a := ips(3)
	added, removed := s.Resolved(a[:2], 0)
	assert.Equal(t, []string{"10.0.0.1:5432", "10.0.0.2:5432"}, added)
	assert.Empty(t, removed)
	first := s.Current()[0]
	s.Pick(0)
	s.DialEnded(first, true)

	added, removed = s.Resolved([]netip.Addr{a[2], a[1]}, 0)
	assert.Equal(t, []string{"10.0.0.3:5432"}, added)
	require.Equal(t, []*Endpoint{first}, removed)
	assert.Equal(t, Removed, first.Status())
	assert.Equal(t, []string{"10.0.0.2:5432", "10.0.0.3:5432"}, addrsOf(s.Current()), "kept first, new after")
	assert.Equal(t, []string{"10.0.0.2:5432", "10.0.0.3:5432", "10.0.0.1:5432"}, addrsOf(s.All()), "draining last")

	added, _ = s.Resolved(a, 0)
	assert.Equal(t, []string{"10.0.0.1:5432"}, added)
	assert.Same(t, first, s.Current()[2], "a draining address comes back with its counts")
	assert.Equal(t, 1, first.Open)
	assert.Equal(t, Usable, first.Status())

	_, removed = s.Resolved(a[1:], 0)
	require.Len(t, removed, 1)
	s.Closed(first, false, false, 0)
	assert.Len(t, s.All(), 2, "forgotten once its last conn closed")
	assert.Equal(t, "10.0.0.2:5432", s.Current()[0].RemoteAddr().String())
}

// TestPickSpreadsBySimulation runs random dials, closes and dial failures
// over five addresses and checks after each step that a dial went to the
// least-loaded address not backing off, and that the loads stay within
// one of each other while no address fails.
func TestPickSpreadsBySimulation(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	s := New("h:1", "1")
	s.Resolved(ips(5), 0)
	now := int64(0)
	var open []*Endpoint
	for step := range 20000 {
		now += int64(r.IntN(10))
		switch k := r.IntN(10); {
		case k < 5 || len(open) == 0:
			ep := s.Pick(now)
			for _, o := range s.Current() {
				if o != ep && o.dialable(now) && ep.dialable(now) {
					require.LessOrEqual(t, ep.Load()-1, o.Load(), "step %d: picked a fuller address", step)
				}
			}
			if r.IntN(20) == 0 {
				s.DialEnded(ep, false)
				s.DialFailed(ep, now, func(n int) int64 { return 50 << min(n, 5) })
			} else {
				s.DialEnded(ep, true)
				s.DialSucceeded(ep)
				open = append(open, ep)
			}
		default:
			i := r.IntN(len(open))
			s.Closed(open[i], false, false, 0)
			open = append(open[:i], open[i+1:]...)
		}
	}
	// Without failures, dials alone keep every address within one.
	s2 := New("h:1", "1")
	s2.Resolved(ips(4), 0)
	for range 103 {
		s2.DialEnded(s2.Pick(0), true)
	}
	for _, ep := range s2.Current() {
		assert.InDelta(t, 103.0/4, ep.Open, 1, ep.Addr)
	}
}

// TestBackoffProbe pins the pool's backoff: it lasts while every address
// fails, until the first may be retried, which the pick then probes.
func TestBackoffProbe(t *testing.T) {
	s := New("h:1", "1")
	s.Resolved(ips(2), 0)
	a, b := s.Current()[0], s.Current()[1]
	pause := func(int) int64 { return 100 }
	s.DialFailed(s.Pick(0), 0, pause)
	s.DialEnded(a, false)
	assert.Equal(t, int64(0), s.BackoffUntil(), "one address still dialable")
	assert.True(t, s.OthersDialable(a, 10))
	assert.Same(t, b, s.Pick(10))
	s.DialEnded(b, false)
	s.DialFailed(b, 20, pause)
	assert.Equal(t, int64(100), s.BackoffUntil())
	assert.False(t, s.OthersDialable(a, 30))
	assert.Same(t, a, s.Pick(30), "the first whose backoff ends is the probe")
	s.DialEnded(a, true)
	assert.Equal(t, 1, s.DialSucceeded(a))
	assert.Equal(t, int64(0), s.BackoffUntil())
}

// TestRebalancePlanBySimulation: from random loads, rounds of at most
// rate retirements converge to addresses within one conn of each other,
// never retire more than the imbalance asks, and never move load to a
// failing address.
func TestRebalancePlanBySimulation(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for trial := range 200 {
		s := New("h:1", "1")
		n := 2 + r.IntN(5)
		s.Resolved(ips(n), 0)
		total := 0
		for _, ep := range s.Current() {
			ep.Open = r.IntN(30)
			total += ep.Open
		}
		failing := s.Current()[r.IntN(n)]
		failing.failStreak = 1
		rate := 1 + r.IntN(4)
		for round := 0; ; round++ {
			require.Less(t, round, 100, "trial %d does not converge", trial)
			pl := s.Rebalance(0)
			moved := 0
			for moved < rate {
				full := pl.Next()
				if full == nil {
					break
				}
				full.Open-- // the retired conn closes ...
				pl.Retired()
				moved++
				empty := pl.empty
				require.NotSame(t, failing, empty, "trial %d: replacement sent to a failing address", trial)
				empty.Open++ // ... and its replacement dial lands here
			}
			if moved == 0 {
				break
			}
		}
		lo, hi, sum := 1<<30, 0, 0
		for _, ep := range s.Current() {
			sum += ep.Open
			if ep == failing {
				continue
			}
			lo, hi = min(lo, ep.Open), max(hi, ep.Open)
		}
		assert.Equal(t, total, sum, "trial %d: a round moves conns, it does not drop them", trial)
		assert.LessOrEqual(t, hi-lo, 1, "trial %d: healthy addresses within one", trial)
	}
}

// TestRebalanceCountsConnsMoving: conns an earlier round retired that
// have not closed yet count as already moved.
func TestRebalanceCountsConnsMoving(t *testing.T) {
	s := New("h:1", "1")
	s.Resolved(ips(2), 0)
	s.Current()[0].Open = 4
	assert.NotNil(t, s.Rebalance(0).Next())
	s.Current()[0].Leaving = 2 // retired by a round, not closed yet
	assert.Nil(t, s.Rebalance(2).Next(), "two already moving: balanced")
}

func Example() {
	s := New("db.example:5432", "5432")
	s.Resolved(ips(2), 0)
	for range 3 {
		ep := s.Pick(0)
		s.DialEnded(ep, true)
		fmt.Println(ep.Addr, ep.Open)
	}
	// Output:
	// 10.0.0.1:5432 1
	// 10.0.0.2:5432 1
	// 10.0.0.1:5432 2
}
