package connpoolotel

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// FleetMember is what [Metrics.ObserveFleet] reads of a member of a fleet
// budget, a process that shares one connection budget with others through
// Redis: the *Member of github.com/connpool/connpool/connpoolfleet has
// these methods, so this package depends neither on that module nor on
// Redis. An implementation must be safe for concurrent use.
type FleetMember interface {
	// FleetNames returns the budget's name and the member's ID.
	FleetNames() (budget, member string)
	// FleetState returns the lease state: "joining", "learning",
	// "granted", "fenced" or "left".
	FleetState() string
	// FleetShares returns the member's grant, its target share, the sum
	// of its pools' caps, the budget B and its smoothed demand.
	FleetShares() (grant, target, caps, budget int, demand float64)
	// FleetCounts returns the renews answered, the renews that failed and
	// the times the member fenced itself.
	FleetCounts() (renews, renewErrors, fences int64)
}

// The fleet's instruments and attributes, connpool's own.
const (
	fleetBudgetKey = attribute.Key("connpool.fleet.budget")
	fleetMemberKey = attribute.Key("connpool.fleet.member")
	fleetStateKey  = attribute.Key("connpool.fleet.state")
)

// fleetStates are the values of connpool.fleet.state: each member reports
// 1 for its state and 0 for the others.
var fleetStates = []string{"joining", "learning", "granted", "fenced", "left"}

// fleetInstruments are the instruments of ObserveFleet.
type fleetInstruments struct {
	grant, target, caps, state  metric.Int64ObservableUpDownCounter
	budget                      metric.Int64ObservableGauge
	demand                      metric.Float64ObservableGauge
	renews, renewErrors, fences metric.Int64ObservableCounter
}

// ObserveFleet registers a callback that reports, at each collection,
// each member's grant, target, caps, budget, demand, lease state and
// counters (a connpoolfleet.Member satisfies [FleetMember]), with the
// attributes connpool.fleet.budget (the budget's name) and
// connpool.fleet.member (the member's ID):
//
//	connpool.fleet.grant         async UpDownCounter {connection}  what the ledger lets the member use
//	connpool.fleet.target        async UpDownCounter {connection}  its share of the budget now
//	connpool.fleet.max           async UpDownCounter {connection}  the sum of the caps it set on its pools
//	connpool.fleet.budget        async Gauge         {connection}  the budget B
//	connpool.fleet.demand        async Gauge         {connection}  its smoothed demand (in use + waiting)
//	connpool.fleet.state         async UpDownCounter {member}      1 for its state, 0 for the others, by connpool.fleet.state
//	connpool.fleet.renews        async Counter       {renew}       renews answered
//	connpool.fleet.renew_errors  async Counter       {error}       renews that failed or timed out
//	connpool.fleet.fences        async Counter       {fence}       times it fenced itself to its safe share
//
// The grants of a budget's members add up to at most B. Unregister the
// registration when the members have left; observe each member once. A
// nil member is skipped.
func (m *Metrics) ObserveFleet(members ...FleetMember) (metric.Registration, error) {
	members = slices.DeleteFunc(slices.Clone(members), func(f FleetMember) bool { return f == nil })
	if len(members) == 0 {
		return nil, errors.New("connpoolotel: ObserveFleet of no member")
	}
	in, err := m.fleetInstruments()
	if err != nil {
		return nil, err
	}
	type sets struct {
		member attribute.Set
		states []attribute.Set
	}
	all := make([]sets, len(members))
	for i, f := range members {
		budget, id := f.FleetNames()
		all[i].member = attribute.NewSet(fleetBudgetKey.String(budget), fleetMemberKey.String(id))
		for _, s := range fleetStates {
			all[i].states = append(all[i].states,
				attribute.NewSet(fleetBudgetKey.String(budget), fleetMemberKey.String(id), fleetStateKey.String(s)))
		}
	}
	reg, err := m.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for i, f := range members {
			set := metric.WithAttributeSet(all[i].member)
			grant, target, caps, budget, demand := f.FleetShares()
			o.ObserveInt64(in.grant, int64(grant), set)
			o.ObserveInt64(in.target, int64(target), set)
			o.ObserveInt64(in.caps, int64(caps), set)
			o.ObserveInt64(in.budget, int64(budget), set)
			o.ObserveFloat64(in.demand, demand, set)
			state := f.FleetState()
			for j, s := range fleetStates {
				var v int64
				if s == state {
					v = 1
				}
				o.ObserveInt64(in.state, v, metric.WithAttributeSet(all[i].states[j]))
			}
			if state != "" && !slices.Contains(fleetStates, state) { // a state newer than this package
				budget, id := f.FleetNames()
				o.ObserveInt64(in.state, 1, metric.WithAttributes(fleetBudgetKey.String(budget), fleetMemberKey.String(id), fleetStateKey.String(state)))
			}
			renews, renewErrors, fences := f.FleetCounts()
			o.ObserveInt64(in.renews, renews, set)
			o.ObserveInt64(in.renewErrors, renewErrors, set)
			o.ObserveInt64(in.fences, fences, set)
		}
		return nil
	}, in.grant, in.target, in.caps, in.state, in.budget, in.demand, in.renews, in.renewErrors, in.fences)
	if err != nil {
		return nil, fmt.Errorf("connpoolotel: %w", err)
	}
	return reg, nil
}

// fleetInstruments makes the fleet's instruments from m's meter: the meter
// gives back the same instrument for the same name and settings, so each
// ObserveFleet may ask again.
func (m *Metrics) fleetInstruments() (*fleetInstruments, error) {
	var errs []error
	keep := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	upDown := func(name, unit, desc string) metric.Int64ObservableUpDownCounter {
		c, err := m.meter.Int64ObservableUpDownCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		keep(err)
		return c
	}
	counter := func(name, unit, desc string) metric.Int64ObservableCounter {
		c, err := m.meter.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		keep(err)
		return c
	}
	in := &fleetInstruments{
		grant:       upDown("connpool.fleet.grant", "{connection}", "The conns the fleet ledger lets the member use."),
		target:      upDown("connpool.fleet.target", "{connection}", "The member's share of the budget now; the grant follows it once the conns are back."),
		caps:        upDown("connpool.fleet.max", "{connection}", "The sum of the caps the member set on its pools."),
		state:       upDown("connpool.fleet.state", "{member}", "1 for the member's lease state (joining, learning, granted, fenced, left), 0 for the others."),
		renews:      counter("connpool.fleet.renews", "{renew}", "The renews of the member's lease that the ledger answered."),
		renewErrors: counter("connpool.fleet.renew_errors", "{error}", "The renews of the member's lease that failed or timed out."),
		fences:      counter("connpool.fleet.fences", "{fence}", "The times the member fenced itself to its safe share, unable to renew in time."),
	}
	var err error
	in.budget, err = m.meter.Int64ObservableGauge("connpool.fleet.budget", metric.WithUnit("{connection}"),
		metric.WithDescription("The budget B the members of the budget share."))
	keep(err)
	in.demand, err = m.meter.Float64ObservableGauge("connpool.fleet.demand", metric.WithUnit("{connection}"),
		metric.WithDescription("The member's smoothed demand: conns in use plus Gets waiting."))
	keep(err)
	if len(errs) > 0 {
		return nil, fmt.Errorf("connpoolotel: %w", errors.Join(errs...))
	}
	return in, nil
}
