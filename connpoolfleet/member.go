package connpoolfleet

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

//go:embed ledger.lua
var ledgerSource string

var ledger = redis.NewScript(ledgerSource)

// ErrLeft is returned by the calls on a Member after Leave.
var ErrLeft = errors.New("connpoolfleet: the member has left its budget")

// State is where a member stands with its lease.
type State uint8

const (
	// StateJoining: registered, waiting for room for its floor; with a
	// Gate, its pools dial nothing.
	StateJoining State = iota + 1
	// StateLearning: the ledger is in its learning period after a new
	// epoch; the member keeps what it holds and nobody grows.
	StateLearning
	// StateGranted: holding a renewed lease on its grant.
	StateGranted
	// StateFenced: it could not renew in time and fell back on its safe
	// share.
	StateFenced
	// StateLeft: Leave was called.
	StateLeft
)

// String returns the state in lower case: "joining", "learning",
// "granted", "fenced", "left".
func (s State) String() string {
	switch s {
	case StateJoining:
		return "joining"
	case StateLearning:
		return "learning"
	case StateGranted:
		return "granted"
	case StateFenced:
		return "fenced"
	case StateLeft:
		return "left"
	}
	return ""
}

// Stats is a snapshot of a member, from Member.Stats: what an exporter
// reads.
type Stats struct {
	Budget string // the budget's name
	ID     string // the member's ID in the ledger
	State  State
	// Grant is what the ledger lets the member use; Target what its share
	// of the budget is now (they differ while a grant moves).
	Grant, Target int
	// Caps is the sum of the caps the member set on its targets.
	Caps int
	// Demand is the smoothed demand it reported last: conns in use plus
	// Gets waiting.
	Demand float64
	// BudgetSize is B as the ledger gave it in the last renew.
	BudgetSize int
	// Epoch is the ledger's epoch; it changes when Redis lost its data.
	Epoch string
	// LeaseEnd is when the lease of the last renew ends (counted from its
	// send); zero before the first.
	LeaseEnd    time.Time
	Renews      int64 // renews answered
	RenewErrors int64 // renews that failed or timed out
	Fences      int64 // times the member fenced itself
}

// Event is a change of a member's state, grant or target, given to the
// function set by WithEvents.
type Event struct {
	Budget, ID    string
	Old, New      State
	Grant, Target int
	Caps          int
}

// Member is one process's place in a budget, from Join: it renews its lease
// in the background and sets its targets' caps. A Member is safe for
// concurrent use.
type Member struct {
	rdb     redis.Scripter
	name    string
	keys    []string
	cfg     config
	targets []Target
	stop    chan struct{}
	done    chan struct{}

	// newConn gives the member a connection of its own to Redis, which it
	// names connName and renews over: while that connection is open, the
	// ledger holds the member's grant past its lease's end (its process may
	// be stopped, not dead). Nil when rdb cannot give one, or Redis refused
	// the name: the grant is then released at the lease's end. conn is the
	// connection now, nil
	// until the next renew dials one; it is used by one goroutine at a
	// time: Join, then the loop, then Leave.
	newConn  func() *redis.Conn
	connName string
	conn     *redis.Conn
	// warned is set once the member has logged that Redis refused CLIENT
	// LIST (touched by the renew goroutine only).
	warned bool

	// capMu serializes the changes of caps, gate and lease: a renew's
	// answer and the fence timer. It guards the fields below, and is taken
	// before mu.
	capMu    sync.Mutex
	gen      uint64 // counts the answers applied; a fence of an older one is void
	caps     []int  // the cap set on each target
	capSum   int
	lastSend time.Time // the send of the last renew that gave a lease
	fence    *time.Timer
	budget   int   // the latest B known, what a new epoch starts with
	seq      int64 // the last renew's number: the ledger ignores older ones

	mu sync.Mutex // guards stats
	st Stats

	// demand is touched by the loop goroutine only.
	peak, smoothed float64
}

// Join registers this process as a member of the budget called name, of
// budget conns, in the ledger rdb holds, with the targets (pools, or groups)
// whose caps the budget sets; budget is used if the ledger has none yet (or
// lost it), else the ledger's B holds (see Member.SetBudget). Join first sets
// each target's cap to 1, makes its first renew within ctx, sets the caps it
// is granted, and returns; the member then renews every TTL/3 until Leave.
// Use the targets after Join returns. A member that finds the budget all
// granted is StateJoining until the others give back room. Given a
// *redis.Client, the member renews over a connection of its own, taken from
// the client's pool until Leave, by which the ledger tells a stopped
// process from a dead one (see Redis in the package doc).
func Join(ctx context.Context, rdb redis.Scripter, name string, budget int, targets []Target, opts ...Option) (*Member, error) {
	cfg := defaults()
	for _, o := range opts {
		o(&cfg)
	}
	if budget < 1 {
		cfg.bad("Join budget %d: must be at least 1", budget)
	}
	if name == "" {
		cfg.bad("Join name is empty")
	}
	for i, t := range targets {
		switch {
		case t == nil || !t.valid():
			cfg.bad("Join target %d is nil: give PoolTarget(pool) or GroupTarget(group)", i)
		case slices.Index(targets[:i], t) >= 0:
			cfg.bad("Join target %d steers the pool or group of target %d again: give each once", i, slices.Index(targets[:i], t))
		}
	}
	if cfg.floor > budget {
		cfg.bad("WithFloor(%d) is above the budget %d: the member could never be granted its floor", cfg.floor, budget)
	}
	if err := cfg.finish(len(targets)); err != nil {
		return nil, err
	}
	if cfg.id == "" {
		host, _ := os.Hostname()
		cfg.id = fmt.Sprintf("%s-%d-%08x", host, os.Getpid(), rand.Uint32())
	}
	m := &Member{
		rdb: rdb, name: name, keys: []string{"{" + name + "}"}, cfg: cfg,
		newConn: connOf(rdb), connName: connName(name, cfg.id),
		targets: targets, stop: make(chan struct{}), done: make(chan struct{}),
		caps: make([]int, len(targets)), budget: budget,
		// The renews are numbered from the time of Join, so that a process
		// that restarts with the same ID numbers above its old renews.
		seq: time.Now().UnixMicro(),
	}
	m.st = Stats{Budget: name, ID: cfg.id, State: StateJoining}
	if cfg.gate != nil {
		cfg.gate.openUntil(time.Time{})
	}
	for i, t := range targets {
		if err := t.setCap(1); err != nil {
			return nil, fmt.Errorf("connpoolfleet: Join %q: target %d: %w", name, i, err)
		}
		m.caps[i] = 1
	}
	if m.newConn == nil {
		m.connName = ""
	}
	m.sample()
	if err := m.renew(ctx); err != nil {
		m.closeConn()
		return nil, fmt.Errorf("connpoolfleet: Join %q: first renew: %w", name, err)
	}
	go m.run()
	return m, nil
}

func (m *Member) interval() time.Duration { return m.cfg.ttl / 3 }

// run samples demand four times per interval and renews once per interval,
// until Leave.
func (m *Member) run() {
	defer close(m.done)
	sample := time.NewTicker(m.interval() / 4)
	defer sample.Stop()
	renew := time.NewTicker(m.interval())
	defer renew.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-sample.C:
			m.sample()
		case <-renew.C:
			// A renew may take until the next one is due; past that the
			// fence timer has it covered.
			ctx, cancel := context.WithTimeout(context.Background(), m.interval())
			err := m.renew(ctx)
			cancel()
			if err != nil {
				m.cfg.logger.Debug("connpoolfleet: renew failed", "budget", m.name, "member", m.cfg.id, "err", err)
			}
		}
	}
}

// sample folds the demand now into this interval's peak.
func (m *Member) sample() {
	var d int
	for _, t := range m.targets {
		l := t.load()
		d += l.inUse + l.waiting
	}
	m.peak = max(m.peak, float64(d))
}

// renew makes one round trip to the ledger and applies its answer. When the
// answer names members whose leases ended while a connection of theirs may
// still be open, it asks Redis which of them are gone (CLIENT LIST) and
// renews again to release those: two more round trips, only then.
func (m *Member) renew(ctx context.Context) error {
	a := m.cfg.smoothing
	m.smoothed = a*m.peak + (1-a)*m.smoothed
	m.peak = 0
	m.sample() // the next interval starts from now
	r, err := m.renewOnce(ctx, nil)
	if err != nil || len(r.check) == 0 {
		return err
	}
	gone, err := m.gone(ctx, r.check)
	if err != nil {
		m.cfg.logger.Debug("connpoolfleet: could not check the connections of expired members; the next check is due in an interval",
			"budget", m.name, "member", m.cfg.id, "err", err)
		return nil
	}
	if len(gone) == 0 {
		return nil
	}
	_, err = m.renewOnce(ctx, gone)
	return err
}

// renewOnce runs the renew script once, releasing the members in gone (id
// and seq pairs) whose connections were found closed, and applies its
// answer.
func (m *Member) renewOnce(ctx context.Context, gone []any) (reply, error) {
	opens := make([]int, len(m.targets))
	var used int
	for i, t := range m.targets {
		opens[i] = t.load().open
		used += opens[i]
	}
	m.capMu.Lock()
	held, budget := 0, m.budget
	if m.gen > 0 && !m.lastSend.IsZero() {
		// What the member may use: each target's cap, or its open conns
		// where they are over it (a cap just lowered below its borrowed
		// conns). The sum of the caps alone and the sum of the opens alone
		// can both be less, when one target is over its cap and another
		// has room under its own.
		for i, c := range m.caps {
			held += max(c, opens[i])
		}
	}
	m.seq++
	seq := m.seq
	m.capMu.Unlock()

	send := time.Now()
	args := append([]any{"renew", m.cfg.id, budget, m.cfg.ttl.Milliseconds(),
		m.cfg.floor, m.cfg.safe, m.cfg.reserveHold.Milliseconds(), m.smoothed, used, held,
		m.interval().Milliseconds(), m.cfg.damping, seq, m.connName}, gone...)
	res, err := m.script(ctx, args)
	if err != nil {
		m.mu.Lock()
		m.st.RenewErrors++
		m.mu.Unlock()
		return reply{}, err
	}
	r, err := parseReply(res)
	if err != nil {
		return reply{}, err
	}
	if r.stale {
		return r, errStale
	}
	m.apply(send, r)
	return r, nil
}

type reply struct {
	grant, target, budget int
	epoch                 string
	learning, seated      bool
	stale                 bool
	// check lists the members whose leases ended while a connection named
	// after them may be open: id, connection name and seq for each.
	check []string
}

// errStale is a renew the ledger found older than one it applied: a
// go-redis retry of a call that came back after a later one. Its answer
// gives nothing.
var errStale = errors.New("connpoolfleet: the ledger ignored a stale renew")

func parseReply(res []any) (reply, error) {
	if len(res) < 8 {
		return reply{}, fmt.Errorf("connpoolfleet: the ledger answered %v", res)
	}
	n := func(i int) int { v, _ := res[i].(int64); return int(v) }
	ep, _ := res[2].(string)
	r := reply{grant: n(0), target: n(1), epoch: ep, budget: n(3), learning: n(4) == 1, seated: n(5) == 1, stale: n(7) == 1}
	if len(res) > 8 {
		xs, _ := res[8].([]any)
		for _, x := range xs {
			s, _ := x.(string)
			r.check = append(r.check, s)
		}
	}
	return r, nil
}

// apply sets the caps an answer allows, opens the gate until the fence
// time of the lease (counted from the send) and arms the fence timer.
func (m *Member) apply(send time.Time, r reply) {
	fenceAt := send.Add(m.cfg.ttl - m.cfg.margin)
	m.capMu.Lock()
	if m.gen == ^uint64(0) { // left
		m.capMu.Unlock()
		return
	}
	m.gen++
	m.budget = r.budget
	if !time.Now().Before(fenceAt) {
		// The answer came after the lease could have ended: it gives
		// nothing; the fence (applied or due) stands.
		gen := m.gen
		m.capMu.Unlock()
		m.fenceNow(gen)
		return
	}
	want := min(r.grant, r.target)
	state := StateGranted
	switch {
	case !r.seated || want == 0:
		state = StateJoining
	case r.learning:
		state = StateLearning
	}
	if want >= len(m.targets) {
		m.setCapsLocked(want)
		m.lastSend = send
		if m.cfg.gate != nil {
			m.cfg.gate.openUntil(fenceAt)
		}
	} else {
		// No grant for even one conn per target: caps at 1, gate closed.
		m.setCapsLocked(len(m.targets))
		m.lastSend = time.Time{}
		if m.cfg.gate != nil {
			m.cfg.gate.openUntil(time.Time{})
		}
	}
	if m.fence != nil {
		m.fence.Stop()
	}
	gen := m.gen
	m.fence = time.AfterFunc(time.Until(fenceAt), func() { m.fenceNow(gen) })
	caps := m.capSum
	m.capMu.Unlock()

	m.mu.Lock()
	old := m.st.State
	changed := old != state || m.st.Grant != r.grant || m.st.Target != r.target
	m.st.State, m.st.Grant, m.st.Target, m.st.Caps = state, r.grant, r.target, caps
	m.st.Demand, m.st.BudgetSize, m.st.Epoch = m.smoothed, r.budget, r.epoch
	m.st.LeaseEnd = send.Add(m.cfg.ttl)
	m.st.Renews++
	m.mu.Unlock()
	if changed {
		m.emit(Event{Old: old, New: state, Grant: r.grant, Target: r.target, Caps: caps})
	}
}

// fenceNow lowers the caps to the safe share if no answer newer than gen
// came, and opens the gate only within the reserve the ledger holds for it.
func (m *Member) fenceNow(gen uint64) {
	m.capMu.Lock()
	if gen != m.gen {
		m.capMu.Unlock()
		return
	}
	m.gen++ // a second fence of the same lease is void
	wasHolding := !m.lastSend.IsZero()
	safe := max(min(m.capSum, m.cfg.safe), len(m.targets))
	m.setCapsLocked(safe)
	if m.cfg.gate != nil {
		if wasHolding && m.cfg.reserveHold > 0 {
			m.cfg.gate.openUntil(m.lastSend.Add(m.cfg.ttl + m.cfg.reserveHold - m.cfg.margin))
		} else {
			m.cfg.gate.openUntil(time.Time{})
		}
	}
	lastSend := m.lastSend
	caps := m.capSum
	m.capMu.Unlock()

	m.mu.Lock()
	old := m.st.State
	m.st.State, m.st.Caps = StateFenced, caps
	if old != StateFenced {
		m.st.Fences++
	}
	grant, target := m.st.Grant, m.st.Target
	m.mu.Unlock()
	if old == StateFenced {
		return
	}
	m.cfg.logger.Warn("connpoolfleet: fenced: no lease renewed in time; caps lowered to the safe share",
		"budget", m.name, "member", m.cfg.id, "caps", caps, "last_renew_sent", lastSend, "ttl", m.cfg.ttl)
	m.emit(Event{Old: old, New: StateFenced, Grant: grant, Target: target, Caps: caps})
}

// setCapsLocked spreads total over the targets by their demand, at least 1
// each. It lowers caps first and raises one only into what the lowered
// ones no longer use, so the conns open across targets stay within
// max(total, what was open). capMu must be held.
func (m *Member) setCapsLocked(total int) {
	n := len(m.targets)
	if n == 1 {
		// One target keeps its own conns within max(cap, what was open)
		// when its cap is lowered: nothing to guard. (A Group counts dials
		// that wait for a slot as dialing: the guard below would hold its
		// cap down.)
		if m.caps[0] != total && m.targets[0].setCap(total) == nil {
			m.caps[0] = total
		}
		m.capSum = m.caps[0]
		return
	}
	want := make([]int, n)
	loads := make([]load, n)
	var d int
	for i, t := range m.targets {
		loads[i] = t.load()
		d += loads[i].inUse + loads[i].waiting
	}
	left := total - n
	for i := range want {
		want[i] = 1
		if d > 0 {
			want[i] += left * (loads[i].inUse + loads[i].waiting) / d
		} else {
			want[i] += left / n
		}
	}
	for i, s := 0, sum(want); s < total; i, s = i+1, s+1 {
		want[i%n]++
	}
	for i, t := range m.targets {
		if want[i] < m.caps[i] && t.setCap(want[i]) == nil {
			m.caps[i] = want[i]
		}
	}
	slack := total
	for i, t := range m.targets {
		slack -= max(m.caps[i], t.load().open)
	}
	for i, t := range m.targets {
		if up := min(want[i]-m.caps[i], slack); up > 0 && t.setCap(m.caps[i]+up) == nil {
			m.caps[i] += up
			slack -= up
		}
	}
	m.capSum = sum(m.caps)
}

func sum(xs []int) int {
	var s int
	for _, x := range xs {
		s += x
	}
	return s
}

func (m *Member) emit(e Event) {
	if m.cfg.events == nil {
		return
	}
	e.Budget, e.ID = m.name, m.cfg.id
	m.cfg.events(e)
}

// Stats returns a snapshot of the member.
func (m *Member) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st
}

// SetBudget changes B for the whole budget, at once for the ledger and for
// each member at its next renew. Lowered, no member grows while the grants
// add up to more than n, and members shrink as their conns come back.
// n must be at least 1.
func (m *Member) SetBudget(ctx context.Context, n int) error {
	if n < 1 {
		return fmt.Errorf("%w: SetBudget(%d): must be at least 1", ErrInvalidOption, n)
	}
	select {
	case <-m.done:
		return ErrLeft
	default:
	}
	err := ledger.Run(ctx, m.rdb, m.keys, "budget", m.cfg.id, n, m.cfg.ttl.Milliseconds(),
		m.cfg.floor, m.cfg.safe, m.cfg.reserveHold.Milliseconds(), 0, 0, 0,
		m.interval().Milliseconds(), m.cfg.damping, 0, "").Err()
	if err != nil {
		return fmt.Errorf("connpoolfleet: SetBudget(%d): %w", n, err)
	}
	m.capMu.Lock()
	m.budget = n
	m.capMu.Unlock()
	return nil
}

// Leave stops the renews, closes the gate, sets each target's cap to 1 and
// retires its conns (Pool.Reset), and returns the grant to the ledger at
// once, less the conns still open, which the ledger holds for one TTL. Call
// it when the targets are no longer used, or after closing them. A second
// Leave returns ErrLeft.
func (m *Member) Leave(ctx context.Context) error {
	m.capMu.Lock()
	if m.gen == ^uint64(0) {
		m.capMu.Unlock()
		return ErrLeft
	}
	m.gen = ^uint64(0)
	if m.fence != nil {
		m.fence.Stop()
	}
	if m.cfg.gate != nil {
		m.cfg.gate.openUntil(time.Time{})
	}
	for i, t := range m.targets {
		if t.setCap(1) == nil {
			m.caps[i] = 1
		}
		t.reset()
	}
	m.capSum = sum(m.caps)
	m.capMu.Unlock()
	close(m.stop)
	<-m.done

	var used int
	for _, t := range m.targets {
		used += t.load().open
	}
	_, err := m.script(ctx, []any{"leave", m.cfg.id, 0, m.cfg.ttl.Milliseconds(),
		m.cfg.floor, m.cfg.safe, m.cfg.reserveHold.Milliseconds(), 0, used, 0,
		m.interval().Milliseconds(), m.cfg.damping, 0, m.connName})
	m.closeConn()
	m.mu.Lock()
	old := m.st.State
	m.st.State = StateLeft
	m.mu.Unlock()
	m.emit(Event{Old: old, New: StateLeft})
	if err != nil {
		return fmt.Errorf("connpoolfleet: Leave: the ledger keeps the grant until the lease ends: %w", err)
	}
	return nil
}
