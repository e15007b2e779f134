package connpoolprom_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/printer"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/connpoolprom"
)

// fakeMember is a FleetMember whose figures a test sets, standing in for a
// connpoolfleet.Member (whose module this one must not need). It is safe
// for concurrent use, as the interface asks.
type fakeMember struct {
	budget, id string

	mu                          sync.Mutex
	state                       string
	grant, target, caps, size   int
	demand                      float64
	renews, renewErrors, fences int64
}

func (f *fakeMember) FleetNames() (string, string) { return f.budget, f.id }

func (f *fakeMember) FleetState() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state
}

func (f *fakeMember) FleetShares() (int, int, int, int, float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.grant, f.target, f.caps, f.size, f.demand
}

func (f *fakeMember) FleetCounts() (int64, int64, int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.renews, f.renewErrors, f.fences
}

func (f *fakeMember) set(state string, grant int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state, f.grant = state, grant
}

// fleetSamples are the samples a member's figures give.
func fleetSamples(f *fakeMember) map[string]float64 {
	l := []string{"budget", f.budget, "member", f.id}
	out := map[string]float64{
		key("connpool_fleet_grant_connections", l...):  float64(f.grant),
		key("connpool_fleet_target_connections", l...): float64(f.target),
		key("connpool_fleet_max_connections", l...):    float64(f.caps),
		key("connpool_fleet_budget_connections", l...): float64(f.size),
		key("connpool_fleet_demand_connections", l...): f.demand,
		key("connpool_fleet_renews_total", l...):       float64(f.renews),
		key("connpool_fleet_renew_errors_total", l...): float64(f.renewErrors),
		key("connpool_fleet_fences_total", l...):       float64(f.fences),
	}
	for _, s := range []string{"joining", "learning", "granted", "fenced", "left"} {
		v := 0.0
		if s == f.state {
			v = 1
		}
		out[key("connpool_fleet_state", append(l, "state", s)...)] = v
	}
	return out
}

// TestFleetCollectorBesidePools checks that fleet collectors register in
// one registry with a pool's collector and a group's, that every figure of
// each member is scraped under its labels, that the collectors pass the
// linter, and that a scrape follows the members' changes.
func TestFleetCollectorBesidePools(t *testing.T) {
	srv := startServer(t)
	pool := newPool(t, srv.Addr(), connpool.WithName("orders"))
	use(t, pool)
	g, err := connpool.NewGroup(connpool.WithName("api"))
	require.NoError(t, err)
	t.Cleanup(func() { g.Close() })

	a := &fakeMember{budget: "orders-db", id: "a", state: "granted", grant: 12, target: 10, caps: 12, size: 20, demand: 11.5, renews: 7, renewErrors: 1}
	b := &fakeMember{budget: "orders-db", id: "b", state: "learning", grant: 4, target: 4, caps: 4, size: 20, demand: 0.5, renews: 3, fences: 2}
	c := &fakeMember{budget: "sessions-db", id: "a", state: "joining", size: 5}

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(connpoolprom.NewCollector(pool))
	reg.MustRegister(connpoolprom.NewGroupCollector(g))
	reg.MustRegister(connpoolprom.NewFleetCollector(a, b))
	reg.MustRegister(connpoolprom.NewFleetCollector(c)) // same ID, another budget
	quiesce(t, pool)

	mfs, err := reg.Gather()
	require.NoError(t, err)
	got := samples(t, mfs)
	for _, m := range []*fakeMember{a, b, c} {
		for k, v := range fleetSamples(m) {
			assert.Equal(t, v, got[k], k)
		}
	}
	assert.Contains(t, got, key("connpool_max_connections", "address", srv.Addr(), "network", "tcp", "pool", "orders"),
		"the pool's metrics are there too")

	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	assert.Empty(t, problems)
	problems, err = testutil.CollectAndLint(connpoolprom.NewFleetCollector(a, b, c))
	require.NoError(t, err)
	assert.Empty(t, problems)

	b.set("fenced", 1)
	mfs, err = reg.Gather()
	require.NoError(t, err)
	got = samples(t, mfs)
	assert.Equal(t, 1.0, got[key("connpool_fleet_state", "budget", "orders-db", "member", "b", "state", "fenced")])
	assert.Equal(t, 0.0, got[key("connpool_fleet_state", "budget", "orders-db", "member", "b", "state", "learning")])
	assert.Equal(t, 1.0, got[key("connpool_fleet_grant_connections", "budget", "orders-db", "member", "b")])
}

// TestFleetCollectorTwice checks that a member given twice, or nil, is
// collected once; that a collector of a member the registry already
// collects is refused; and that two members of one budget and ID fail the
// registration with an error that names them.
func TestFleetCollectorTwice(t *testing.T) {
	a := &fakeMember{budget: "db", id: "a", state: "granted", grant: 3}
	b := &fakeMember{budget: "db", id: "b", state: "granted", grant: 2}
	twin := &fakeMember{budget: "db", id: "a", state: "granted", grant: 1}

	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(connpoolprom.NewFleetCollector(a, nil, a, b)))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	samples(t, mfs) // fails on a sample seen twice

	err = reg.Register(connpoolprom.NewFleetCollector(a))
	require.Error(t, err, "a member the registry already collects")
	assert.Contains(t, err.Error(), `member="a"`)

	err = prometheus.NewRegistry().Register(connpoolprom.NewFleetCollector(a, twin))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `budget "db" have the ID "a"`)
	assert.Contains(t, err.Error(), "connpoolfleet.WithID")
}

// TestFleetCollectorUnknownState checks that a state this package does
// not know (a newer connpoolfleet's) is still reported, as 1.
func TestFleetCollectorUnknownState(t *testing.T) {
	m := &fakeMember{budget: "db", id: "a", state: "draining"}
	got := samples(t, gather(t, connpoolprom.NewFleetCollector(m)))
	assert.Equal(t, 1.0, got[key("connpool_fleet_state", "budget", "db", "member", "a", "state", "draining")])
	assert.Equal(t, 0.0, got[key("connpool_fleet_state", "budget", "db", "member", "a", "state", "granted")])
	assert.Len(t, got, 8+6, fmt.Sprint(got))
}

// TestFleetMemberMatchesConnpoolfleet checks, from the source next to this
// module's, that connpoolfleet's *Member has every method of FleetMember
// with the same types: this module cannot import connpoolfleet to check it
// by compiling. Outside the repository (a module download) it skips.
func TestFleetMemberMatchesConnpoolfleet(t *testing.T) {
	fleetDir := filepath.Join("..", "connpoolfleet")
	if _, err := os.Stat(fleetDir); err != nil {
		t.Skip("connpoolfleet's source is not next to this module's")
	}
	want := methodTypes(t, ".", "FleetMember", "")
	got := methodTypes(t, fleetDir, "", "Member")
	require.NotEmpty(t, want)
	for name, sig := range want {
		assert.Equal(t, sig, got[name], "connpoolfleet's (*Member).%s", name)
	}
}

// methodTypes returns, by name, the types of the methods of the interface
// iface, or of the methods whose receiver is *recv, declared in the
// non-test files of dir, as "(params) (results)" without names.
func methodTypes(t *testing.T, dir, iface, recv string) map[string]string {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	require.NoError(t, err)
	out := make(map[string]string)
	types := func(fl *ast.FieldList) string {
		var ts []string
		for _, f := range fl.List {
			var b strings.Builder
			require.NoError(t, printer.Fprint(&b, fset, f.Type))
			for range max(1, len(f.Names)) {
				ts = append(ts, b.String())
			}
		}
		return "(" + strings.Join(ts, ", ") + ")"
	}
	sig := func(ft *ast.FuncType) string {
		s := types(ft.Params)
		if ft.Results != nil {
			s += " " + types(ft.Results)
		}
		return s
	}
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		require.NoError(t, err)
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.GenDecl:
				for _, spec := range d.Specs {
					ts, ok := spec.(*ast.TypeSpec)
					if !ok || iface == "" || ts.Name.Name != iface {
						continue
					}
					for _, m := range ts.Type.(*ast.InterfaceType).Methods.List {
						out[m.Names[0].Name] = sig(m.Type.(*ast.FuncType))
					}
				}
			case *ast.FuncDecl:
				if recv == "" || d.Recv == nil || len(d.Recv.List) != 1 {
					continue
				}
				if star, ok := d.Recv.List[0].Type.(*ast.StarExpr); ok {
					if id, ok := star.X.(*ast.Ident); ok && id.Name == recv {
						out[d.Name.Name] = sig(d.Type)
					}
				}
			}
		}
	}
	return out
}
