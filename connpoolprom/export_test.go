package connpoolprom

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/connpool/connpool"
)

// Collect sends the metrics of one pool at a whose Stats are s, for tests
// that feed the collector made-up Stats.
func Collect(ch chan<- prometheus.Metric, a connpool.Addr, s *connpool.Stats) {
	sn := newSnapshot(a, s)
	collect(ch, []*snapshot{&sn})
}
