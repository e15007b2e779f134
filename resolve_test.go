package connpool_test

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/internal/testserver"
)

// The tests of resolve.go: a pool of a host name against echo servers on
// 127.0.0.2, 127.0.0.3, ... (on Linux all of 127/8 is on lo), one port
// for all, behind a fake resolver.

// backends is a set of echo servers on one port, one per loopback IP.
type backends struct {
	port string
	srvs map[netip.Addr]*testserver.Server
	ips  []netip.Addr
}

// startBackends starts n echo servers on 127.0.0.2 to 127.0.0.(n+1), on
// a port free on all of them, closed at the end of the test.
func startBackends(t testing.TB, n int) *backends {
	t.Helper()
	for range 20 {
		b := &backends{srvs: make(map[netip.Addr]*testserver.Server)}
		ok := true
		for i := range n {
			ip := netip.AddrFrom4([4]byte{127, 0, 0, byte(i + 2)})
			srv, err := testserver.StartAt(net.JoinHostPort(ip.String(), b.portOr0()))
			if err != nil {
				ok = false
				break
			}
			if b.port == "" {
				_, b.port, _ = net.SplitHostPort(srv.Addr())
			}
			b.srvs[ip] = srv
			b.ips = append(b.ips, ip)
		}
		if ok {
			t.Cleanup(b.close)
			return b
		}
		b.close() // the port was taken on a later IP: try another
	}
	t.Fatal("no port free on every loopback address")
	return nil
}

func (b *backends) portOr0() string {
	if b.port == "" {
		return "0"
	}
	return b.port
}

func (b *backends) close() {
	for _, s := range b.srvs {
		s.Close()
	}
}

// name is the host:port the pools dial: a name only the fake resolver
// knows.
func (b *backends) name() string { return net.JoinHostPort("svc.test", b.port) }

func (b *backends) addr(ip netip.Addr) string { return net.JoinHostPort(ip.String(), b.port) }

// open returns the conns open at each server's end.
func (b *backends) open() []int {
	out := make([]int, len(b.ips))
	for i, ip := range b.ips {
		out[i] = b.srvs[ip].Open()
	}
	return out
}

// fakeResolver answers with the set it is given, or its error, and counts
// the lookups.
type fakeResolver struct {
	mu    sync.Mutex
	ips   []netip.Addr
	err   error
	calls atomic.Int64
}

func newFakeResolver(ips ...netip.Addr) *fakeResolver { return &fakeResolver{ips: ips} }

func (r *fakeResolver) set(ips ...netip.Addr) {
	r.mu.Lock()
	r.ips, r.err = ips, nil
	r.mu.Unlock()
}

func (r *fakeResolver) fail(err error) {
	r.mu.Lock()
	r.err = err
	r.mu.Unlock()
}

func (r *fakeResolver) LookupNetIP(_ context.Context, _, _ string) ([]netip.Addr, error) {
	r.calls.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ips), r.err
}

// resolvedEvents returns hooks that send every Resolved event to the
// channel, never blocking the pool.
func resolvedEvents() (connpool.Hooks, <-chan connpool.ResolveEvent) {
	ch := make(chan connpool.ResolveEvent, 1024)
	return connpool.Hooks{Resolved: func(e connpool.ResolveEvent) {
		select {
		case ch <- e:
		default:
		}
	}}, ch
}

// awaitResolve waits for a Resolved event that f accepts.
func awaitResolve(t *testing.T, ch <-chan connpool.ResolveEvent, f func(connpool.ResolveEvent) bool) connpool.ResolveEvent {
	t.Helper()
	timeout := time.After(waitFor)
	for {
		select {
		case e := <-ch:
			if f(e) {
				return e
			}
		case <-timeout:
			t.Fatal("no such Resolved event")
		}
	}
}

func remoteIP(t *testing.T, c net.Conn) netip.Addr {
	t.Helper()
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	require.NoError(t, err)
	return ap.Addr()
}

func addressStats(s connpool.Stats, addr string) (connpool.AddressStats, bool) {
	for _, a := range s.Addresses {
		if a.Address == addr {
			return a, true
		}
	}
	return connpool.AddressStats{}, false
}

// TestResolveSpreadsConnsEvenly: three records, thirty conns, ten at each
// server, whether the Gets come one by one or all at once; each conn's
// RemoteAddr is the server it reached.
func TestResolveSpreadsConnsEvenly(t *testing.T) {
	for _, concurrent := range []bool{false, true} {
		t.Run(fmt.Sprintf("concurrent=%v", concurrent), func(t *testing.T) {
			b := startBackends(t, 3)
			r := newFakeResolver(b.ips...)
			p := newPool(t, b.name(), connpool.WithResolver(r), connpool.WithMaxConns(30))
			stop := watchLedger(t, p)
			conns := make([]*connpool.Conn, 30)
			if concurrent {
				errs := make(chan error, len(conns))
				var wg sync.WaitGroup
				for i := range conns {
					wg.Go(func() {
						c, err := p.Get(context.Background())
						conns[i] = c
						errs <- err
					})
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					require.NoError(t, err)
				}
			} else {
				conns = holdAll(t, p, len(conns))
			}
			perIP := map[netip.Addr]int{}
			for _, c := range conns {
				mustRoundTrip(t, c, "hello")
				ip := remoteIP(t, c)
				perIP[ip]++
				assert.Equal(t, ip.String(), c.Unwrap().RemoteAddr().(*net.TCPAddr).IP.String(), "RemoteAddr is where the socket goes")
			}
			for _, ip := range b.ips {
				assert.Equal(t, 10, perIP[ip], "conns to %v", ip)
			}
			require.Eventually(t, func() bool { return slices.Equal(b.open(), []int{10, 10, 10}) }, waitFor, tick)
			st := p.Stats()
			require.Len(t, st.Addresses, 3)
			for i, a := range st.Addresses {
				assert.Equal(t, b.addr(b.ips[i]), a.Address)
				assert.Equal(t, 10, a.Open)
				assert.Equal(t, 10, a.InUse)
				assert.Equal(t, int64(10), a.Dials)
				assert.False(t, a.Draining)
			}
			for _, c := range conns {
				require.NoError(t, c.Close())
			}
			stop()
		})
	}
}

// addressRecorder dials as a net.Dialer does, to the address asked for or
// to to if set, and records the addresses asked for.
type addressRecorder struct {
	to string

	mu    sync.Mutex // guards asked
	asked []string
}

func (d *addressRecorder) dial(ctx context.Context, network, address string) (net.Conn, error) {
	d.mu.Lock()
	d.asked = append(d.asked, address)
	d.mu.Unlock()
	var nd net.Dialer
	return nd.DialContext(ctx, network, cmp.Or(d.to, address))
}

// addresses returns the addresses asked for so far.
func (d *addressRecorder) addresses() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.asked)
}

// TestIPLiteralIsNotResolved: an IP literal is dialed as given; the
// resolver is never asked, and Stats has no per-address entries.
func TestIPLiteralIsNotResolved(t *testing.T) {
	srv := startServer(t)
	r := newFakeResolver()
	var d addressRecorder
	p := newPool(t, srv.Addr(), connpool.WithResolver(r), connpool.WithResolveInterval(time.Millisecond), connpool.WithDialer(d.dial))
	c := getConn(t, p)
	mustRoundTrip(t, c, "x")
	assert.Equal(t, srv.Addr(), c.RemoteAddr().String())
	require.NoError(t, c.Close())
	assert.Zero(t, r.calls.Load())
	assert.Equal(t, []string{srv.Addr()}, d.addresses())
	assert.Nil(t, p.Stats().Addresses)
}

// TestOwnDialerSeesTheNameAsGiven: a pool with its own dialer and no
// WithResolver, or with WithResolver(nil), does not resolve, so the
// dialer sees the host name, as one through a proxy or a TLS dialer that
// verifies the name must; given WithResolver too, it is handed ip:port.
func TestOwnDialerSeesTheNameAsGiven(t *testing.T) {
	srv := startServer(t)
	host, port, err := net.SplitHostPort(srv.Addr())
	require.NoError(t, err)
	name := net.JoinHostPort("backend.test", port)
	for _, tc := range []struct {
		name string
		opts []connpool.Option
		want string
	}{
		{"no WithResolver", nil, name},
		{"WithResolver(nil)", []connpool.Option{connpool.WithResolver(nil)}, name},
		{"WithResolver", []connpool.Option{connpool.WithResolver(newFakeResolver(netip.MustParseAddr(host)))}, srv.Addr()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := addressRecorder{to: srv.Addr()} // the proxy's part
			opts := append([]connpool.Option{connpool.WithDialer(d.dial), connpool.WithMinIdle(0)}, tc.opts...)
			p := newPool(t, name, opts...)
			for range 3 {
				c := getConn(t, p)
				mustRoundTrip(t, c, "x")
				c.MarkUnusable()
				require.NoError(t, c.Close())
			}
			assert.Equal(t, []string{tc.want, tc.want, tc.want}, d.addresses())
			if tc.want == name {
				s := p.Stats()
				assert.Nil(t, s.Addresses)
				assert.Zero(t, s.Resolves+s.ResolveErrors)
			}
		})
	}
}

// TestResolveDialsIPPortThroughTheDialer: the dialer is asked for the
// picked "ip:port", and the dial, Get, Put and close events name it.
func TestResolveDialsIPPortThroughTheDialer(t *testing.T) {
	b := startBackends(t, 2)
	var d addressRecorder
	var mu sync.Mutex
	var started, closed, got, put []string
	hooks := connpool.Hooks{
		DialStarted: func(e connpool.DialStartedEvent) { mu.Lock(); started = append(started, e.Address); mu.Unlock() },
		ConnClosed:  func(e connpool.ConnClosedEvent) { mu.Lock(); closed = append(closed, e.Address); mu.Unlock() },
		GetDone:     func(e connpool.GetDoneEvent) { mu.Lock(); got = append(got, e.Address); mu.Unlock() },
		Put:         func(e connpool.PutEvent) { mu.Lock(); put = append(put, e.Address); mu.Unlock() },
	}
	p, err := connpool.New("tcp", b.name(), connpool.WithResolver(newFakeResolver(b.ips...)), connpool.WithDialer(d.dial), connpool.WithHooks(hooks))
	require.NoError(t, err)
	conns := holdAll(t, p, 2)
	for _, c := range conns {
		require.NoError(t, c.Close())
	}
	require.NoError(t, p.Close())
	want := []string{b.addr(b.ips[0]), b.addr(b.ips[1])}
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, want, d.addresses())
	assert.Equal(t, want, started)
	assert.Equal(t, want, got)
	assert.Equal(t, want, put)
	assert.ElementsMatch(t, want, closed)
}
