package connpool_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"syscall"
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

// TestBadOptionErrorNamesOnlyIt: one bad option gives one error, naming
// that option, not also those whose defaults derive from it. Regression:
// WithMaxConns(-1) also reported WithMaxIdle(-1), WithMaxIdle(-1)
// reported WithMinIdle(0) first, and WithMaxLifetime(-1s) reported
// WithMaxLifetimeJitter twice: options the user never set.
func TestBadOptionErrorNamesOnlyIt(t *testing.T) {
	for _, tc := range []struct {
		opt  connpool.Option
		want string
	}{
		{connpool.WithMaxConns(-1), "WithMaxConns(-1)"},
		{connpool.WithMaxConns(0), "WithMaxConns(0)"},
		{connpool.WithMaxIdle(-1), "WithMaxIdle(-1)"},
		{connpool.WithMinIdle(-1), "WithMinIdle(-1)"},
		{connpool.WithMaxLifetime(-time.Second), "WithMaxLifetime(-1s)"},
		{connpool.WithHealthCheckInterval(-time.Second), "WithHealthCheckInterval(-1s)"},
		{connpool.WithIdleTimeout(-time.Second), "WithIdleTimeout(-1s)"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			_, err := connpool.New("tcp", "x:1", tc.opt)
			require.ErrorIs(t, err, connpool.ErrInvalidOption)
			assert.Equal(t, 1, strings.Count(err.Error(), "connpool: invalid option"), "one error: %v", err)
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
	var set connpool.PoolSettings
	p := newPool(t, "127.0.0.1:1", connpool.WithHooks(connpool.Hooks{
		PoolReady: func(ev connpool.PoolEvent) { set = ev.Settings },
	}))
	st := p.Stats()
	assert.GreaterOrEqual(t, st.MaxConns, 4)
	assert.Zero(t, st.OpenConns, "New does not dial")
	assert.Zero(t, st.Dials)
	assert.Equal(t, 90*time.Second, set.IdleTimeout)
	assert.Less(t, set.IdleTimeout, 350*time.Second, "well under cloud LB idle drops")
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

// TestNewNamesTheDefaultMaxConns pins issue 22: a MinIdle or MaxIdle above
// a MaxConns the user never set said "exceeds WithMaxConns(8)", naming an
// option that was not given. The error names the default, where it comes
// from, and the option to add.
func TestNewNamesTheDefaultMaxConns(t *testing.T) {
	def := max(4, 4*runtime.GOMAXPROCS(0))
	for _, opt := range []struct {
		name string
		o    connpool.Option
	}{
		{fmt.Sprintf("WithMinIdle(%d)", def+1), connpool.WithMinIdle(def + 1)},
		{fmt.Sprintf("WithMaxIdle(%d)", def+1), connpool.WithMaxIdle(def + 1)},
	} {
		_, err := connpool.New("tcp", "x:1", opt.o)
		require.ErrorIs(t, err, connpool.ErrInvalidOption)
		assert.ErrorContains(t, err, fmt.Sprintf("%s exceeds the default MaxConns %d (4 × GOMAXPROCS", opt.name, def))
		assert.ErrorContains(t, err, fmt.Sprintf("add WithMaxConns(%d) or more", def+1))
		assert.NotContains(t, err.Error(), fmt.Sprintf("WithMaxConns(%d)", def), "MaxConns was not set")
	}
	_, err := connpool.New("tcp", "x:1", connpool.WithMaxConns(4), connpool.WithMinIdle(5))
	assert.ErrorContains(t, err, "WithMinIdle(5) exceeds WithMaxConns(4)", "a MaxConns that was set is named as given")
}

// TestNewValidatesTheAddress pins issue 22: New("tcp", "localhost") was
// accepted, and the first Get failed with "missing port". New checks the
// address against its network, and the error says what one looks like.
func TestNewValidatesTheAddress(t *testing.T) {
	dial := connpool.WithDialer(func(context.Context, string, string) (net.Conn, error) { return nil, errors.New("no") })
	for _, tc := range []struct {
		network, address string
		opts             []connpool.Option
		want             string // "" for a valid address
	}{
		{"tcp", "localhost", nil, `New("tcp", "localhost"): missing port in address: a tcp address is host:port, such as "localhost:6379"`},
		{"tcp4", "db.internal:", nil, "missing port"},
		{"tcp6", "::1", nil, "too many colons"},
		{"udp", "localhost", nil, "a udp address is host:port"},
		{"tcp", "localhost", []connpool.Option{dial}, "missing port"}, // a tcp dialer needs a port too
		{"smtp", "mail:25", nil, `New("smtp", "mail:25"): unknown network: the default dialer knows tcp`},
		{"tcp", "localhost:6379", nil, ""},
		{"tcp", "[::1]:6379", nil, ""},
		{"tcp", ":6379", nil, ""},
		{"tcp", "localhost:redis", nil, ""},
		{"tcp", "localhost:99999", nil, `New("tcp", "localhost:99999"): port 99999 is out of range`},
		{"tcp", "localhost:65535", nil, ""},
		{"unix", "/run/app.sock", nil, ""},
		{"unix", "@abstract", nil, ""},
		{"ip4:icmp", "127.0.0.1", nil, ""},
		{"smtp", "mail:25", []connpool.Option{dial}, ""}, // the dialer knows it
	} {
		t.Run(tc.network+" "+tc.address, func(t *testing.T) {
			p, err := connpool.New(tc.network, tc.address, tc.opts...)
			if tc.want == "" {
				require.NoError(t, err)
				require.NoError(t, p.Close())
				return
			}
			assert.Nil(t, p)
			require.ErrorIs(t, err, connpool.ErrInvalidOption)
			assert.ErrorContains(t, err, tc.want)
		})
	}
}

// TestDialErrorsReadOnce pins issue 22: a refused dial read "connpool:
// dial tcp 127.0.0.1:1: dial tcp 127.0.0.1:1: connect: ...", and the Get
// that failed fast after it "after 1 failed dials", without saying what
// happens next. The address appears once, the net error stays reachable,
// and the backoff error counts in good English and says when the pool
// dials again.
func TestDialErrorsReadOnce(t *testing.T) {
	srv := startServer(t)
	addr := srv.Addr()
	require.NoError(t, srv.Close())
	p := newPool(t, addr, connpool.WithDialBackoff(time.Hour, time.Hour))

	_, err := p.Get(context.Background())
	require.Error(t, err)
	assert.Equal(t, 1, strings.Count(err.Error(), addr), "the address once: %v", err)
	assert.ErrorContains(t, err, "connpool: dial tcp "+addr+": connect: ")
	var op *net.OpError
	assert.ErrorAs(t, err, &op, "the dialer's error is still wrapped")
	assert.ErrorIs(t, err, syscall.ECONNREFUSED)

	_, err = p.Get(context.Background())
	require.Error(t, err)
	assert.ErrorContains(t, err, "connpool: tcp "+addr+" unreachable after 1 failed dial; retrying in ")
	assert.ErrorContains(t, err, "until then a Get that needs a new conn fails at once (WithDialBackoff")
	assert.ErrorIs(t, err, syscall.ECONNREFUSED, "the backoff error wraps the last dial error")
}

// TestWithDialerAloneLogsThatItDoesNotSpread pins issue 22: WithDialer
// without WithResolver silently turned off spreading over a name's
// addresses. New says so, once, in the pool's log, for a host name only.
func TestWithDialerAloneLogsThatItDoesNotSpread(t *testing.T) {
	dial := connpool.WithDialer(func(context.Context, string, string) (net.Conn, error) { return nil, errors.New("no") })
	const line = "connpool: WithDialer without WithResolver"
	for _, tc := range []struct {
		name    string
		address string
		opts    []connpool.Option
		want    int
	}{
		{"dialer and a name", "db.example:5432", []connpool.Option{dial}, 1},
		{"dialer and WithResolver(nil)", "db.example:5432", []connpool.Option{dial, connpool.WithResolver(nil)}, 0},
		{"dialer and a resolver", "db.example:5432", []connpool.Option{dial, connpool.WithResolver(net.DefaultResolver)}, 0},
		{"dialer and an IP", "10.0.0.7:5432", []connpool.Option{dial}, 0},
		{"no dialer", "db.example:5432", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := &logRecorder{}
			p := newPool(t, tc.address, append(tc.opts, connpool.WithLogger(slog.New(logs)))...)
			require.NoError(t, p.Close())
			assert.Equal(t, tc.want, logs.count(slog.LevelInfo, line))
		})
	}
}

// TestNilContextIsAnError: a Get or DialContext given a nil context
// returns an error that says what to pass, rather than panicking on it.
func TestNilContextIsAnError(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr())
	//lint:ignore SA1012 the nil context is the point
	_, err := p.Get(nil)
	require.ErrorContains(t, err, "nil context: pass context.Background()")
	//lint:ignore SA1012 the nil context is the point
	_, err = p.DialContext(nil, "tcp", srv.Addr())
	require.ErrorContains(t, err, "nil context")
	assert.Zero(t, p.Stats().OpenConns)
}

// TestDefaultNamesAreUnique: a second pool of one address takes the
// default name with " #2" after it, a Group's pool of that address " #3";
// a closed pool keeps its name, as a collector may still report it, but a
// Group's pool gives its name back, for the group's next pool of the
// address; names given with WithName are kept as given.
func TestDefaultNamesAreUnique(t *testing.T) {
	srv := startServer(t)
	name := "tcp " + srv.Addr()
	a := newPool(t, srv.Addr())
	b := newPool(t, srv.Addr())
	assert.Equal(t, name, a.Stats().Name)
	assert.Equal(t, name+" #2", b.Stats().Name)
	g, err := connpool.NewGroup()
	require.NoError(t, err)
	t.Cleanup(func() { _ = g.Close() })
	c, err := g.Get(context.Background(), "tcp", srv.Addr())
	require.NoError(t, err)
	require.NoError(t, c.Close())
	for _, s := range g.Stats() {
		assert.Equal(t, name+" #3", s.Name)
	}

	require.NoError(t, a.Close())
	again := newPool(t, srv.Addr())
	assert.Equal(t, name+" #4", again.Stats().Name, "a closed pool keeps its name")
	require.NoError(t, g.Close())
	g2, err := connpool.NewGroup()
	require.NoError(t, err)
	t.Cleanup(func() { _ = g2.Close() })
	c, err = g2.Get(context.Background(), "tcp", srv.Addr())
	require.NoError(t, err)
	require.NoError(t, c.Close())
	for _, s := range g2.Stats() {
		assert.Equal(t, name+" #3", s.Name, "a Group's closed pool gave its name back")
	}

	x := newPool(t, srv.Addr(), connpool.WithName("cache"))
	y := newPool(t, srv.Addr(), connpool.WithName("cache"))
	assert.Equal(t, x.Stats().Name, y.Stats().Name, "a name the user gave is kept")
}
