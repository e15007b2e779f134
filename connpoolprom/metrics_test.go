package connpoolprom_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
)

// TestHistogramConversion pins the conversion of connpool's per-bucket
// counts to Prometheus' cumulative buckets, end to end through the text
// format: each bound in seconds, counts that add up, +Inf = count with
// the overflow bucket, the sum in seconds.
func TestHistogramConversion(t *testing.T) {
	var h connpool.Histogram
	h.Buckets[0] = 1                         // ≤ 50µs
	h.Buckets[3] = 2                         // (200µs, 400µs]
	h.Buckets[15] = 5                        // (819.2ms, 1.6384s]
	h.Buckets[connpool.HistogramBuckets] = 4 // above 1.6384s
	h.Sum = 12500 * time.Millisecond
	c := &fixedCollector{addr: connpool.Addr{Network: "tcp", Address: "db:5432"}, stats: connpool.Stats{Name: "db", WaitTime: h}}

	const l = `address="db:5432",network="tcp",pool="db"`
	expected := `# HELP connpool_wait_seconds How long Gets that queued waited, one observation per Get however many times it queued: the count is connpool_waits_total.
# TYPE connpool_wait_seconds histogram
connpool_wait_seconds_bucket{` + l + `,le="5e-05"} 1
connpool_wait_seconds_bucket{` + l + `,le="0.0001"} 1
connpool_wait_seconds_bucket{` + l + `,le="0.0002"} 1
connpool_wait_seconds_bucket{` + l + `,le="0.0004"} 3
connpool_wait_seconds_bucket{` + l + `,le="0.0008"} 3
connpool_wait_seconds_bucket{` + l + `,le="0.0016"} 3
connpool_wait_seconds_bucket{` + l + `,le="0.0032"} 3
connpool_wait_seconds_bucket{` + l + `,le="0.0064"} 3
connpool_wait_seconds_bucket{` + l + `,le="0.0128"} 3
connpool_wait_seconds_bucket{` + l + `,le="0.0256"} 3
connpool_wait_seconds_bucket{` + l + `,le="0.0512"} 3
connpool_wait_seconds_bucket{` + l + `,le="0.1024"} 3
connpool_wait_seconds_bucket{` + l + `,le="0.2048"} 3
connpool_wait_seconds_bucket{` + l + `,le="0.4096"} 3
connpool_wait_seconds_bucket{` + l + `,le="0.8192"} 3
connpool_wait_seconds_bucket{` + l + `,le="1.6384"} 8
connpool_wait_seconds_bucket{` + l + `,le="+Inf"} 12
connpool_wait_seconds_sum{` + l + `} 12.5
connpool_wait_seconds_count{` + l + `} 12
`
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(expected), "connpool_wait_seconds"))
}

// distinctStats returns Stats whose every number differs from every
// other, so that a sample taken from the wrong field shows.
func distinctStats() connpool.Stats {
	s := connpool.Stats{Name: "made-up"}
	v := reflect.ValueOf(&s).Elem()
	n := int64(0)
	next := func() int64 { n += 7; return n }
	for i := range v.NumField() {
		f := v.Field(i)
		switch {
		case f.Kind() == reflect.Int || f.Kind() == reflect.Int64:
			f.SetInt(next())
		case f.Type() == reflect.TypeFor[connpool.Histogram]():
			b := f.FieldByName("Buckets")
			for j := range b.Len() {
				b.Index(j).SetUint(uint64(next()))
			}
			f.FieldByName("Sum").SetInt(next() * int64(time.Millisecond))
		}
	}
	for i, addr := range []string{"10.0.0.1:5432", "10.0.0.2:5432"} {
		a := connpool.AddressStats{Address: addr, BackingOff: i == 0, Draining: i == 1, Ejected: i == 0}
		a.InUse, a.Idle, a.Dialing = int(next()), int(next()), int(next())
		a.Open = a.InUse + a.Idle + int(next()) // some closing
		a.Dials, a.DialErrors, a.Ejections = next(), next(), next()
		s.Addresses = append(s.Addresses, a)
	}
	return s
}

// TestMadeUpStats checks every sample against the field it must come
// from, with Stats whose fields all differ: a close reason, a state or a
// result mapped to the wrong field fails it.
func TestMadeUpStats(t *testing.T) {
	a := connpool.Addr{Network: "unix", Address: "/run/db.sock"}
	s := distinctStats()
	assertSamplesMatch(t, want(a, s), samples(t, gather(t, &fixedCollector{addr: a, stats: s})))
}

// TestEveryStatsFieldReachesAScrape changes each field of Stats in turn
// and checks that the scrape changes: a field added to Stats and not
// exported fails it. Two fields are exported through others: WaitDuration
// is connpool_wait_seconds_sum, taken from WaitTime.Sum, and OpenConns is
// the sum of the in_use, idle and closing states (TestScrapeMatchesStats
// checks that both agree).
func TestEveryStatsFieldReachesAScrape(t *testing.T) {
	a := connpool.Addr{Network: "tcp", Address: "a:1"}
	base := distinctStats()
	before := samples(t, gather(t, &fixedCollector{addr: a, stats: base}))
	typ := reflect.TypeFor[connpool.Stats]()
	for i := range typ.NumField() {
		name := typ.Field(i).Name
		t.Run(name, func(t *testing.T) {
			s := base
			f := reflect.ValueOf(&s).Elem().Field(i)
			if strings.HasPrefix(name, "Adaptive") {
				// The cap the adaptive cap chose is connpool_max_connections;
				// its bounds are settings, and its baseline would add a
				// series to every pool of every scrape for the few pools
				// that set WithAdaptiveMaxConns.
				t.Skipf("Stats.%s is not exported", name)
			}
			switch {
			case f.Kind() == reflect.String:
				f.SetString(f.String() + "'")
			case f.Kind() == reflect.Int || f.Kind() == reflect.Int64:
				f.SetInt(f.Int() + 1)
			case f.Type() == reflect.TypeFor[connpool.Histogram]():
				b := f.FieldByName("Buckets").Index(0)
				b.SetUint(b.Uint() + 1)
			case name == "Addresses":
				// Each field of each address reaches a sample: changing
				// any of them changes the scrape.
				for j := range s.Addresses {
					for _, change := range []func(*connpool.AddressStats){
						func(a *connpool.AddressStats) { a.Address += "0" },
						func(a *connpool.AddressStats) { a.Open++ },
						func(a *connpool.AddressStats) { a.InUse++ },
						func(a *connpool.AddressStats) { a.Idle++ },
						func(a *connpool.AddressStats) { a.Dialing++ },
						func(a *connpool.AddressStats) { a.Dials++ },
						func(a *connpool.AddressStats) { a.DialErrors++ },
						func(a *connpool.AddressStats) { a.BackingOff = !a.BackingOff },
						func(a *connpool.AddressStats) { a.Draining = !a.Draining },
						func(a *connpool.AddressStats) { a.Ejected = !a.Ejected },
						func(a *connpool.AddressStats) { a.Ejections++ },
					} {
						s.Addresses = slices.Clone(base.Addresses)
						change(&s.Addresses[j])
						after := samples(t, gather(t, &fixedCollector{addr: a, stats: s}))
						assert.NotEqual(t, before, after, "a change to Stats.Addresses[%d] reaches no sample", j)
					}
				}
				return
			default:
				t.Fatalf("Stats.%s has a type this test does not know: %v", name, f.Type())
			}
			after := samples(t, gather(t, &fixedCollector{addr: a, stats: s}))
			if name == "WaitDuration" || name == "OpenConns" {
				assert.Equal(t, before, after)
				return
			}
			assert.NotEqual(t, before, after, "Stats.%s reaches no sample", name)
		})
	}
}

// TestCloseReasonsAllExported checks that connpool_closed_total has a
// reason label for every CloseReason the core names, and no other.
func TestCloseReasonsAllExported(t *testing.T) {
	names := make(map[string]bool)
	for r := connpool.CloseReason(1); !strings.HasPrefix(r.String(), "CloseReason("); r++ {
		if r != connpool.CloseDialFailed { // an event's reason only: failed dials are dial_errors_total
			names[r.String()] = true
		}
	}
	exported := make(map[string]bool)
	for _, mf := range gather(t, &fixedCollector{addr: connpool.Addr{Network: "tcp", Address: "a:1"}}) {
		if mf.GetName() != "connpool_closed_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "reason" {
					exported[lp.GetValue()] = true
				}
			}
		}
	}
	assert.Equal(t, names, exported)
}
