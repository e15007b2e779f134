package connpoolfleet_test

import (
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The scenarios of the issue: member processes against one count server,
// through a redis-server of the test's own. B = 20 unless said; a short TTL
// keeps them fast.
const (
	budget  = 20
	testTTL = 1500 * time.Millisecond
	// settle bounds every wait for the fleet to reach a state: many
	// intervals, for a loaded machine.
	settle = 30 * time.Second
	tick   = 20 * time.Millisecond
)

type fleet struct {
	fc    fleetConfig
	redis *redisServer
	srv   *countServer
	start time.Time
}

func newFleet(t *testing.T) *fleet {
	t.Helper()
	r := startRedis(t)
	srv := startCountServer(t)
	name := regexp.MustCompile(`[^a-zA-Z0-9]+`).ReplaceAllString(t.Name(), "-")
	return &fleet{
		fc:    fleetConfig{redis: r.addr, server: srv.addr(), name: name, budget: budget, ttl: testTTL},
		redis: r, srv: srv, start: time.Now(),
	}
}

// checkPeak asserts that the server never saw more than bound conns, and
// logs the figures.
func (f *fleet) checkPeak(t *testing.T, bound int) int {
	t.Helper()
	_, peak, _ := f.srv.snapshot()
	assert.LessOrEqual(t, peak, bound, "conns open at the server above the bound")
	return peak
}

func granted(p *proc, atLeast int) func() bool {
	return grantedAfter(p, atLeast, time.Time{})
}

// grantedAfter is granted, by a stats line written after since.
func grantedAfter(p *proc, atLeast int, since time.Time) func() bool {
	return func() bool {
		l, ok := p.last()
		return ok && l.State == "granted" && l.Caps >= atLeast && time.Unix(0, l.At).After(since)
	}
}

func figures(t *testing.T, format string, args ...any) {
	t.Helper()
	t.Logf("FIGURES %s: "+format, append([]any{t.Name()}, args...)...)
}

// eventually waits for cond, failing the test with msg after settle.
func eventually(t *testing.T, cond func() bool, msg string, args ...any) {
	t.Helper()
	require.Eventually(t, cond, settle, tick, append([]any{msg}, args...)...)
}

// waitUntil waits until the wall clock passes at.
func waitUntil(t *testing.T, at time.Time) {
	t.Helper()
	require.Eventually(t, func() bool { return time.Now().After(at) }, time.Until(at)+settle, tick)
}

// TestSkewedDemand: one busy member and three idle ones; the busy one gets
// most of B (all but the idle ones' floors) within a few renew intervals.
func TestSkewedDemand(t *testing.T) {
	f := newFleet(t)
	busy := startMember(t, f.fc, "busy", 30)
	for _, id := range []string{"idle-1", "idle-2", "idle-3"} {
		startMember(t, f.fc, id, 0)
	}
	eventually(t, granted(busy, 15), "the busy member never got most of B")
	converge := time.Since(f.start)
	// It holds its share while the idle ones stay at their floors.
	n := len(busy.all())
	eventually(t, func() bool { return len(busy.all()) > n+20 }, "the busy member stopped reporting")
	l, _ := busy.last()
	assert.GreaterOrEqual(t, l.Caps, 15)
	peak := f.checkPeak(t, budget)
	figures(t, "peak=%d/%d converge=%v busy_caps=%d busy_share=%.0f%% of B (idle floors 3)",
		peak, budget, converge.Round(10*time.Millisecond), l.Caps, 100*float64(l.Caps)/budget)
}

// TestJoinLeave: members join and leave under load; shares rebalance and
// the server never sees more than B. Regression: three members held 6 each
// by damping while the fourth waited at 2, until damping yielded to a full
// budget.
func TestJoinLeave(t *testing.T) {
	f := newFleet(t)
	a := startMember(t, f.fc, "a", 20)
	b := startMember(t, f.fc, "b", 20)
	eventually(t, func() bool { return granted(a, 9)() && granted(b, 9)() }, "two busy members did not split B")
	c := startMember(t, f.fc, "c", 20)
	d := startMember(t, f.fc, "d", 20)
	t0 := time.Now()
	all := []*proc{a, b, c, d}
	eventually(t, func() bool {
		for _, p := range all {
			if !granted(p, 4)() {
				return false
			}
		}
		return true
	}, "four busy members did not rebalance")
	joinConverge := time.Since(t0)
	// The four have split B; once a leaves, the three others share it.
	eventually(t, func() bool {
		for _, p := range all {
			if l, ok := p.last(); !ok || l.Caps > 5 {
				return false
			}
		}
		return true
	}, "four busy members did not come down to their share")
	t1 := time.Now()
	a.send("leave")
	a.wait()
	eventually(t, func() bool { return granted(b, 6)() && granted(c, 6)() && granted(d, 6)() },
		"the grant of the member that left did not go to the others")
	leaveConverge := time.Since(t1)
	peak := f.checkPeak(t, budget)
	sum := 0
	for _, p := range []*proc{b, c, d} {
		l, _ := p.last()
		sum += l.Caps
	}
	figures(t, "peak=%d/%d after_join=%v after_leave=%v caps_of_the_three=%d of %d (floors 3, level rounds down)", peak, budget,
		joinConverge.Round(10*time.Millisecond), leaveConverge.Round(10*time.Millisecond), sum, budget)
}

// TestKillMember: kill -9 a member that holds half of B; the other gets its
// share only after the dead member's lease ends, never before.
func TestKillMember(t *testing.T) {
	f := newFleet(t)
	x := startMember(t, f.fc, "x", 30)
	a := startMember(t, f.fc, "a", 30)
	eventually(t, func() bool { return granted(x, 10)() && granted(a, 10)() }, "two busy members did not split B")
	before := f.srv.openOf("a")
	lx, _ := x.last()
	x.signal(syscall.SIGKILL)
	tk := time.Now()
	x.kill()
	// Its last renew was sent before its last stats line's lease end less
	// the TTL: the ledger's lease ends after that lease end.
	leaseEnd := time.Unix(0, lx.LeaseEnd)
	eventually(t, granted(a, 17), "the survivor never got the dead member's share")
	grown := time.Since(tk)
	_, _, log := f.srv.snapshot()
	for _, e := range log {
		if e.id == "a" && e.delta > 0 && e.at.After(tk) && e.at.Before(leaseEnd) {
			assert.LessOrEqual(t, e.mine, max(before, 10), "a grew before the dead member's lease ended (at %v, lease end %v)", e.at, leaseEnd)
		}
	}
	peak := f.checkPeak(t, budget)
	la, _ := a.last()
	figures(t, "peak=%d/%d dead_held=%d survivor_grew_after=%v (ttl %v) survivor_caps=%d", peak, budget,
		lx.Caps, grown.Round(10*time.Millisecond), testTTL, la.Caps)
}

// TestRedisRestartEmpty: kill -9 Redis and start it again empty during
// load: members re-register, nobody grows during the learning period, and
// the server never sees more than B.
func TestRedisRestartEmpty(t *testing.T) {
	f := newFleet(t)
	ps := make([]*proc, 4)
	for i := range ps {
		ps[i] = startMember(t, f.fc, string(rune('a'+i)), 10)
	}
	eventually(t, func() bool {
		for _, p := range ps {
			if !granted(p, 4)() {
				return false
			}
		}
		return true
	}, "four busy members did not split B")
	capsBefore := map[string]int{}
	for _, p := range ps {
		l, _ := p.last()
		capsBefore[p.id] = l.Caps
	}
	f.redis.kill()
	tk := time.Now()
	f.redis.start()
	learnAt := map[string]time.Time{}
	for _, p := range ps {
		eventually(t, func() bool {
			for _, l := range p.all() {
				if at := time.Unix(0, l.At); l.Kind == "e" && l.State == "learning" && at.After(tk) {
					learnAt[p.id] = at
					return true
				}
			}
			return false
		}, "member %s never entered the learning period", p.id)
	}
	for _, p := range ps {
		eventually(t, grantedAfter(p, 3, learnAt[p.id]), "member %s never came out of learning", p.id)
	}
	recovered := time.Since(tk)
	for _, p := range ps {
		for _, l := range p.all() {
			if l.State == "learning" && time.Unix(0, l.At).After(tk) {
				assert.LessOrEqual(t, l.Caps, capsBefore[p.id], "member %s grew while learning", p.id)
			}
		}
	}
	peak := f.checkPeak(t, budget)
	figures(t, "peak=%d/%d back_to_granted_after=%v (learning = ttl %v)", peak, budget, recovered.Round(10*time.Millisecond), testTTL)
}

// TestRedisPaused: SIGSTOP Redis past the TTL, then SIGCONT: every member
// fences before its lease ends, the server never sees more than B, and
// service resumes. Regression: the renews queued in the paused Redis's
// sockets ran after newer ones and released grants still in use (peak 26 of
// 20) until renews carried a number the ledger checks.
func TestRedisPaused(t *testing.T) {
	f := newFleet(t)
	ps := make([]*proc, 4)
	for i := range ps {
		ps[i] = startMember(t, f.fc, string(rune('a'+i)), 10)
	}
	eventually(t, func() bool {
		for _, p := range ps {
			if !granted(p, 4)() {
				return false
			}
		}
		return true
	}, "four busy members did not split B")
	f.redis.signal(syscall.SIGSTOP)
	ts := time.Now()
	var lastLease time.Time
	for _, p := range ps {
		var fence line
		eventually(t, func() bool {
			for _, l := range p.all() {
				if l.Kind == "e" && l.State == "fenced" && time.Unix(0, l.At).After(ts) {
					fence = l
					return true
				}
			}
			return false
		}, "member %s never fenced", p.id)
		end := time.Unix(0, fence.LeaseEnd)
		assert.True(t, time.Unix(0, fence.At).Before(end), "member %s fenced at %v, after its lease end %v", p.id, time.Unix(0, fence.At), end)
		if end.After(lastLease) {
			lastLease = end
		}
	}
	fencedIn := time.Since(ts)
	waitUntil(t, lastLease.Add(testTTL/3))
	// Fenced: each member keeps at most its safe share (1).
	eventually(t, func() bool { return f.srv.total() <= len(ps) }, "fenced members kept more than their safe shares")
	f.redis.signal(syscall.SIGCONT)
	tc := time.Now()
	for _, p := range ps {
		eventually(t, grantedAfter(p, 3, tc), "member %s did not resume", p.id)
	}
	resumed := time.Since(tc)
	peak := f.checkPeak(t, budget)
	figures(t, "peak=%d/%d all_fenced_within=%v resumed_after=%v", peak, budget, fencedIn.Round(10*time.Millisecond), resumed.Round(10*time.Millisecond))
}

// TestMemberPaused: SIGSTOP a member that holds half of B past its TTL,
// then SIGCONT. A stopped process keeps its sockets open: its conns to the
// server stay counted there, and its connection to Redis stays open. The
// ledger sees that connection, so it holds the stopped member's grant past
// the lease's end instead of releasing it: the other member does not grow
// into it, and the server never sees more than B, during the pause or after.
// On waking, the member dials nothing before it has renewed, and renews onto
// the grant held for it. Regressions: the lease's end released the stopped
// member's grant and the other grew to 19 beside its 10 frozen conns (peak
// 29 of 20); before that, the woken member re-claimed its frozen conns as a
// usable grant, until a claim beyond the room became debt.
func TestMemberPaused(t *testing.T) {
	f := newFleet(t)
	x, a := pausedFleet(t, f)
	xOpen := f.srv.openOf("x")
	tc := time.Now()
	paused := tc.Sub(x.stoppedAt)
	aMax := maxCaps(a, x.stoppedAt, tc)
	assert.LessOrEqual(t, aMax+xOpen, budget, "the other member grew into the stopped member's grant (%d beside %d frozen)", aMax, xOpen)
	x.signal(syscall.SIGCONT)
	// x's first renew after waking: its stats show a lease that ends after
	// tc, so sent after it woke (the pause was longer than the TTL).
	var renewed time.Time
	eventually(t, func() bool {
		for _, l := range x.all() {
			if l.Kind == "s" && l.State == "granted" && time.Unix(0, l.LeaseEnd).After(tc.Add(testTTL/2)) {
				renewed = time.Unix(0, l.LeaseEnd).Add(-testTTL) // the renew's send
				return true
			}
		}
		return false
	}, "the paused member never renewed")
	eventually(t, grantedAfter(x, 8, renewed), "the woken member did not get its held grant back")
	_, _, log := f.srv.snapshot()
	for _, e := range log {
		if e.id == "x" && e.delta > 0 && e.at.After(tc) && e.at.Before(renewed) {
			assert.LessOrEqual(t, e.mine, 1, "the paused member dialed on its old grant at %v (renewed at %v)", e.at, renewed)
		}
	}
	peak := f.checkPeak(t, budget)
	if t.Failed() {
		dumpLog(t, log, x.stoppedAt, []*proc{x, a})
	}
	lx, _ := x.last()
	figures(t, "peak=%d/%d frozen=%d other_max_caps_while_stopped=%d paused_for=%v renewed_after_wake=%v woken_caps=%d",
		peak, budget, xOpen, aMax, paused.Round(10*time.Millisecond), renewed.Sub(tc).Round(10*time.Millisecond), lx.Caps)
}

// TestMemberPausedThenKilled: SIGSTOP a member that holds half of B past
// its TTL, then SIGKILL it while stopped. Its grant is held while it is
// stopped (its Redis connection is open); once it is dead its connection is
// gone, and the next check of the held grant releases it: the other member
// grows then, never while the dead member's conns were open.
func TestMemberPausedThenKilled(t *testing.T) {
	f := newFleet(t)
	x, a := pausedFleet(t, f)
	xOpen := f.srv.openOf("x")
	aMax := maxCaps(a, x.stoppedAt, time.Now())
	assert.LessOrEqual(t, aMax+xOpen, budget, "the other member grew into the stopped member's grant (%d beside %d frozen)", aMax, xOpen)
	x.signal(syscall.SIGKILL)
	tk := time.Now()
	x.kill()
	eventually(t, grantedAfter(a, 17, tk), "the survivor never got the dead member's share")
	grown := time.Since(tk)
	peak := f.checkPeak(t, budget)
	la, _ := a.last()
	figures(t, "peak=%d/%d frozen=%d other_max_caps_while_stopped=%d survivor_grew_after_kill=%v (interval %v) survivor_caps=%d",
		peak, budget, xOpen, aMax, grown.Round(10*time.Millisecond), testTTL/3, la.Caps)
}

// pausedFleet starts two busy members, x and a, waits for them to split B,
// SIGSTOPs x and waits until two TTLs past x's lease end, so that a's
// renews have found x's lease expired several times.
func pausedFleet(t *testing.T, f *fleet) (x, a *proc) {
	t.Helper()
	x = startMember(t, f.fc, "x", 30)
	a = startMember(t, f.fc, "a", 30)
	eventually(t, func() bool { return granted(x, 10)() && granted(a, 10)() }, "two busy members did not split B")
	x.signal(syscall.SIGSTOP)
	x.stoppedAt = time.Now()
	// Its last renew was sent before the stop: its lease ends within a TTL.
	waitUntil(t, x.stoppedAt.Add(3*testTTL))
	return x, a
}

// maxCaps returns the largest caps p reported between from and to.
func maxCaps(p *proc, from, to time.Time) int {
	n := 0
	for _, l := range p.all() {
		if at := time.Unix(0, l.At); l.Kind == "s" && at.After(from) && at.Before(to) {
			n = max(n, l.Caps)
		}
	}
	return n
}

// TestBudgetLowered: B lowered from 20 to 8 under load: members shrink as
// conns come back; never above max(8, conns open at the change), and at
// most 8 once they are back.
func TestBudgetLowered(t *testing.T) {
	f := newFleet(t)
	ps := make([]*proc, 4)
	for i := range ps {
		ps[i] = startMember(t, f.fc, string(rune('a'+i)), 10)
	}
	eventually(t, func() bool {
		for _, p := range ps {
			if !granted(p, 4)() {
				return false
			}
		}
		return true
	}, "four busy members did not split B")
	atChange := f.srv.total()
	tb := time.Now()
	ps[0].send("budget 8")
	eventually(t, func() bool { return f.srv.total() <= 8 }, "the fleet never shrank to the new budget")
	under := time.Since(tb)
	eventually(t, func() bool {
		for _, p := range ps {
			if l, ok := p.last(); !ok || l.Budget != 8 {
				return false
			}
		}
		return true
	}, "not every member learned the new budget")
	n := len(ps[0].all())
	eventually(t, func() bool { return len(ps[0].all()) > n+20 }, "member stopped reporting")
	_, peak, log := f.srv.snapshot()
	// The conns borrowed at the change are back once every member has come
	// down to its new cap; from then on the server sees at most 8. (Before,
	// a member whose pool closed more than it had to may dial again within
	// its cap while another still drains.)
	newCaps := map[string]int{}
	for _, p := range ps {
		l, _ := p.last()
		newCaps[p.id] = l.Caps
	}
	down := map[string]bool{}
	for _, e := range log {
		if e.at.After(tb) && e.mine <= newCaps[e.id] {
			down[e.id] = true
		}
		if len(down) == len(ps) && !assert.LessOrEqual(t, e.total, 8, "above the new budget after the conns borrowed at the change came back") {
			break
		}
	}
	if t.Failed() {
		dumpLog(t, log, tb, ps)
	}
	assert.LessOrEqual(t, peak, max(budget, atChange))
	open := f.srv.total()
	figures(t, "peak=%d/%d open_at_change=%d within_8_after=%v open_now=%d (utilisation %.0f%% of 8)", peak, budget,
		atChange, under.Round(10*time.Millisecond), open, 100*float64(open)/8)
}

// dumpLog logs the server's opens and closes and the members' events from
// since on, for a failed test.
func dumpLog(t *testing.T, log []connEvent, since time.Time, ps []*proc) {
	for _, e := range log {
		if e.at.After(since) {
			t.Logf("server %8v %s %+d total=%d mine=%d", e.at.Sub(since).Round(time.Millisecond), e.id, e.delta, e.total, e.mine)
		}
	}
	for _, p := range ps {
		for _, l := range p.all() {
			if at := time.Unix(0, l.At); l.Kind == "e" && at.After(since) {
				t.Logf("member %s %8v %s->%s grant=%d target=%d caps=%d", p.id, at.Sub(since).Round(time.Millisecond), l.Old, l.State, l.Grant, l.Target, l.Caps)
			}
		}
	}
}
