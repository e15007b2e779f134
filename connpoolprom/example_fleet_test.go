package connpoolprom_test

import (
	"fmt"
	"log"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/connpool/connpool/connpoolprom"
)

// ExampleNewFleetCollector registers a fleet member beside its pool's
// collector: in a program, member is the *connpoolfleet.Member that Join
// returned, which satisfies FleetMember; here a stand-in with fixed
// figures. It prints the member's grant and lease state.
func ExampleNewFleetCollector() {
	member := &fakeMember{budget: "orders-db", id: "web-1", state: "granted", grant: 12, target: 12, caps: 12, size: 100, demand: 9}

	reg := prometheus.NewRegistry()
	reg.MustRegister(connpoolprom.NewFleetCollector(member))

	mfs, err := reg.Gather()
	if err != nil {
		log.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			if !strings.HasSuffix(name, "grant_connections") && !(name == "connpool_fleet_state" && value(m) == 1) {
				continue
			}
			fmt.Println(name, labels(m), value(m))
		}
	}
	// Output:
	// connpool_fleet_grant_connections budget="orders-db",member="web-1" 12
	// connpool_fleet_state budget="orders-db",member="web-1",state="granted" 1
}
