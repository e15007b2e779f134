package connpoolfleet_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/connpoolfleet"
)

// fleetMember is the method set of connpoolprom.FleetMember and
// connpoolotel.FleetMember, which this module cannot import (they would
// bring Prometheus and OpenTelemetry into its go.mod): a Member must
// satisfy it for connpoolprom.NewFleetCollector(m) and
// Metrics.ObserveFleet(m) to compile. Change the three together.
type fleetMember interface {
	FleetNames() (budget, member string)
	FleetState() string
	FleetShares() (grant, target, caps, budget int, demand float64)
	FleetCounts() (renews, renewErrors, fences int64)
}

var _ fleetMember = (*connpoolfleet.Member)(nil)

// TestExporterMethods checks that what the exporters read of a real
// member, joined to a budget on a Redis of the test's own, is its Stats:
// granted, then left.
func TestExporterMethods(t *testing.T) {
	r := startRedis(t)
	srv := startCountServer(t)
	rdb := r.client(t)
	gate := connpoolfleet.NewGate()
	pool, err := connpool.New("tcp", srv.addr(), connpool.WithDialer(gate.Dialer(helloDial("x"))))
	require.NoError(t, err)
	t.Cleanup(func() { _ = pool.Close() })
	m, err := connpoolfleet.Join(context.Background(), rdb, "exported", 20,
		[]connpoolfleet.Target{connpoolfleet.PoolTarget(pool)}, connpoolfleet.WithTTL(testTTL),
		connpoolfleet.WithGate(gate), connpoolfleet.WithID("web-1"))
	require.NoError(t, err)
	eventually(t, func() bool { return m.Stats().State == connpoolfleet.StateGranted }, "the member is granted")

	var fm fleetMember = m
	check := func(state string) {
		t.Helper()
		s := m.Stats()
		budget, id := fm.FleetNames()
		assert.Equal(t, [2]string{"exported", "web-1"}, [2]string{budget, id})
		assert.Equal(t, state, fm.FleetState())
		grant, target, caps, size, demand := fm.FleetShares()
		assert.Equal(t, []any{s.Grant, s.Target, s.Caps, s.BudgetSize, s.Demand}, []any{grant, target, caps, size, demand})
		assert.Equal(t, 20, size)
		renews, renewErrors, fences := fm.FleetCounts()
		assert.Equal(t, []int64{s.Renews, s.RenewErrors, s.Fences}, []int64{renews, renewErrors, fences})
		assert.Positive(t, renews)
	}
	check("granted")
	require.NoError(t, m.Leave(context.Background()))
	check("left")
}
