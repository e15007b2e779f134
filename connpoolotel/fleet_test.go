package connpoolotel_test

import (
	"go/ast"
	"go/parser"
	"go/printer"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// fakeMember is a FleetMember whose figures a test sets, standing in for a
// connpoolfleet.Member (whose module this one must not need).
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

func fleetAttrs(f *fakeMember, more ...attribute.KeyValue) []attribute.KeyValue {
	return append([]attribute.KeyValue{
		attribute.String("connpool.fleet.budget", f.budget), attribute.String("connpool.fleet.member", f.id),
	}, more...)
}

// TestObserveFleet checks that fleet members are reported beside a pool,
// from two registrations of one Metrics, with every figure under the
// member's attributes and the instrument kinds the doc gives; that a
// collection follows the members' changes; and that Unregister stops
// reporting them.
func TestObserveFleet(t *testing.T) {
	h := newHarness(t)
	srv := startServer(t)
	h.observe(t, newPool(t, srv.Addr()))
	a := &fakeMember{budget: "orders-db", id: "a", state: "granted", grant: 12, target: 10, caps: 12, size: 20, demand: 11.5, renews: 7, renewErrors: 1}
	b := &fakeMember{budget: "orders-db", id: "b", state: "learning", grant: 4, target: 4, caps: 4, size: 20, demand: 0.5, renews: 3, fences: 2}
	regA, err := h.m.ObserveFleet(a, nil)
	require.NoError(t, err)
	regB, err := h.m.ObserveFleet(b)
	require.NoError(t, err)

	c := h.collect(t)
	assert.Contains(t, c, "db.client.connection.count", "the pool is reported too")
	for _, f := range []*fakeMember{a, b} {
		for name, want := range map[string]int64{
			"connpool.fleet.grant": int64(f.grant), "connpool.fleet.target": int64(f.target),
			"connpool.fleet.max": int64(f.caps), "connpool.fleet.budget": int64(f.size),
			"connpool.fleet.renews": f.renews, "connpool.fleet.renew_errors": f.renewErrors,
			"connpool.fleet.fences": f.fences,
		} {
			got, ok := c.int64Point(name, fleetAttrs(f)...)
			assert.True(t, ok, name)
			assert.Equal(t, want, got, "%s of %s", name, f.id)
		}
		for _, s := range []string{"joining", "learning", "granted", "fenced", "left"} {
			got, ok := c.int64Point("connpool.fleet.state", fleetAttrs(f, attribute.String("connpool.fleet.state", s))...)
			assert.True(t, ok)
			assert.Equal(t, s == f.state, got == 1, "%s of %s", s, f.id)
		}
		g := c["connpool.fleet.demand"].Data.(metricdata.Gauge[float64])
		want := attribute.NewSet(fleetAttrs(f)...)
		i := slices.IndexFunc(g.DataPoints, func(dp metricdata.DataPoint[float64]) bool { return dp.Attributes.Equals(&want) })
		require.GreaterOrEqual(t, i, 0)
		assert.Equal(t, f.demand, g.DataPoints[i].Value)
	}
	for name, kind := range map[string]sdkmetric.InstrumentKind{
		"connpool.fleet.grant": sdkmetric.InstrumentKindObservableUpDownCounter, "connpool.fleet.state": sdkmetric.InstrumentKindObservableUpDownCounter,
		"connpool.fleet.budget": sdkmetric.InstrumentKindObservableGauge, "connpool.fleet.demand": sdkmetric.InstrumentKindObservableGauge,
		"connpool.fleet.fences": sdkmetric.InstrumentKindObservableCounter,
	} {
		got, ok := h.kind(name)
		assert.True(t, ok, name)
		assert.Equal(t, kind, got, name)
	}

	b.set("fenced", 1)
	c = h.collect(t)
	got, _ := c.int64Point("connpool.fleet.state", fleetAttrs(b, attribute.String("connpool.fleet.state", "fenced"))...)
	assert.Equal(t, int64(1), got)
	got, _ = c.int64Point("connpool.fleet.grant", fleetAttrs(b)...)
	assert.Equal(t, int64(1), got)

	require.NoError(t, regA.Unregister())
	require.NoError(t, regB.Unregister())
	c = h.collect(t)
	_, ok := c.int64Point("connpool.fleet.grant", fleetAttrs(a)...)
	assert.False(t, ok, "unregistered")

	_, err = h.m.ObserveFleet()
	assert.Error(t, err, "no member")
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
