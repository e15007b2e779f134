package addrset

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const sec = int64(1e9)

func ejecting(n int, e Ejection) *Set {
	s := New("h:1", "1")
	s.Resolved(ips(n), 0)
	s.Eject(e)
	return s
}

var streakOnly = Ejection{Consecutive: 5, Rate: -1, Window: 10 * sec, Base: 30 * sec, Max: 300 * sec, MaxPercent: 50}

// TestEjectAfterConsecutiveFailures: the K-th failure in a row ejects,
// not the K-1-th; a conn that ends well restarts the count.
func TestEjectAfterConsecutiveFailures(t *testing.T) {
	s := ejecting(3, streakOnly)
	ep := s.Current()[0]
	now := int64(0)
	for range 4 {
		assert.False(t, s.ConnEnded(ep, true, now))
	}
	assert.False(t, s.ConnEnded(ep, false, now), "a good end")
	for range 4 {
		assert.False(t, s.ConnEnded(ep, true, now))
	}
	assert.True(t, s.ConnEnded(ep, true, now), "the fifth in a row")
	assert.Equal(t, Ejected, ep.Status())
	assert.Equal(t, int64(1), ep.Ejections())
	assert.Equal(t, 30*sec, ep.EjectedUntil())
	assert.False(t, s.ConnEnded(ep, true, now), "ends while ejected are not counted")
	assert.Equal(t, int64(1), s.TotalEjections())
}

// TestClosedCountsOnlyConnsNotRetired: the end of a conn the caller
// retired (leaving) says nothing of its address, so Closed counts only the
// others toward ejection, and reports the end that ejects.
func TestClosedCountsOnlyConnsNotRetired(t *testing.T) {
	s := ejecting(3, streakOnly)
	ep := s.Current()[0]
	ep.Open, ep.Leaving = 10, 5
	for range 5 {
		assert.False(t, s.Closed(ep, true, true, 0), "a retired conn's end")
	}
	assert.Equal(t, Usable, ep.Status())
	for range 4 {
		assert.False(t, s.Closed(ep, false, true, 0))
	}
	assert.True(t, s.Closed(ep, false, true, 0), "the fifth failure of a conn not retired")
	assert.Equal(t, Ejected, ep.Status())
	assert.Zero(t, ep.Open)
	assert.Zero(t, ep.Leaving)
}

// TestEjectionTimeDoublesToTheCapAndResets: each ejection that follows
// the last within Max of its readmission doubles the time, up to Max;
// an address that stays in for Max starts over at Base.
func TestEjectionTimeDoublesToTheCapAndResets(t *testing.T) {
	s := ejecting(2, streakOnly)
	ep := s.Current()[0]
	now := int64(0)
	var times []int64
	for range 6 {
		for !s.ConnEnded(ep, true, now) {
		}
		times = append(times, ep.EjectedUntil()-now)
		now = ep.EjectedUntil()
		ejected, back, next := s.Readmit(now - 1)
		require.Equal(t, []*Endpoint{ep}, ejected, "its ejection is news once")
		require.Empty(t, back, "not before its time")
		require.Equal(t, ep.EjectedUntil(), next)
		ejected, back, next = s.Readmit(now)
		require.Empty(t, ejected)
		require.Equal(t, []*Endpoint{ep}, back)
		require.Zero(t, next)
		require.Equal(t, Usable, ep.Status())
		now += sec
	}
	assert.Equal(t, []int64{30 * sec, 60 * sec, 120 * sec, 240 * sec, 300 * sec, 300 * sec}, times)

	now += 300 * sec // in for Max
	for !s.ConnEnded(ep, true, now) {
	}
	assert.Equal(t, 30*sec, ep.EjectedUntil()-now, "starts over")
}

// TestEjectByFailureRate: over a window, more than Rate of at least
// MinVolume conn ends failed ejects, even with no streak; a window that
// ended starts the count over.
func TestEjectByFailureRate(t *testing.T) {
	e := Ejection{Consecutive: -1, Rate: 0.5, MinVolume: 10, Window: 10 * sec, Base: sec, Max: sec, MaxPercent: 50}
	s := ejecting(2, e)
	ep := s.Current()[0]
	// Alternating: half fail, not more than half.
	for i := range 20 {
		require.False(t, s.ConnEnded(ep, i%2 == 1, int64(i)))
	}
	// A new window: 6 of 10 fail, the tenth end judges.
	now := 11 * sec
	ok := []bool{true, false, true, false, true, false, true, false, false, false} // true: a good end
	for i, good := range ok {
		got := s.ConnEnded(ep, !good, now+int64(i))
		if i < 9 {
			require.False(t, got, "end %d: below MinVolume", i)
		} else {
			require.True(t, got, "6 of 10 failed")
		}
	}
	// A window that ended forgets its failures.
	s2 := ejecting(2, e)
	ep2 := s2.Current()[0]
	for i := range 9 {
		s2.ConnEnded(ep2, true, int64(i))
	}
	assert.False(t, s2.ConnEnded(ep2, true, 10*sec), "the window of 9 failures ended")
}

// TestMaxEjectedPercent: at most MaxPercent of the set, rounded down, and
// never all of it, whatever the percent; a slot freed by a readmission
// is taken by the next failure.
func TestMaxEjectedPercent(t *testing.T) {
	for _, c := range []struct{ n, pct, want int }{
		{1, 100, 0}, {2, 50, 1}, {3, 50, 1}, {4, 50, 2}, {3, 100, 2}, {10, 10, 1}, {5, 10, 0},
	} {
		e := streakOnly
		e.MaxPercent = c.pct
		s := ejecting(c.n, e)
		for round := range 10 {
			for _, ep := range s.Current() {
				s.ConnEnded(ep, true, int64(round))
			}
		}
		assert.Equal(t, c.want, s.numEjected(), "%d addresses at %d%%", c.n, c.pct)
	}

	s := ejecting(3, streakOnly)
	a, b := s.Current()[0], s.Current()[1]
	for !s.ConnEnded(a, true, 0) {
	}
	for range 10 {
		require.False(t, s.ConnEnded(b, true, 0), "capped")
	}
	s.Readmit(30 * sec)
	assert.True(t, s.ConnEnded(b, true, 30*sec), "its streak was kept: the freed slot is its")
}

// TestEjectedNotPicked: the pick sends no dial to an ejected address
// while another is dialable, a rebalance plan sends no conn to it, and an
// address removed while ejected is readmitted at its time too.
func TestEjectedNotPicked(t *testing.T) {
	s := ejecting(3, streakOnly)
	a := s.Current()[0]
	for !s.ConnEnded(a, true, 0) {
	}
	for range 30 {
		ep := s.Pick(sec)
		require.NotSame(t, a, ep)
		s.DialEnded(ep, true)
	}
	pl := s.Rebalance(0)
	assert.Nil(t, pl.Next(), "balanced without the ejected address")
	assert.False(t, s.OthersDialable(s.Current()[1], sec) && !s.OthersDialable(a, sec))

	s.Resolved(ips(3)[1:], 0)
	assert.Equal(t, Removed, a.Status(), "removed wins over ejected")
	_, back, _ := s.Readmit(30 * sec)
	assert.Empty(t, back, "a removed address with no conns is forgotten")
}

// TestEjectionSimulation runs an hour of conn ends over five addresses,
// one failing 90% of its conns and the rest 2%, and checks that the bad
// one spends most of the hour ejected, the good ones almost none, and
// never more than two (50% of five) at once.
func TestEjectionSimulation(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	e := Ejection{Consecutive: 5, Rate: 0.5, MinVolume: 20, Window: 10 * sec, Base: 30 * sec, Max: 300 * sec, MaxPercent: 50}
	s := ejecting(5, e)
	bad := s.Current()[2]
	ejectedFor := map[*Endpoint]int64{}
	const step = sec / 10
	for now := int64(0); now < 3600*sec; now += step {
		s.Readmit(now)
		for _, ep := range s.Current() {
			if ep.Ejected() {
				ejectedFor[ep] += step
				continue
			}
			p := 0.02
			if ep == bad {
				p = 0.9
			}
			s.ConnEnded(ep, r.Float64() < p, now)
		}
		require.LessOrEqual(t, s.numEjected(), 2)
	}
	assert.Greater(t, ejectedFor[bad], int64(3000*sec), "the bad address spends most of the hour out")
	for _, ep := range s.Current() {
		if ep != bad {
			assert.Less(t, ejectedFor[ep], int64(60*sec), "%s: a good address is hardly ever out", ep.Addr)
		}
	}
}

// TestResolveToEjectedOnlyReadmits: a resolve that leaves the set with
// more ejected addresses than MaxPercent allows (here only ejected ones)
// readmits at once those whose ejection ends first, and the next Readmit
// reports them; Pick then never returns an ejected address.
func TestResolveToEjectedOnlyReadmits(t *testing.T) {
	for _, tc := range []struct {
		name      string
		n, keep   int // addresses, and how many the resolve keeps
		readmits  int
		ejectedIn int // ejected after the resolve
	}{
		{"one of two left, ejected", 2, 1, 1, 0},
		{"two of four left, both ejected", 4, 2, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := ejecting(tc.n, Ejection{Consecutive: 1, Rate: -1, Window: sec, Base: 30 * sec, Max: 300 * sec, MaxPercent: 100})
			all := s.Current()
			for i := range tc.keep { // eject the ones the resolve keeps, the first one first
				for !s.ConnEnded(all[i], true, int64(i)) {
				}
			}
			s.Readmit(0)
			s.Resolved(ips(tc.n)[:tc.keep], 5*sec)
			assert.Equal(t, tc.ejectedIn, s.numEjected())
			ejected, back, _ := s.Readmit(5 * sec)
			assert.Empty(t, ejected)
			require.Len(t, back, tc.readmits)
			assert.Same(t, all[0], back[0], "the one whose ejection ends first")
			for range 10 {
				ep := s.Pick(5 * sec)
				assert.Equal(t, Usable, ep.Status())
				s.DialEnded(ep, true)
			}
		})
	}
}

// TestBackoffIgnoresEjected: an ejected address is not dialed, so the
// set backs off when every address not ejected is failing, and stops
// when one comes back.
func TestBackoffIgnoresEjected(t *testing.T) {
	s := ejecting(2, Ejection{Consecutive: 1, Rate: -1, Window: sec, Base: 30 * sec, Max: 300 * sec, MaxPercent: 50})
	bad, down := s.Current()[0], s.Current()[1]
	require.True(t, s.ConnEnded(bad, true, 0))
	pause := func(int) int64 { return sec }
	s.DialFailed(down, 0, pause)
	assert.Equal(t, sec, s.BackoffUntil(), "the only address that may be dialed is failing")
	s.Readmit(30 * sec)
	assert.Zero(t, s.BackoffUntil(), "the readmitted address is not failing")
}
