package connpool

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool/internal/fakeconn"
)

// TestAcceptClosesAConnOfADrainedAddress pins the hand-off a resolve
// overtakes: a conn handed to a waiter under mu, whose address a resolve
// drains before the waiter wakes, is closed by the waiter's accept and
// not returned by its Get (the waiter then takes another conn).
func TestAcceptClosesAConnOfADrainedAddress(t *testing.T) {
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	r := ResolverFunc(func(context.Context, string, string) ([]netip.Addr, error) { return []netip.Addr{a}, nil })
	p, err := New("tcp", "svc.test:1", WithResolver(r), WithDialer(fakeconn.Dial), WithResolveInterval(time.Hour))
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	c, err := p.Get(context.Background()) // stands for the conn a Put handed to the waiter
	require.NoError(t, err)
	require.Equal(t, "10.0.0.1:1", c.RemoteAddr().String())

	p.applyResolved([]netip.Addr{b}, nil) // the resolve that overtakes the waiter
	op := getOp{ctx: context.Background()}
	assert.False(t, p.accept(delivery{c: c.pc.newWrapper()}, &op), "a conn of a drained address is not accepted")
	st := p.Stats()
	assert.Equal(t, int64(1), st.AddressRemovedClosed)
	assert.Zero(t, st.OpenConns)
	require.NoError(t, p.CheckInvariants())
}
