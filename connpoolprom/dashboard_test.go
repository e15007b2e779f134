package connpoolprom_test

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
)

// TestDashboard checks that dashboard.json parses, that every metric its
// queries name is one the collector exports (a histogram only through
// its _bucket, _sum or _count series), and that the panels the package
// doc promises are there.
func TestDashboard(t *testing.T) {
	raw, err := os.ReadFile("dashboard.json")
	require.NoError(t, err)
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(raw, &dash))
	require.NotEmpty(t, dash.Panels)

	exported := make(map[string]dto.MetricType)
	// A pool with an address of a host name: the backend metrics too.
	s := connpool.Stats{Addresses: []connpool.AddressStats{{Address: "10.0.0.1:1"}}}
	for _, mf := range gather(t, &fixedCollector{addr: connpool.Addr{Network: "tcp", Address: "a:1"}, stats: s}) {
		exported[mf.GetName()] = mf.GetType()
	}

	// Every query of the JSON: the panels' and the template variables'.
	var all any
	require.NoError(t, json.Unmarshal(raw, &all))
	var strs []string
	var walk func(key string, v any)
	walk = func(key string, v any) {
		switch v := v.(type) {
		case string:
			if key == "expr" || key == "query" || key == "definition" {
				strs = append(strs, v)
			}
		case []any:
			for _, e := range v {
				walk(key, e)
			}
		case map[string]any:
			for k, e := range v {
				walk(k, e)
			}
		}
	}
	walk("", all)

	name := regexp.MustCompile(`connpool_[a-z_]+`)
	used := make(map[string]bool)
	for _, s := range strs {
		for _, n := range name.FindAllString(s, -1) {
			used[n] = true
			if typ, ok := exported[n]; ok {
				assert.NotEqual(t, dto.MetricType_HISTOGRAM, typ, "%s is a histogram: query its _bucket, _sum or _count (in %q)", n, s)
				continue
			}
			base, ok := histogramBase(n)
			assert.True(t, ok && exported[base] == dto.MetricType_HISTOGRAM, "%s is not exported (in %q)", n, s)
		}
	}
	for _, n := range []string{
		"connpool_connections", "connpool_max_connections", // in use vs max
		"connpool_wait_seconds_bucket", // wait p50 / p99
		"connpool_gets_total",          // hit ratio
		"connpool_dials_total", "connpool_dial_errors_total",
		"connpool_closed_total", // closes by reason
		"connpool_waiting_requests",
		"connpool_leaks_total",
		"connpool_backend_connections", // conns per backend
	} {
		assert.True(t, used[n], "no panel queries %s", n)
	}

	var exprs int
	for _, p := range dash.Panels {
		assert.NotEmpty(t, p.Title)
		for _, tg := range p.Targets {
			assert.NotEmpty(t, tg.Expr, "panel %q", p.Title)
			exprs++
		}
	}
	assert.Positive(t, exprs)
}

// histogramBase strips the suffix of a histogram's series.
func histogramBase(series string) (string, bool) {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(series, suffix); ok {
			return base, true
		}
	}
	return "", false
}

// TestDashboardForAFleet pins what an on-call engineer needs of the
// dashboard (issue 21): a Get error-rate panel, from the failure results
// of connpool_gets_total over all of them; job and instance variables
// that every query filters by, as a service runs as many replicas; a hit
// ratio over successful Gets only; and, on each panel of the use-time
// histogram, the option it needs.
func TestDashboardForAFleet(t *testing.T) {
	raw, err := os.ReadFile("dashboard.json")
	require.NoError(t, err)
	var dash struct {
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Title       string `json:"title"`
			Description string `json:"description"`
			Targets     []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(raw, &dash))

	vars := make(map[string]string)
	for _, v := range dash.Templating.List {
		vars[v.Name] = v.Definition
	}
	require.Contains(t, vars, "job")
	require.Contains(t, vars, "instance")
	assert.Contains(t, vars["instance"], `job=~"$job"`, "instances of the chosen jobs")
	assert.Contains(t, vars["pool"], `instance=~"$instance"`, "pools of the chosen instances")

	errorRate := false
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, sel := range []string{`job=~"$job"`, `instance=~"$instance"`} {
				assert.Equal(t, strings.Count(tg.Expr, "connpool_"), strings.Count(tg.Expr, sel),
					"panel %q: every selector filters by %s: %s", p.Title, sel, tg.Expr)
			}
			if strings.Contains(tg.Expr, `connpool_gets_total{result!~"hit|miss"`) && strings.Contains(tg.Expr, "/") {
				errorRate = true
			}
			if strings.Contains(tg.Expr, `result="hit"`) {
				assert.Contains(t, tg.Expr, `result=~"hit|miss"`, "panel %q: the hit ratio is over successful Gets", p.Title)
			}
			if strings.Contains(tg.Expr, "connpool_use_seconds") {
				assert.Contains(t, p.Title, "WithUseTimeMetrics", "panel %q needs the option", p.Title)
			}
		}
	}
	assert.True(t, errorRate, "a panel shows the Get error rate")
}
