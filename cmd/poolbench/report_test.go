package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHelpSaysWhatRuns pins issue 22: -h said the default run's sizing
// phases last 2.5s while the run used 2s, and cut the -ping default off
// mid-word. The help now reads both from what runs.
func TestHelpSaysWhatRuns(t *testing.T) {
	var stderr bytes.Buffer
	_, err := parseFlags([]string{"-h"}, &stderr)
	require.True(t, errors.Is(err, flag.ErrHelp))
	help := stderr.String()
	assert.Contains(t, help, fmt.Sprintf("%v in the default run", sizingPhaseShort))
	assert.Contains(t, help, fmt.Sprintf("default %v with -scenario sizing", sizingPhaseFull))
	assert.Contains(t, help, fmt.Sprintf("%q", defaultPing), "the -ping default, whole")
	assert.Len(t, defaultPing, 64, "the request is 64 bytes, as the help says")

	cfg, err := parseFlags(nil, &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, defaultPing, string(cfg.ping))
	assert.Contains(t, help, fmt.Sprintf("The default run: %d scenarios of -d each", len(scenarios(cfg, true))))
}

// TestNothingServedShowsADash pins issue 22: a configuration that served
// nothing showed latencies of 0.0µs, as if it were the fastest.
func TestNothingServedShowsADash(t *testing.T) {
	assert.Equal(t, "-", short(0))
	assert.Equal(t, "-", short((&scenario{}).percentile(.99)))
	assert.Equal(t, "12.0µs", short(12*time.Microsecond))
}

// TestReportChartsTheGainAndLabelsTheBars pins issue 22: the report did
// not show the TLS gain, and its latency bars carried no values.
func TestReportChartsTheGainAndLabelsTheBars(t *testing.T) {
	sc := func(name, group string, size int, tls bool, requests int64, lat time.Duration) *scenario {
		return &scenario{name: name, group: group, poolSize: size, tls: tls, requests: requests, elapsed: time.Second,
			latencies: []time.Duration{lat}}
	}
	all := []*scenario{
		sc("dial per request", "dial", 0, false, 2111, 4720*time.Microsecond),
		sc("TLS dial per request", "dial", 0, true, 974, 117*time.Millisecond),
		sc("connpool size=32", "pool", 32, false, 33708, 320*time.Microsecond),
		sc("connpool TLS size=32", "pool", 32, true, 37203, 435*time.Microsecond),
		{name: "raw conn per client", group: "raw"}, // served nothing
	}
	path := filepath.Join(t.TempDir(), "report.html")
	require.NoError(t, writeReport(path, &config{}, "test", all, nil))
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	html := string(b)
	assert.Contains(t, html, "TLS: 974 → 37,203 req/s, 38x")
	assert.Contains(t, html, "plain TCP: 2,111 → 33,708 req/s, 16x")
	assert.Contains(t, html, ">117.00ms</text>", "a latency bar's value is written beside it")
	assert.Contains(t, html, ">320.0µs</text>")
	assert.Contains(t, html, "served nothing")
	assert.NotContains(t, html, ">0.0µs<")

	var out bytes.Buffer
	printTable(&out, all)
	assert.Contains(t, out.String(), "TLS: 974 req/s with a handshake per request, 37,203 req/s from connpool TLS size=32: 38x")
}

// TestSizingNotesExplainTheVerdictsAndTheCollapse pins issue 22: the
// verdict columns were not explained, nor why the uncapped pool's
// goodput collapses at 100% load, the lesson of the run.
func TestSizingNotesExplainTheVerdictsAndTheCollapse(t *testing.T) {
	res := &sizingResult{cfg: newSizingConfig(8, time.Second)}
	at := -1
	for p, ph := range sizingPhases {
		if ph.load == 1 && ph.cTimes == 1 {
			at = p
		}
	}
	require.GreaterOrEqual(t, at, 0, "a phase at 100% of C")
	for _, fixed := range []int{8, 128, 0} {
		r := &sizingRun{name: fmt.Sprintf("fixed %d", fixed), fixed: fixed, phases: make([]phaseResult, len(sizingPhases))}
		for p := range r.phases {
			r.phases[p] = phaseResult{offered: 800, ok: 780, latencies: []time.Duration{time.Millisecond}}
		}
		res.runs = append(res.runs, r)
	}
	res.runs[1].phases[at] = phaseResult{offered: 800, ok: 0, reqTimeouts: 790}

	var out bytes.Buffer
	printSizingNotes(&out, res)
	text := out.String()
	for _, col := range []string{"best fixed:", "goodput vs best:", "p99 vs best:", "adaptive cap (median):", "server C:"} {
		assert.Equal(t, 1, strings.Count(text, col), "one sentence for %s", col)
	}
	assert.Contains(t, text, "Why fixed 128 collapses at 100% load (0% of fixed 8's goodput, 790 of 800 requests timed out waiting for the server)")

	res.runs[1].phases[at].ok = 700 // held up: nothing to explain
	assert.Empty(t, collapseNote(res))
}
