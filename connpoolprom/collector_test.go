package connpoolprom_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/connpoolprom"
	"github.com/connpool/connpool/internal/pooltest"
	"github.com/connpool/connpool/internal/testserver"
)

// TestCollectAndLint checks both collectors, and the metrics of a pool of
// a host name, against promlint: names, units, suffixes, help texts.
func TestCollectAndLint(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr())
	use(t, p)
	g, err := connpool.NewGroup()
	require.NoError(t, err)
	t.Cleanup(func() { g.Close() })
	c, err := g.Get(context.Background(), "tcp", srv.Addr())
	require.NoError(t, err)
	require.NoError(t, c.Close())

	// A pool of a host name, for the per-address metrics.
	s := distinctStats()
	named := &fixedCollector{addr: connpool.Addr{Network: "tcp", Address: "db.internal:5432"}, stats: s}

	for name, c := range map[string]prometheus.Collector{
		"pool":      connpoolprom.NewCollector(p),
		"group":     connpoolprom.NewGroupCollector(g),
		"host name": named,
	} {
		t.Run(name, func(t *testing.T) {
			problems, err := testutil.CollectAndLint(c)
			require.NoError(t, err)
			assert.Empty(t, problems)
		})
	}
}

// TestScrapeMatchesStats runs many goroutines against a small pool, with
// random short deadlines, random hold times and some conns marked
// unusable, lets the pool settle, and checks that every scraped sample
// equals the Stats field it comes from, and that no other sample is
// scraped. It checks again after a Detach and a Reset, and after Close:
// a closed pool is still reported.
func TestScrapeMatchesStats(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr(),
		connpool.WithName("stress"),
		connpool.WithMaxConns(3),
		connpool.WithMaxIdle(2),
		connpool.WithMaxConnecting(2),
		connpool.WithMaxWaiters(8),
		connpool.WithUseTimeMetrics(true),
		// A queue policy that reacts within a millisecond, so that the
		// shed Gets are scraped too (shed_deadline, shed_overload).
		connpool.WithQueuePolicy(connpool.QueuePolicy{DeadlineAdmission: true, AdaptiveLIFO: true,
			Target: 50 * time.Microsecond, Interval: time.Millisecond, ShedAfter: 2 * time.Millisecond}),
	)
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(connpoolprom.NewCollector(p)))
	addr := connpool.Addr{Network: "tcp", Address: srv.Addr()}

	check := func(stage string) connpool.Stats {
		t.Helper()
		quiesce(t, p)
		before := p.Stats()
		mfs, err := reg.Gather()
		require.NoError(t, err, stage)
		require.Equal(t, before, p.Stats(), "%s: the pool is quiet while scraped", stage)
		got := samples(t, mfs)
		assertSamplesMatch(t, want(addr, before), got)
		assert.Equal(t, before.WaitDuration, before.WaitTime.Sum, "%s: WaitDuration is connpool_wait_seconds_sum", stage)
		assert.Equal(t, uint64(before.WaitCount), before.WaitTime.Count(), "%s: connpool_waits_total is connpool_wait_seconds_count", stage)

		// Every conn dialed is open or closed for one reason: the
		// closed_total reasons miss none.
		closed := 0.0
		for k, v := range got {
			if strings.HasPrefix(k, "connpool_closed_total{") {
				closed += v
			}
		}
		open := 0.0
		for _, state := range []string{"in_use", "idle", "closing"} {
			open += got[key("connpool_connections", "pool", "stress", "network", "tcp", "address", srv.Addr(), "state", state)]
		}
		assert.Equal(t, got[key("connpool_dials_total", "pool", "stress", "network", "tcp", "address", srv.Addr())], open+closed,
			"%s: dials = open + closed", stage)
		assert.Equal(t, float64(before.OpenConns), open, "%s: the states add up to OpenConns", stage)
		return before
	}

	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	const workers, rounds = 16, 150
	var g errgroup.Group
	for w := range workers {
		rng := rand.New(rand.NewPCG(seed, uint64(w)))
		g.Go(func() error {
			for range rounds {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rng.IntN(2000))*time.Microsecond)
				c, err := p.Get(ctx)
				cancel()
				switch {
				case errors.Is(err, context.DeadlineExceeded), errors.Is(err, connpool.ErrTooManyWaiters), errors.Is(err, connpool.ErrShed):
					continue
				case err != nil:
					return err
				}
				if rng.IntN(4) == 0 {
					if _, err := testserver.RoundTrip(c, "x"); err != nil {
						return err
					}
				}
				time.Sleep(time.Duration(rng.IntN(300)) * time.Microsecond) // the borrower's work
				if rng.IntN(10) == 0 {
					c.MarkUnusable()
				}
				if err := c.Close(); err != nil {
					return err
				}
			}
			return nil
		})
	}
	require.NoError(t, g.Wait())
	s := check("after the run")
	t.Log(s)
	assert.Positive(t, s.Hits, "hits")
	assert.Positive(t, s.Misses, "misses")
	assert.Positive(t, s.WaitCount, "waits")
	assert.Positive(t, s.Timeouts+s.TooManyWaiters, "failed Gets")
	assert.Positive(t, s.ShedDeadline+s.ShedOverload, "Gets shed by the queue policy")
	assert.Positive(t, s.BrokenClosed, "conns marked unusable")
	assert.Positive(t, s.WaitTime.Count(), "wait histogram")
	assert.Positive(t, s.DialTime.Count(), "dial histogram")
	assert.Positive(t, s.UseTime.Count(), "use histogram")

	c, err := p.Get(context.Background())
	require.NoError(t, err)
	nc, err := c.Detach()
	require.NoError(t, err)
	require.NoError(t, nc.Close())
	use(t, p)
	require.NoError(t, p.Reset())
	s = check("after a Detach and a Reset")
	assert.Positive(t, s.DetachedClosed, "detached")
	assert.Positive(t, s.ResetClosed, "reset")

	use(t, p)
	require.NoError(t, p.Close())
	s = check("after Close")
	assert.Positive(t, s.PoolClosed, "closed by Close")
}

// TestGroupCollectorLabelsEachPool checks that a group's collector
// reports every pool, each labelled with its own name and address, from
// the group's Stats.
func TestGroupCollectorLabelsEachPool(t *testing.T) {
	g, err := connpool.NewGroup(connpool.WithName("api"), connpool.WithMaxConns(2))
	require.NoError(t, err)
	t.Cleanup(func() { g.Close() })
	var addrs []string
	for range 3 {
		srv := startServer(t)
		addrs = append(addrs, srv.Addr())
		c, err := g.Get(context.Background(), "tcp", srv.Addr())
		require.NoError(t, err)
		require.NoError(t, c.Close())
	}

	stats := g.Stats()
	mfs := gather(t, connpoolprom.NewGroupCollector(g))
	require.Equal(t, stats, g.Stats(), "the group is quiet while scraped")
	require.Len(t, stats, len(addrs))
	expected := make(map[string]float64)
	for a, s := range stats {
		for k, v := range want(a, s) {
			expected[k] = v
		}
	}
	got := samples(t, mfs)
	assertSamplesMatch(t, expected, got)
	for _, addr := range addrs {
		assert.Equal(t, 1.0, got[key("connpool_dials_total", "pool", "api "+addr, "network", "tcp", "address", addr)], addr)
	}
}

// TestCollectorsOfNothing checks that collectors with no pool, nil pools,
// a nil group or an empty group gather nothing and no error.
func TestCollectorsOfNothing(t *testing.T) {
	g, err := connpool.NewGroup()
	require.NoError(t, err)
	t.Cleanup(func() { g.Close() })
	for name, c := range map[string]prometheus.Collector{
		"no pool":     connpoolprom.NewCollector(),
		"nil pools":   connpoolprom.NewCollector(nil, nil),
		"nil group":   connpoolprom.NewGroupCollector(nil),
		"empty group": connpoolprom.NewGroupCollector(g),
	} {
		t.Run(name, func(t *testing.T) {
			assert.Empty(t, gather(t, c))
		})
	}
}

// TestDescribeSendsEveryDesc checks that a pool's collector describes
// one Desc per family for each pool, carrying the pool's labels, and that
// a group's describes none (it is unchecked); and that each family is
// used: one family per Desc for a pool with an address.
func TestDescribeSendsEveryDesc(t *testing.T) {
	describe := func(c prometheus.Collector) []string {
		ch := make(chan *prometheus.Desc)
		go func() {
			c.Describe(ch)
			close(ch)
		}()
		var out []string
		for d := range ch {
			out = append(out, d.String())
		}
		return out
	}
	srv := startServer(t)
	a := newPool(t, srv.Addr(), connpool.WithName("a"))
	b := newPool(t, srv.Addr(), connpool.WithName("b"))
	descs := describe(connpoolprom.NewCollector(a))
	for _, d := range descs {
		assert.Contains(t, d, `pool="a"`)
		assert.Contains(t, d, `address="`+srv.Addr()+`"`)
	}
	assert.Len(t, describe(connpoolprom.NewCollector(a, nil, b, a)), 2*len(descs), "each pool once")
	assert.Empty(t, describe(connpoolprom.NewCollector()))
	assert.Empty(t, describe(connpoolprom.NewGroupCollector(nil)))
	// A pool of a host name, with one address: the backend metrics too.
	s := connpool.Stats{Name: "p", Addresses: []connpool.AddressStats{{Address: "10.0.0.1:1"}}}
	mfs := gather(t, &fixedCollector{addr: connpool.Addr{Network: "tcp", Address: "a:1"}, stats: s})
	assert.Len(t, mfs, len(descs), "a family per Desc")
}

// TestInvalidUTF8Name checks that a pool name that is not valid UTF-8
// does not fail the scrape: the bad bytes become U+FFFD in the label.
func TestInvalidUTF8Name(t *testing.T) {
	c := &fixedCollector{addr: connpool.Addr{Network: "tcp", Address: "a:1"}, stats: connpool.Stats{Name: "bad\xff", MaxConns: 4}}
	got := samples(t, gather(t, c))
	assert.Equal(t, 4.0, got[key("connpool_max_connections", "pool", "bad\uFFFD", "network", "tcp", "address", "a:1")])
}

// TestWrappedRegisterer checks a group's collector behind
// prometheus.WrapRegistererWith, which appends its labels to each
// metric's: every sample keeps its own pool's labels and gains the
// wrapper's. It pins that the metrics of a scrape, cut from shared
// slices, leave no room for an append to write over the next metric's
// labels.
func TestWrappedRegisterer(t *testing.T) {
	g, err := connpool.NewGroup()
	require.NoError(t, err)
	t.Cleanup(func() { g.Close() })
	for range 3 {
		srv := startServer(t)
		c, err := g.Get(context.Background(), "tcp", srv.Addr())
		require.NoError(t, err)
		require.NoError(t, c.Close())
	}

	stats := g.Stats()
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, prometheus.WrapRegistererWith(prometheus.Labels{"zone": "a"}, reg).Register(connpoolprom.NewGroupCollector(g)))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	require.Equal(t, stats, g.Stats(), "the group is quiet while scraped")
	expected := make(map[string]float64)
	for a, s := range stats {
		for k, v := range want(a, s) {
			// Every key ends with "}": put the wrapper's label before it,
			// where key sorts it, after the pool's and any "state".
			expected[strings.TrimSuffix(k, "}")+`,zone="a"}`] = v
		}
	}
	assertSamplesMatch(t, expected, samples(t, mfs))
}

// TestConcurrentScrapes gathers and encodes a group's collector from
// several goroutines at once, for the race detector: the label pairs and
// buckets the scrapes share are only read.
func TestConcurrentScrapes(t *testing.T) {
	g, err := connpool.NewGroup()
	require.NoError(t, err)
	t.Cleanup(func() { g.Close() })
	srv := startServer(t)
	c, err := g.Get(context.Background(), "tcp", srv.Addr())
	require.NoError(t, err)
	require.NoError(t, c.Close())
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(connpoolprom.NewGroupCollector(g)))
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError})

	var eg errgroup.Group
	for _, accept := range []string{"text/plain;version=0.0.4", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited", "application/openmetrics-text;version=1.0.0"} {
		for range 2 {
			eg.Go(func() error {
				for range 20 {
					req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
					req.Header.Set("Accept", accept)
					w := httptest.NewRecorder()
					h.ServeHTTP(w, req)
					if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "connpool_dials_total") {
						return fmt.Errorf("%s: status %d, body %.200q", accept, w.Code, w.Body.String())
					}
				}
				return nil
			})
		}
	}
	require.NoError(t, eg.Wait())
}

// TestGroupCollectorSendsInLabelOrder checks that a group's collector
// sends the metrics of each family in the order the registry sorts them
// (by label values, compared as strings), so that the registry's sort
// of a large group finds them sorted and only checks it.
func TestGroupCollectorSendsInLabelOrder(t *testing.T) {
	g, err := connpool.NewGroup(connpool.WithDialer(pipeDial), connpool.WithMaxConns(2), connpool.WithGroupIdleTimeout(0))
	require.NoError(t, err)
	t.Cleanup(func() { g.Close() })
	for _, a := range []connpool.Addr{
		{Network: "tcp", Address: "10.0.0.9:6379"},
		{Network: "tcp", Address: "10.0.0.10:6379"},
		{Network: "tcp4", Address: "10.0.0.9:6379"},
		{Network: "tcp", Address: "10.0.0.1:6379"},
		{Network: "unix", Address: "/run/redis.sock"},
	} {
		require.NoError(t, exercise(g, a.Network, a.Address))
	}

	ch := make(chan prometheus.Metric, 1024)
	connpoolprom.NewGroupCollector(g).Collect(ch)
	close(ch)
	families := make(map[string][][]string)
	for m := range ch {
		var out dto.Metric
		require.NoError(t, m.Write(&out))
		var values []string
		for _, lp := range out.GetLabel() {
			values = append(values, lp.GetValue())
		}
		name := m.Desc().String()
		families[name] = append(families[name], values)
	}
	require.NotEmpty(t, families)
	for name, metrics := range families {
		assert.True(t, slices.IsSortedFunc(metrics, slices.Compare[[]string]), "%s: %v", name, metrics)
	}
}

// TestScrapeOfAHostName scrapes a pool of a host name (WithResolver)
// after concurrent use: its per-address series equal Stats.Addresses,
// and its one address's counts are the pool's own.
func TestScrapeOfAHostName(t *testing.T) {
	srv := startServer(t)
	p, name := pooltest.NewHostNamePool(t, srv.Addr(), "backend.test", connpool.WithName("named"), connpool.WithMaxConns(3))
	var g errgroup.Group
	for range 8 {
		g.Go(func() error {
			for range 20 {
				c, err := p.Get(context.Background())
				if err != nil {
					return err
				}
				if _, err := testserver.RoundTrip(c, "ping"); err != nil {
					return err
				}
				if err := c.Close(); err != nil {
					return err
				}
			}
			return nil
		})
	}
	require.NoError(t, g.Wait())
	quiesce(t, p)

	s := p.Stats()
	require.Len(t, s.Addresses, 1)
	got := samples(t, gather(t, connpoolprom.NewCollector(p)))
	assertSamplesMatch(t, want(connpool.Addr{Network: "tcp", Address: name}, s), got)
	a := s.Addresses[0]
	assert.Equal(t, srv.Addr(), a.Address)
	assert.Equal(t, s.Dials, a.Dials)
	assert.Equal(t, s.OpenConns, a.Open)
	assert.Positive(t, got[key("connpool_backend_connections", "pool", "named", "network", "tcp", "address", name, "backend", srv.Addr(), "state", "idle")])
}

// TestCollectorsShareARegistry pins that collectors of different pools
// register in one registry and gather together (issue 21): every
// collector described the same Descs, so a service that registered two
// pools' collectors, or a pool's and a group's, got "duplicate metrics
// collector registration attempted", a panic with MustRegister. Two
// components of a service may also leave their pools, and a group's, the
// default names, all of one address: they gather apart too. Regression:
// with the default names, the standalone pools' and the group's pool's
// series were the same, and every Gather failed.
func TestCollectorsShareARegistry(t *testing.T) {
	for _, tc := range []struct {
		name       string
		a, b       []connpool.Option
		g          []connpool.GroupOption
		wantGroups int // the group's pools
	}{
		{"named", []connpool.Option{connpool.WithName("orders")}, []connpool.Option{connpool.WithName("sessions")},
			[]connpool.GroupOption{connpool.WithName("api"), connpool.WithMaxConns(2)}, 1},
		{"default names", nil, nil, []connpool.GroupOption{connpool.WithMaxConns(2)}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t)
			a := newPool(t, srv.Addr(), tc.a...)
			b := newPool(t, srv.Addr(), tc.b...)
			use(t, a)
			use(t, b)
			g, err := connpool.NewGroup(tc.g...)
			require.NoError(t, err)
			t.Cleanup(func() { g.Close() })
			require.NoError(t, exercise(g, "tcp", srv.Addr()))

			reg := prometheus.NewRegistry()
			reg.MustRegister(connpoolprom.NewCollector(a))
			reg.MustRegister(connpoolprom.NewCollector(b))
			reg.MustRegister(connpoolprom.NewGroupCollector(g))
			quiesce(t, a)
			quiesce(t, b)
			stats := g.Stats()
			require.Len(t, stats, tc.wantGroups)
			mfs, err := reg.Gather()
			require.NoError(t, err)
			require.Equal(t, stats, g.Stats(), "the group is quiet while scraped")

			expected := want(connpool.Addr{Network: "tcp", Address: srv.Addr()}, a.Stats())
			maps.Copy(expected, want(connpool.Addr{Network: "tcp", Address: srv.Addr()}, b.Stats()))
			for addr, s := range stats {
				maps.Copy(expected, want(addr, s))
			}
			assertSamplesMatch(t, expected, samples(t, mfs)) // samples fails on a duplicate series

			problems, err := testutil.GatherAndLint(reg)
			require.NoError(t, err)
			assert.Empty(t, problems)
			for _, c := range []prometheus.Collector{connpoolprom.NewCollector(a, b), connpoolprom.NewGroupCollector(g)} {
				problems, err := testutil.CollectAndLint(c)
				require.NoError(t, err)
				assert.Empty(t, problems)
			}
		})
	}
}

// TestOnePoolInTwoCollectors checks that the registry refuses, at
// registration, a collector that would scrape a pool's series a second
// time, and names the pool.
func TestOnePoolInTwoCollectors(t *testing.T) {
	srv := startServer(t)
	a := newPool(t, srv.Addr(), connpool.WithName("a"))
	b := newPool(t, srv.Addr(), connpool.WithName("b"))
	twin := newPool(t, srv.Addr(), connpool.WithName("a"))

	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(connpoolprom.NewCollector(a, b)))

	err := reg.Register(connpoolprom.NewCollector(b, a))
	var already prometheus.AlreadyRegisteredError
	assert.ErrorAs(t, err, &already, "the same pools")

	err = reg.Register(connpoolprom.NewCollector(a))
	require.Error(t, err, "a pool the registry already collects")
	assert.Contains(t, err.Error(), `pool="a"`)

	err = reg.Register(connpoolprom.NewCollector(twin))
	require.Error(t, err, "another pool of the same labels")

	err = prometheus.NewRegistry().Register(connpoolprom.NewCollector(a, twin))
	require.Error(t, err, "two pools of the same labels in one collector")
	assert.Contains(t, err.Error(), "connpool.WithName")

	mfs, err := reg.Gather()
	require.NoError(t, err, "the refused collectors left the registry as it was")
	samples(t, mfs)
}

// TestFailedGetsAreScraped pins that Gets failing during an outage are in
// the scrape (issue 21): 20 Gets against an address that refuses left
// only connpool_dial_errors_total 1, and nothing counted the Gets.
func TestFailedGetsAreScraped(t *testing.T) {
	addr := pooltest.RefusingAddr(t)
	p := newPool(t, addr, connpool.WithName("outage"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := range 20 {
		_, err := p.Get(ctx)
		require.Error(t, err, "Get %d", i)
		require.NotErrorIs(t, err, context.DeadlineExceeded, "Get %d fails fast", i)
	}

	got := samples(t, gather(t, connpoolprom.NewCollector(p)))
	gets := func(result string) float64 {
		return got[key("connpool_gets_total", "pool", "outage", "network", "tcp", "address", addr, "result", result)]
	}
	assert.Equal(t, 20.0, gets("dial_error"))
	all := 0.0
	for k, v := range got {
		if strings.HasPrefix(k, "connpool_gets_total{") {
			all += v
		}
	}
	assert.Equal(t, 20.0, all, "the results add up to the Gets")
	assert.Positive(t, got[key("connpool_dial_errors_total", "pool", "outage", "network", "tcp", "address", addr)])
}

// TestClosedPoolBesideItsSuccessor: a collector still reports a closed
// pool's final counters, so a pool opened after it for the same address,
// by the user or by a Group, takes another default name, and the registry
// gathers both. Regression: the closed pool gave its name back, the
// group's new pool took it, and every Gather failed (promhttp answered
// 500); a second collector of a replacement pool failed to register.
func TestClosedPoolBesideItsSuccessor(t *testing.T) {
	srv := startServer(t)
	old := newPool(t, srv.Addr())
	use(t, old)
	g, err := connpool.NewGroup()
	require.NoError(t, err)
	t.Cleanup(func() { g.Close() })
	reg := prometheus.NewRegistry()
	reg.MustRegister(connpoolprom.NewCollector(old), connpoolprom.NewGroupCollector(g))
	require.NoError(t, old.Close())

	replacement := newPool(t, srv.Addr())
	use(t, replacement)
	require.NoError(t, reg.Register(connpoolprom.NewCollector(replacement)))
	c, err := g.Get(context.Background(), "tcp", srv.Addr())
	require.NoError(t, err)
	require.NoError(t, c.Close())
	mfs, err := reg.Gather()
	require.NoError(t, err)
	samples(t, mfs) // fails on a duplicate series
	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	assert.Empty(t, problems)
}
