package connpoolotel_test

import (
	"context"
	"fmt"
	"log"
	"strings"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/connpool/connpool/connpoolotel"
)

// ExampleMetrics_ObserveFleet reports a fleet member: in a program, member
// is the *connpoolfleet.Member that Join returned, which satisfies
// FleetMember; here a stand-in with fixed figures.
func ExampleMetrics_ObserveFleet() {
	member := &fakeMember{budget: "orders-db", id: "web-1", state: "granted", grant: 12, target: 12, caps: 12, size: 100, demand: 9}
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	m, err := connpoolotel.New(mp)
	if err != nil {
		log.Fatal(err)
	}
	reg, err := m.ObserveFleet(member)
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Unregister()

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		log.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, metric := range sm.Metrics {
			sum, ok := metric.Data.(metricdata.Sum[int64])
			if !ok || !strings.HasPrefix(metric.Name, "connpool.fleet.") {
				continue
			}
			for _, dp := range sum.DataPoints {
				if metric.Name == "connpool.fleet.grant" || (metric.Name == "connpool.fleet.state" && dp.Value == 1) {
					fmt.Println(metric.Name, labels(dp.Attributes), dp.Value)
				}
			}
		}
	}
	// Output:
	// connpool.fleet.grant { connpool.fleet.budget=orders-db connpool.fleet.member=web-1} 12
	// connpool.fleet.state { connpool.fleet.budget=orders-db connpool.fleet.member=web-1 connpool.fleet.state=granted} 1
}
