package connpool_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
)

func TestNewRejectsInvalidOptions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		network string
		address string
		opts    []connpool.Option
		want    string
	}{
		{"zero max conns", "tcp", "x:1", []connpool.Option{connpool.WithMaxConns(0)}, "WithMaxConns(0)"},
		{"negative max conns", "tcp", "x:1", []connpool.Option{connpool.WithMaxConns(-3)}, "WithMaxConns(-3)"},
		{"min idle above max conns", "tcp", "x:1", []connpool.Option{connpool.WithMaxConns(4), connpool.WithMinIdle(5)}, "WithMinIdle(5) exceeds WithMaxConns(4)"},
		{"max idle above max conns", "tcp", "x:1", []connpool.Option{connpool.WithMaxConns(4), connpool.WithMaxIdle(5)}, "WithMaxIdle(5) exceeds WithMaxConns(4)"},
		{"min idle above max idle", "tcp", "x:1", []connpool.Option{connpool.WithMaxIdle(2), connpool.WithMinIdle(3)}, "WithMinIdle(3) exceeds WithMaxIdle(2)"},
		{"negative min idle", "tcp", "x:1", []connpool.Option{connpool.WithMinIdle(-1)}, "WithMinIdle(-1)"},
		{"negative max idle", "tcp", "x:1", []connpool.Option{connpool.WithMaxIdle(-1)}, "WithMaxIdle(-1)"},
		{"zero max connecting", "tcp", "x:1", []connpool.Option{connpool.WithMaxConnecting(0)}, "WithMaxConnecting(0)"},
		{"negative idle timeout", "tcp", "x:1", []connpool.Option{connpool.WithIdleTimeout(-time.Second)}, "WithIdleTimeout(-1s)"},
		{"negative lifetime", "tcp", "x:1", []connpool.Option{connpool.WithMaxLifetime(-time.Second)}, "WithMaxLifetime(-1s)"},
		{"jitter above lifetime", "tcp", "x:1", []connpool.Option{connpool.WithMaxLifetime(time.Second), connpool.WithMaxLifetimeJitter(2 * time.Second)}, "WithMaxLifetimeJitter(2s)"},
		{"negative dial timeout", "tcp", "x:1", []connpool.Option{connpool.WithDialTimeout(-time.Second)}, "WithDialTimeout(-1s)"},
		{"negative check interval", "tcp", "x:1", []connpool.Option{connpool.WithHealthCheckInterval(-time.Second)}, "WithHealthCheckInterval(-1s)"},
		{"check timeout above interval", "tcp", "x:1", []connpool.Option{connpool.WithHealthCheckInterval(time.Second), connpool.WithHealthCheckTimeout(2 * time.Second)}, "WithHealthCheckTimeout(2s)"},
		{"zero check timeout", "tcp", "x:1", []connpool.Option{connpool.WithHealthCheckTimeout(0)}, "WithHealthCheckTimeout(0s)"},
		{"bad backoff", "tcp", "x:1", []connpool.Option{connpool.WithDialBackoff(time.Second, time.Millisecond)}, "WithDialBackoff(1s, 1ms)"},
		{"zero backoff", "tcp", "x:1", []connpool.Option{connpool.WithDialBackoff(0, time.Second)}, "WithDialBackoff(0s, 1s)"},
		{"nil dialer", "tcp", "x:1", []connpool.Option{connpool.WithDialer(nil)}, "WithDialer(nil)"},
		{"nil checker", "tcp", "x:1", []connpool.Option{connpool.WithHealthCheck(nil)}, "WithHealthCheck(nil)"},
		{"empty pong", "tcp", "x:1", []connpool.Option{connpool.WithHealthCheck(connpool.PingPong([]byte("PING"), nil))}, "pong must not be empty"},
		{"nil logger", "tcp", "x:1", []connpool.Option{connpool.WithLogger(nil)}, "WithLogger(nil)"},
		{"nil option", "tcp", "x:1", []connpool.Option{nil}, "option 0 is nil"},
		{"negative max waiters", "tcp", "x:1", []connpool.Option{connpool.WithMaxWaiters(-1)}, "WithMaxWaiters(-1)"},
		{"empty name", "tcp", "x:1", []connpool.Option{connpool.WithName("")}, `WithName("")`},
		{"zero resolve interval", "tcp", "x:1", []connpool.Option{connpool.WithResolveInterval(0)}, "WithResolveInterval(0s)"},
		{"negative resolve interval", "tcp", "x:1", []connpool.Option{connpool.WithResolveInterval(-time.Second)}, "WithResolveInterval(-1s)"},
		{"negative rebalance rate", "tcp", "x:1", []connpool.Option{connpool.WithRebalanceRate(-1)}, "WithRebalanceRate(-1)"},
		{"empty address", "tcp", "", nil, "empty address"},
		{"empty network", "", "x:1", nil, "empty network"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := connpool.New(tc.network, tc.address, tc.opts...)
			assert.Nil(t, p)
			require.Error(t, err)
			assert.ErrorIs(t, err, connpool.ErrInvalidOption)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestNewReportsEveryBadOption(t *testing.T) {
	_, err := connpool.New("tcp", "x:1", connpool.WithMaxConns(0), connpool.WithDialer(nil))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "WithMaxConns(0)")
	assert.Contains(t, err.Error(), "WithDialer(nil)")
}

func TestDefaults(t *testing.T) {
	p := newPool(t, "127.0.0.1:1")
	st := p.Stats()
	assert.GreaterOrEqual(t, st.MaxConns, 4)
	assert.Zero(t, st.OpenConns, "New does not dial")
	assert.Zero(t, st.Dials)
	assert.Less(t, connpool.DefaultIdleTimeout, 350*time.Second, "well under cloud LB idle drops")
}

func TestNewDoesNotDial(t *testing.T) {
	dialed := make(chan struct{}, 1)
	p := newPool(t, "127.0.0.1:1", connpool.WithMinIdle(1), connpool.WithDialer(
		func(ctx context.Context, network, address string) (net.Conn, error) {
			dialed <- struct{}{}
			return nil, errors.New("no")
		}))
	// New returned before any dial; warming dials from the background.
	assert.Zero(t, p.Stats().Dials)
	<-dialed
}
