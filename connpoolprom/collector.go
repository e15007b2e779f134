package connpoolprom

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/connpool/connpool"
)

// NewCollector returns a collector of the pools' [connpool.Stats]. Each
// Collect takes one Stats snapshot per pool and sends it as constant
// metrics, so a scrape costs the same however many conns the pools hold.
// Each pool's metrics are labelled with its name, network and address;
// pools that share all three make the registry's Gather fail, so give them
// distinct names ([connpool.WithName]). A closed pool is still reported,
// with its final counters; a nil pool is skipped. The collector is safe
// for concurrent use.
func NewCollector(pools ...*connpool.Pool) prometheus.Collector {
	c := &poolCollector{}
	for _, p := range pools {
		if p != nil {
			c.pools = append(c.pools, p)
		}
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
func NewGroupCollector(g *connpool.Group) prometheus.Collector {
	return &groupCollector{g: g}
}

// poolCollector is the collector of NewCollector.
type poolCollector struct {
	pools []*connpool.Pool // set by NewCollector, read-only after
}

// Describe sends the Desc of every metric.
func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) { describe(ch) }

// Collect sends the metrics of each pool, from one Stats call per pool.
func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	snaps := make([]snapshot, len(c.pools))
	order := make([]*snapshot, len(c.pools))
	for i, p := range c.pools {
		s := p.Stats()
		snaps[i] = newSnapshot(connpool.Addr{Network: p.Network(), Address: p.Address()}, &s)
		order[i] = &snaps[i]
	}
	sortSnapshots(order)
	collect(ch, order)
}

// groupCollector is the collector of NewGroupCollector.
type groupCollector struct {
	g *connpool.Group // nil collects nothing
}

// Describe sends the Desc of every metric.
func (c *groupCollector) Describe(ch chan<- *prometheus.Desc) { describe(ch) }

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

// describe sends every Desc of the package to ch.
func describe(ch chan<- *prometheus.Desc) {
	for _, d := range descs {
		ch <- d
	}
}
