package connpoolprom

import (
	"fmt"
	"reflect"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// FleetMember is what [NewFleetCollector] reads of a member of a fleet
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

// fleetStates are the values of the state label of
// connpool_fleet_state: each member reports 1 for its state and 0 for
// the others.
var fleetStates = []string{"joining", "learning", "granted", "fenced", "left"}

// NewFleetCollector returns a collector of fleet members (a
// connpoolfleet.Member satisfies [FleetMember]): at each scrape, each
// member's grant, target, caps, budget, demand, lease state and counters,
// labelled with the budget's name and the member's ID:
//
//	connpool_fleet_grant_connections   gauge: what the ledger lets the member use
//	connpool_fleet_target_connections  gauge: its share of the budget now
//	connpool_fleet_max_connections     gauge: the sum of the caps it set on its pools
//	connpool_fleet_budget_connections  gauge: the budget B
//	connpool_fleet_demand_connections  gauge: its smoothed demand (in use + waiting)
//	connpool_fleet_state{state}        gauge: 1 for its lease state, 0 for the others
//	connpool_fleet_renews_total        counter: renews answered
//	connpool_fleet_renew_errors_total  counter: renews that failed or timed out
//	connpool_fleet_fences_total        counter: times it fenced itself to its safe share
//
// The grants of a budget's members add up to at most B:
// sum by (budget) (connpool_fleet_grant_connections) is the budget in use.
// A nil member, or a member given twice, is collected once. The
// collector registers beside the pools' collectors in one registry; like
// theirs, it describes its members by their labels, so the registry
// refuses a member that a collector of it already collects, and the
// collector fails registration if two of its members have the same
// budget and ID. It is safe for concurrent use.
func NewFleetCollector(members ...FleetMember) prometheus.Collector {
	c := &fleetCollector{}
	seen := make(map[[2]string]FleetMember, len(members))
	for _, m := range members {
		if m == nil {
			continue
		}
		budget, id := m.FleetNames()
		key := [2]string{budget, id}
		if prev, ok := seen[key]; ok {
			if !same(prev, m) && c.err == nil {
				c.err = fmt.Errorf("connpoolprom: two fleet members of budget %q have the ID %q: their series would be the same; give them distinct IDs (connpoolfleet.WithID)", budget, id)
			}
			continue
		}
		seen[key] = m
		c.members = append(c.members, m)
		c.descs = append(c.descs, newFleetDescs(budget, id))
	}
	return c
}

// same reports whether a and b are the same member: equal values of a
// comparable type.
func same(a, b FleetMember) bool {
	ta := reflect.TypeOf(a)
	return ta == reflect.TypeOf(b) && ta.Comparable() && a == b
}

// fleetDescs are the Descs of one member's metrics, with its budget and ID
// as constant labels.
type fleetDescs struct {
	grant, target, caps, budget, demand, state *prometheus.Desc
	renews, renewErrors, fences                *prometheus.Desc
}

func newFleetDescs(budget, id string) *fleetDescs {
	labels := prometheus.Labels{"budget": budget, "member": id}
	d := func(name, help string, variable ...string) *prometheus.Desc {
		return prometheus.NewDesc("connpool_fleet_"+name, help, variable, labels)
	}
	return &fleetDescs{
		grant:       d("grant_connections", "The conns the fleet ledger lets the member use."),
		target:      d("target_connections", "The member's share of the budget now; the grant follows it once the conns are back."),
		caps:        d("max_connections", "The sum of the caps the member set on its pools."),
		budget:      d("budget_connections", "The budget B the members of the budget share."),
		demand:      d("demand_connections", "The member's smoothed demand: conns in use plus Gets waiting."),
		state:       d("state", "1 for the member's lease state (joining, learning, granted, fenced, left), 0 for the others.", "state"),
		renews:      d("renews_total", "The renews of the member's lease that the ledger answered."),
		renewErrors: d("renew_errors_total", "The renews of the member's lease that failed or timed out."),
		fences:      d("fences_total", "The times the member fenced itself to its safe share, unable to renew in time."),
	}
}

func (d *fleetDescs) all() []*prometheus.Desc {
	return []*prometheus.Desc{d.grant, d.target, d.caps, d.budget, d.demand, d.state, d.renews, d.renewErrors, d.fences}
}

// fleetCollector is the collector of NewFleetCollector.
type fleetCollector struct {
	// Set by NewFleetCollector, read-only after.
	members []FleetMember
	descs   []*fleetDescs
	err     error // two members have the same labels: Describe fails the registration
}

// Describe sends the Descs of every member's metrics, or an invalid Desc
// that fails the registration.
func (c *fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	if c.err != nil {
		ch <- prometheus.NewInvalidDesc(c.err)
		return
	}
	for _, d := range c.descs {
		for _, desc := range d.all() {
			ch <- desc
		}
	}
}

// Collect sends each member's metrics.
func (c *fleetCollector) Collect(ch chan<- prometheus.Metric) {
	for i, m := range c.members {
		d := c.descs[i]
		grant, target, caps, budget, demand := m.FleetShares()
		gauge := func(desc *prometheus.Desc, v float64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, labels...)
		}
		gauge(d.grant, float64(grant))
		gauge(d.target, float64(target))
		gauge(d.caps, float64(caps))
		gauge(d.budget, float64(budget))
		gauge(d.demand, demand)
		state := m.FleetState()
		for _, s := range fleetStates {
			gauge(d.state, b2f(s == state), s)
		}
		if state != "" && !slices.Contains(fleetStates, state) {
			gauge(d.state, 1, state) // a state newer than this package
		}
		renews, renewErrors, fences := m.FleetCounts()
		for _, kv := range []struct {
			desc *prometheus.Desc
			v    int64
		}{{d.renews, renews}, {d.renewErrors, renewErrors}, {d.fences, fences}} {
			ch <- prometheus.MustNewConstMetric(kv.desc, prometheus.CounterValue, float64(kv.v))
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
