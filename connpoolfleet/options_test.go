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
