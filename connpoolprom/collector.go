package connpoolprom

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/connpool/connpool"
)

// NewCollector returns a collector of the pools' [connpool.Stats]. Each
// Collect takes one Stats snapshot per pool and sends it as constant
// metrics, so a scrape costs the same however many conns the pools hold.
// Each pool's metrics are labelled with its name, network and address. A
// closed pool is still reported, with its final counters; a nil pool, or
// a pool given twice, is collected once. The collector is safe for
// concurrent use.
//
// Any number of collectors, of this package or others, register in one
// registry, each with its own pools. A collector describes its pools by
// their labels, so that the registry refuses what would scrape the same
// series twice: registering a pool that a collector of the registry
// already collects fails with an error naming it
// ([prometheus.AlreadyRegisteredError] when the collectors hold the same
// pools), and so does registering a collector of two pools whose names,
// networks and addresses are all the same. Give such pools distinct names
// ([connpool.WithName]).
func NewCollector(pools ...*connpool.Pool) prometheus.Collector {
	c := &poolCollector{}
	seen := make(map[*connpool.Pool]bool, len(pools))
	byLabels := make(map[[3]string]*connpool.Pool, len(pools))
	for _, p := range pools {
		if p == nil || seen[p] {
			continue
		}
		seen[p] = true
		labels := poolLabelValues(connpool.Addr{Network: p.Network(), Address: p.Address()}, p.Stats().Name)
		if byLabels[labels] != nil && c.err == nil {
			c.err = fmt.Errorf("connpoolprom: two pools named %q dial %s %s: their series would be the same; give them distinct names (connpool.WithName)",
				labels[2], labels[1], labels[0])
		}
		byLabels[labels] = p
		c.pools = append(c.pools, p)
		c.descs = append(c.descs, newPoolDescs(labels))
	}
	return c
}

// NewGroupCollector returns a collector of every pool g holds at the time
// of each Collect: one [connpool.Group.Stats] call per scrape, labelled
// as [NewCollector] labels a pool, with the network and address of the
// pool's [connpool.Addr]. Pools the group creates later appear on the
// next scrape; pools it closes for idleness disappear, and their counters
// with them. A nil g collects nothing. The collector is safe for
// concurrent use.
//
// As the group's pools come and go, the collector describes no metric to
// the registry in advance (client_golang calls it unchecked): it
// registers beside any other collector, and the registry cannot check
// its series at registration. Register one collector per group in a
// registry, and if you name two groups that dial the same address
// (connpool.WithName among each group's options), name them apart: a
// second collector of a group, or two pools of one name, network and
// address, would send the same series twice, which fails the scrape.
// Pools left with the default names are apart already: among live pools,
// a default name is unique ([connpool.WithName]).
func NewGroupCollector(g *connpool.Group) prometheus.Collector {
	return &groupCollector{g: g}
}

// poolCollector is the collector of NewCollector.
type poolCollector struct {
	// Set by NewCollector, read-only after.
	pools []*connpool.Pool
	descs []*descSet // of each pool, whose labels they carry as constant labels
	err   error      // two pools have the same labels: Describe fails the registration
}

// Describe sends the Descs of every pool's metrics, or an invalid Desc
// that fails the registration.
func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	if c.err != nil {
		ch <- prometheus.NewInvalidDesc(c.err)
		return
	}
	for _, d := range c.descs {
		for _, desc := range d {
			ch <- desc
		}
	}
}

// Collect sends the metrics of each pool, from one Stats call per pool.
func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	snaps := make([]snapshot, len(c.pools))
	order := make([]*snapshot, len(c.pools))
	for i, p := range c.pools {
		s := p.Stats()
		snaps[i] = newSnapshot(connpool.Addr{Network: p.Network(), Address: p.Address()}, &s)
		snaps[i].descs = c.descs[i]
		order[i] = &snaps[i]
	}
	sortSnapshots(order)
	collect(ch, order)
}

// groupCollector is the collector of NewGroupCollector.
type groupCollector struct {
	g *connpool.Group // nil collects nothing
}

// Describe sends nothing: the collector is unchecked (see
// NewGroupCollector).
func (c *groupCollector) Describe(chan<- *prometheus.Desc) {}

// Collect sends the metrics of each pool of the group, from one
// Group.Stats call.
func (c *groupCollector) Collect(ch chan<- prometheus.Metric) {
	if c.g == nil {
		return
	}
	stats := c.g.Stats()
	snaps := make([]snapshot, 0, len(stats))
	for a, s := range stats {
		snaps = append(snaps, newSnapshot(a, &s))
	}
	order := make([]*snapshot, len(snaps))
	for i := range snaps {
		order[i] = &snaps[i]
	}
	sortSnapshots(order)
	collect(ch, order)
}
