package connpool

import (
	"fmt"
	"sync"
)

// Default pool names are unique in the process: the exporters label
// every series with the name, and two pools of one name, two components'
// pools of one address or a pool and a Group's pool of it, would report
// the same series twice (a Prometheus scrape then fails whole) or as one
// (OpenTelemetry sums them). A pool that takes the default name, "network
// address", gets it with " #2" after it, or " #3"..., while another pool
// has it. A pool keeps its name after Close, as a collector may still
// report it (connpoolprom reports a closed pool's final counters); only a
// Group's pool gives its name back when the group closes it, as the
// group's collector stops reporting it then, so that a pool the group
// opens again for the address keeps the name. A name given with WithName
// is the user's, kept as given.

// liveNames holds the default names taken.
var liveNames = struct {
	sync.Mutex
	taken map[string]struct{}
}{taken: make(map[string]struct{})}

// claimName returns name, or the first of "name #2", "name #3"... that no
// live pool has, and holds it until releaseName.
func claimName(name string) string {
	liveNames.Lock()
	defer liveNames.Unlock()
	unique := name
	for n := 2; ; n++ {
		if _, taken := liveNames.taken[unique]; !taken {
			break
		}
		unique = fmt.Sprintf("%s #%d", name, n)
	}
	liveNames.taken[unique] = struct{}{}
	return unique
}

// releaseName gives back a name claimName returned.
func releaseName(name string) {
	liveNames.Lock()
	delete(liveNames.taken, name)
	liveNames.Unlock()
}
