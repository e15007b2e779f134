package connpoolfleet_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool/connpoolfleet"
)

// TestJoinValidates: Join rejects bad options and arguments before it
// touches Redis or the targets, with an error that wraps ErrInvalidOption
// and names the option.
func TestJoinValidates(t *testing.T) {
	one := []connpoolfleet.Target{connpoolfleet.FakeTarget(func(int) (int, int, int) { return 0, 0, 0 })}
	two := append(one, connpoolfleet.FakeTarget(func(int) (int, int, int) { return 0, 0, 0 }))
	for _, tc := range []struct {
		name    string
		budget  int
		targets []connpoolfleet.Target
		opts    []connpoolfleet.Option
		want    string
	}{
		{"no budget", 0, one, nil, "Join budget 0"},
		{"no targets", 10, nil, nil, "at least one target"},
		{"short ttl", 10, one, []connpoolfleet.Option{connpoolfleet.WithTTL(time.Millisecond)}, "WithTTL(1ms)"},
		{"floor below targets", 10, two, []connpoolfleet.Option{connpoolfleet.WithFloor(1)}, "WithFloor(1) is below the 2 targets"},
		{"safe above floor", 10, one, []connpoolfleet.Option{connpoolfleet.WithSafeShare(3)}, "WithSafeShare(3) is above the floor 1"},
		{"margin too long", 10, one, []connpoolfleet.Option{connpoolfleet.WithTTL(3 * time.Second), connpoolfleet.WithFenceMargin(time.Second)}, "WithFenceMargin(1s)"},
		{"smoothing zero", 10, one, []connpoolfleet.Option{connpoolfleet.WithSmoothing(0)}, "WithSmoothing(0)"},
		{"negative damping", 10, one, []connpoolfleet.Option{connpoolfleet.WithDamping(-1)}, "WithDamping(-1)"},
		{"empty id", 10, one, []connpoolfleet.Option{connpoolfleet.WithID("")}, "WithID"},
		// Regressions: a nil target panicked in Join; a floor above B and a
		// target given twice were accepted.
		{"nil target", 10, []connpoolfleet.Target{nil}, nil, "Join target 0 is nil"},
		{"nil pool", 10, []connpoolfleet.Target{connpoolfleet.PoolTarget(nil)}, nil, "Join target 0 is nil"},
		{"nil group", 10, []connpoolfleet.Target{connpoolfleet.GroupTarget(nil)}, nil, "Join target 0 is nil"},
		{"target twice", 10, []connpoolfleet.Target{one[0], one[0]}, nil, "Join target 1 steers the pool or group of target 0 again"},
		{"floor above budget", 2, one, []connpoolfleet.Option{connpoolfleet.WithFloor(5)}, "WithFloor(5) is above the budget 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := connpoolfleet.Join(context.Background(), nil, "budget", tc.budget, tc.targets, tc.opts...)
			require.Error(t, err)
			assert.Nil(t, m)
			assert.ErrorIs(t, err, connpoolfleet.ErrInvalidOption)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}
