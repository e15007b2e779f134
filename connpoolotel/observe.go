package connpoolotel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/connpool/connpool"
)

// Observe registers a callback that reports p's gauges and counters, read
// from one p.Stats() per collection: count by state, idle.max, idle.min,
// max, pending_requests, timeouts, closed by reason, and gets by result. The settings are
// read at each collection, so they follow p.SetMaxConns, SetMinIdle and
// SetMaxIdle. Unregister the registration when p is done with: until then
// the meter holds p, and reports it after it is closed. Observe p once:
// a pool observed twice, or two pools of one name, report their series
// twice over.
func (m *Metrics) Observe(p *connpool.Pool) (metric.Registration, error) {
	if p == nil {
		return nil, errors.New("connpoolotel: Observe of a nil pool")
	}
	// The pool's name is fixed: its sets are made once, here, not in the
	// callback, which the readers of a provider may call at once.
	sets := newPoolSets(p.Stats().Name)
	return m.register(func(o metric.Observer) {
		m.observe(o, p.Stats(), sets)
	})
}

// ObserveGroup registers a callback that reports, as Observe does, every
// pool g holds at each collection, from one g.Stats(): a pool the group
// closed and forgot is no longer reported. Unregister the registration
// when g is done with.
func (m *Metrics) ObserveGroup(g *connpool.Group) (metric.Registration, error) {
	if g == nil {
		return nil, errors.New("connpoolotel: ObserveGroup of a nil group")
	}
	return m.register(func(o metric.Observer) {
		for _, s := range g.Stats() {
			m.observe(o, s, newPoolSets(s.Name))
		}
	})
}

// register registers observe as the callback of every asynchronous
// instrument of m.
func (m *Metrics) register(observe func(metric.Observer)) (metric.Registration, error) {
	reg, err := m.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		observe(o)
		return nil
	}, m.count, m.idleMax, m.idleMin, m.max, m.pending, m.timeouts, m.closed, m.gets,
		m.backendCount, m.backendDials, m.backendDialErrors, m.backendBackingOff, m.backendDraining,
		m.ejected, m.backendEjected, m.backendEjections)
	if err != nil {
		return nil, fmt.Errorf("connpoolotel: %w", err)
	}
	return reg, nil
}

// observe reports one pool's Stats.
func (m *Metrics) observe(o metric.Observer, s connpool.Stats, sets *poolSets) {
	o.ObserveInt64(m.count, int64(s.Idle), sets.idle)
	o.ObserveInt64(m.count, int64(s.InUse), sets.used)
	o.ObserveInt64(m.idleMax, int64(s.MaxIdle), sets.pool)
	o.ObserveInt64(m.idleMin, int64(s.MinIdle), sets.pool)
	o.ObserveInt64(m.max, int64(s.MaxConns), sets.pool)
	o.ObserveInt64(m.pending, int64(s.Waiting), sets.pool)
	o.ObserveInt64(m.timeouts, s.Timeouts, sets.pool)
	o.ObserveInt64(m.ejected, s.Ejections, sets.pool)
	for i, c := range closeCounters {
		o.ObserveInt64(m.closed, c.count(s), sets.closed[i])
	}
	for i, r := range getResults {
		o.ObserveInt64(m.gets, r.count(s), sets.gets[i])
	}
	for _, a := range s.Addresses {
		m.observeBackend(o, sets.name, a)
	}
}

// observeBackend reports one address of a pool of a host name, with the
// attributes of the pool's name and of the address: network.peer.address
// and network.peer.port for an ip:port, network.peer.address alone for
// anything else.
func (m *Metrics) observeBackend(o metric.Observer, name attribute.KeyValue, a connpool.AddressStats) {
	attrs := []attribute.KeyValue{name, semconv.NetworkPeerAddress(a.Address)}
	if host, port, err := net.SplitHostPort(a.Address); err == nil {
		if n, err := strconv.Atoi(port); err == nil {
			attrs = []attribute.KeyValue{name, semconv.NetworkPeerAddress(host), semconv.NetworkPeerPort(n)}
		}
	}
	with := func(extra ...attribute.KeyValue) metric.ObserveOption {
		return metric.WithAttributeSet(attribute.NewSet(append(attrs[:len(attrs):len(attrs)], extra...)...))
	}
	flag := func(b bool) int64 {
		if b {
			return 1
		}
		return 0
	}
	o.ObserveInt64(m.backendCount, int64(a.Idle), with(semconv.DBClientConnectionStateIdle))
	o.ObserveInt64(m.backendCount, int64(a.InUse), with(semconv.DBClientConnectionStateUsed))
	addr := with()
	o.ObserveInt64(m.backendDials, a.Dials, addr)
	o.ObserveInt64(m.backendDialErrors, a.DialErrors, addr)
	o.ObserveInt64(m.backendBackingOff, flag(a.BackingOff), addr)
	o.ObserveInt64(m.backendDraining, flag(a.Draining), addr)
	o.ObserveInt64(m.backendEjected, flag(a.Ejected), addr)
	o.ObserveInt64(m.backendEjections, a.Ejections, addr)
}

// poolSets are the attribute sets of one pool's observations.
type poolSets struct {
	name             attribute.KeyValue // the pool's name, for the sets of its addresses
	pool, idle, used metric.ObserveOption
	closed           [len(closeCounters)]metric.ObserveOption // by closeCounters' index
	gets             []metric.ObserveOption                   // by getResults' index
}

func newPoolSets(pool string) *poolSets {
	name := semconv.DBClientConnectionPoolName(pool)
	s := &poolSets{
		name: name,
		pool: metric.WithAttributeSet(poolSet(pool)),
		idle: metric.WithAttributeSet(attribute.NewSet(name, semconv.DBClientConnectionStateIdle)),
		used: metric.WithAttributeSet(attribute.NewSet(name, semconv.DBClientConnectionStateUsed)),
	}
	for i, c := range closeCounters {
		s.closed[i] = metric.WithAttributeSet(attribute.NewSet(name, reasonKey.String(c.reason.String())))
	}
	s.gets = make([]metric.ObserveOption, len(getResults))
	for i, r := range getResults {
		attrs := []attribute.KeyValue{name, getResultKey.String(r.name)}
		if r.failed {
			attrs = append(attrs, semconv.ErrorTypeKey.String(r.name))
		}
		s.gets[i] = metric.WithAttributeSet(attribute.NewSet(attrs...))
	}
	return s
}

// getResult is one result of a Get: its name, whether it is a failure,
// and its counter in Stats.
type getResult struct {
	name   string
	failed bool
	count  func(connpool.Stats) int64
}

// getResults are the results of a Get: hit, miss, and each failure of
// connpool.GetFailures, named by its String.
var getResults = func() []getResult {
	out := []getResult{
		{"hit", false, func(s connpool.Stats) int64 { return s.Hits }},
		{"miss", false, func(s connpool.Stats) int64 { return s.Misses }},
	}
	for _, f := range connpool.GetFailures() {
		out = append(out, getResult{f.String(), true, func(s connpool.Stats) int64 { return s.Failed(f) }})
	}
	return out
}()

// closeCounters maps each reason a conn closes for to its counter in
// Stats. It must list every counter of the Stats sum of closes (see
// [connpool.Stats]); TestCloseCountersCoverStats fails when the core adds
// one.
var closeCounters = [...]struct {
	reason connpool.CloseReason
	count  func(connpool.Stats) int64
}{
	{connpool.CloseIdle, func(s connpool.Stats) int64 { return s.IdleClosed }},
	{connpool.CloseLifetime, func(s connpool.Stats) int64 { return s.LifetimeClosed }},
	{connpool.CloseUnhealthy, func(s connpool.Stats) int64 { return s.HealthFailures }},
	{connpool.CloseBroken, func(s connpool.Stats) int64 { return s.BrokenClosed }},
	{connpool.CloseMaxIdle, func(s connpool.Stats) int64 { return s.MaxIdleClosed }},
	{connpool.CloseReleased, func(s connpool.Stats) int64 { return s.ReleasedClosed }},
	{connpool.ClosePool, func(s connpool.Stats) int64 { return s.PoolClosed }},
	{connpool.CloseReset, func(s connpool.Stats) int64 { return s.ResetClosed }},
	{connpool.CloseDetached, func(s connpool.Stats) int64 { return s.DetachedClosed }},
	{connpool.CloseLeaked, func(s connpool.Stats) int64 { return s.LeakedClosed }},
	{connpool.CloseResized, func(s connpool.Stats) int64 { return s.ResizedClosed }},
	{connpool.CloseAddressRemoved, func(s connpool.Stats) int64 { return s.AddressRemovedClosed }},
	{connpool.CloseRebalanced, func(s connpool.Stats) int64 { return s.RebalancedClosed }},
	{connpool.CloseEjected, func(s connpool.Stats) int64 { return s.EjectedClosed }},
}
