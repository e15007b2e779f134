package main

import (
	"fmt"
	"html/template"
	"math"
	"os"
	"strings"
	"time"
)

// The report is one self-contained HTML file: inline SVG charts and CSS,
// no scripts and nothing fetched, so it opens offline.

type reportRow struct {
	Name                      string
	RPS                       string
	P50, P95, P99             string
	Dials, Errors             int64
	Hits, Misses, Waits, Open string
}

type reportData struct {
	When, Where, Load string
	LatencyChart      template.HTML
	ThroughputChart   template.HTML
	GainChart         template.HTML
	Rows              []reportRow
	Summary           string
	Saturated         []reportRow // the saturated scenarios, also in Rows
	SaturatedLines    []string
	SaturatedClients  int
	Sizing            *sizingReport // nil when the sizing scenario did not run
	VerdictLegend     []string      // what each verdict column means
	Collapse          string        // why the uncapped pool's goodput collapses, or ""
}

var reportTmpl = template.Must(template.New("report").Funcs(template.FuncMap{"mul100": func(v float64) float64 { return 100 * v }}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>connpool poolbench report</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:980px;color:#222}
h1{font-size:1.5em} h2{font-size:1.15em;margin-top:2em}
table{border-collapse:collapse;font-size:.9em} td,th{padding:.3em .7em;border-bottom:1px solid #ddd;text-align:right}
td:first-child,th:first-child{text-align:left} .meta{color:#555} svg{display:block}
</style></head><body>
<h1>connpool poolbench</h1>
<p class="meta">{{.When}} · {{.Where}} · {{.Load}}</p>
{{if .Rows}}<p><strong>{{.Summary}}</strong></p>
{{if .GainChart}}<h2>What a pool buys: a dial per request beside connpool</h2>
{{.GainChart}}{{end}}
<h2>Latency percentiles by scenario (log scale)</h2>
{{.LatencyChart}}
<h2>Throughput by pool size</h2>
{{.ThroughputChart}}
{{if .SaturatedLines}}<h2>Saturated: {{.SaturatedClients}} clients on a few conns</h2>
<p>What connpool's guarantees cost under saturation, beside a plain buffered-channel pool of the same size (pre-dialed conns, no health checks) doing the same requests.</p>
<ul>{{range .SaturatedLines}}<li>{{.}}</li>{{end}}</ul>
<table><tr><th>scenario</th><th>req/s</th><th>p50</th><th>p95</th><th>p99</th><th>errors</th><th>waits</th></tr>
{{range .Saturated}}<tr><td>{{.Name}}</td><td>{{.RPS}}</td><td>{{.P50}}</td><td>{{.P95}}</td><td>{{.P99}}</td><td>{{.Errors}}</td><td>{{.Waits}}</td></tr>
{{end}}</table>
{{end}}<h2>All figures</h2>
<table><tr><th>scenario</th><th>req/s</th><th>p50</th><th>p95</th><th>p99</th><th>dials</th><th>errors</th><th>pool hits</th><th>misses</th><th>waits</th><th>open</th></tr>
{{range .Rows}}<tr><td>{{.Name}}</td><td>{{.RPS}}</td><td>{{.P50}}</td><td>{{.P95}}</td><td>{{.P99}}</td><td>{{.Dials}}</td><td>{{.Errors}}</td><td>{{.Hits}}</td><td>{{.Misses}}</td><td>{{.Waits}}</td><td>{{.Open}}</td></tr>
{{end}}</table>
{{end}}{{with .Sizing}}<h2>Sizing: fixed pool sizes and the adaptive cap</h2>
<p>{{.Intro}}</p>
<p>The adaptive cap (WithAdaptiveMaxConns), the conns it had in use, and the server's C, over the measured phases:</p>
{{.Chart}}
<table><tr><th>phase</th><th>best fixed</th><th>goodput vs best</th><th>p99 vs best</th><th>adaptive cap (median, 2nd half)</th><th>server C</th></tr>
{{range .Verdicts}}<tr><td>{{.Phase}}</td><td>{{.Best}}</td><td>{{printf "%.1f%%" (mul100 .GoodRatio)}}</td><td>{{printf "%.2fx" .P99Ratio}}</td><td>{{.CapMedian}}</td><td>{{.ServerC}}</td></tr>
{{end}}</table>
<ul class="meta">{{range $.VerdictLegend}}<li>{{.}}</li>{{end}}</ul>
{{with $.Collapse}}<p><strong>{{.}}</strong></p>{{end}}<p>{{.Follow}}</p>
<table><tr><th>phase</th><th>pool</th><th>offered/s</th><th>goodput/s</th><th>p50</th><th>p95</th><th>p99</th><th>waits</th><th>Get timeouts</th><th>request timeouts</th><th>cap</th></tr>
{{range .Rows}}<tr{{if .First}} style="border-top:2px solid #999"{{end}}><td>{{.Phase}}</td><td>{{.Pool}}</td><td>{{.Offered}}</td><td>{{.Goodput}}</td><td>{{.P50}}</td><td>{{.P95}}</td><td>{{.P99}}</td><td>{{.Waits}}</td><td>{{.GetTimeouts}}</td><td>{{.ReqTimeouts}}</td><td>{{.Cap}}</td></tr>
{{end}}</table>
{{end}}</body></html>
`))

func writeReport(path string, cfg *config, where string, all []*scenario, sizing *sizingResult) error {
	data := reportData{
		When:            time.Now().Format(time.RFC1123),
		Where:           where,
		Load:            fmt.Sprintf("%d clients, %s per scenario", cfg.load.concurrency, loadText(cfg.load)),
		LatencyChart:    latencyChart(all),
		ThroughputChart: throughputChart(all),
		GainChart:       gainChart(all),
	}
	for _, s := range all {
		r := reportRow{Name: s.name, RPS: fmt.Sprintf("%.0f", s.rps()),
			P50: short(s.percentile(.5)), P95: short(s.percentile(.95)), P99: short(s.percentile(.99)),
			Dials: s.dials, Errors: s.errors, Hits: "-", Misses: "-", Waits: "-", Open: "-"}
		if st := s.stats; st != nil {
			r.Hits, r.Misses = fmt.Sprint(st.Hits), fmt.Sprint(st.Misses)
			r.Waits, r.Open = fmt.Sprint(st.WaitCount), fmt.Sprint(st.OpenConns)
		}
		data.Rows = append(data.Rows, r)
		if s.group == "chan" || s.group == "saturated" {
			data.Saturated = append(data.Saturated, r)
		}
	}
	data.SaturatedLines, data.SaturatedClients = saturatedLines(all), saturatedClients
	if sizing != nil {
		data.Sizing = sizingReportData(sizing)
		data.VerdictLegend, data.Collapse = verdictLegend, collapseNote(sizing)
	}
	if dial, best := find(all, "dial", false), bestPool(all); dial != nil && best != nil && dial.rps() > 0 {
		data.Summary = fmt.Sprintf("%s serves %.1fx the requests/s of a dial per request.", best.name, best.rps()/dial.rps())
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := reportTmpl.Execute(f, data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func loadText(l load) string {
	if l.requests > 0 {
		return fmt.Sprintf("%d requests", l.requests)
	}
	return l.duration.String()
}

var seriesColors = []string{"#4e79a7", "#f28e2b", "#e15759"}

// latencyChart draws grouped horizontal bars of p50, p95 and p99 for every
// scenario, on a log scale so that a dial and a pooled request both show.
func latencyChart(all []*scenario) template.HTML {
	const left, width, barH, gap, top = 240, 800, 10, 14, 30
	lo, hi := math.Inf(1), 0.0
	for _, s := range all {
		for _, q := range []float64{.5, .95, .99} {
			if v := float64(s.percentile(q)) / 1e3; v > 0 {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	if hi == 0 {
		return "<p>no latencies recorded</p>"
	}
	minExp, maxExp := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if lo < 2*math.Pow(10, minExp) {
		minExp-- // keep the shortest bar visible
	}
	if maxExp == minExp {
		maxExp++
	}
	x := func(us float64) float64 {
		return left + (math.Log10(math.Max(us, math.Pow(10, minExp)))-minExp)/(maxExp-minExp)*(width-left-70)
	}
	rowH := 3*barH + gap
	height := top + len(all)*rowH + 30
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-size="12">`, width, height)
	for e := minExp; e <= maxExp; e++ {
		px := x(math.Pow(10, e))
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`, px, top-5, px, height-25)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" fill="#555">%s</text>`, px, height-8, short(time.Duration(math.Pow(10, e)*1e3)))
	}
	for i, name := range []string{"p50", "p95", "p99"} {
		fmt.Fprintf(&b, `<rect x="%d" y="8" width="12" height="10" fill="%s"/><text x="%d" y="17">%s</text>`, left+i*70, seriesColors[i], left+i*70+16, name)
	}
	for i, s := range all {
		y := top + i*rowH
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`, left-8, y+barH*2, template.HTMLEscapeString(s.name))
		if s.requests == 0 {
			fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#555">served nothing</text>`, left+4, y+barH*2)
			continue
		}
		for j, q := range []float64{.5, .95, .99} {
			d := s.percentile(q)
			w := x(float64(d)/1e3) - left
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"><title>%s %s: %s</title></rect>`,
				left, y+j*barH, math.Max(w, 1), barH-1, seriesColors[j], template.HTMLEscapeString(s.name), []string{"p50", "p95", "p99"}[j], short(d))
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="9" fill="#333">%s</text>`, left+math.Max(w, 1)+4, y+j*barH+barH-2, short(d))
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// throughputChart draws a bar per pool size, with the raw conn (the
// ceiling) and a dial per request drawn as reference lines.
func throughputChart(all []*scenario) template.HTML {
	const width, height, left, bottom, top = 740, 310, 70, 40, 30
	var bars []*scenario
	for _, s := range all {
		if s.group == "pool" && !s.tls {
			bars = append(bars, s)
		}
	}
	raw, dial := find(all, "raw", false), find(all, "dial", false)
	peak := 0.0
	for _, s := range append(append([]*scenario{}, bars...), raw, dial) {
		if s != nil {
			peak = math.Max(peak, s.rps())
		}
	}
	if peak == 0 || len(bars) == 0 {
		return "<p>no pool scenarios</p>"
	}
	step := niceStep(peak * 1.05 / 4)
	peak = 4 * step
	y := func(v float64) float64 { return top + (1-v/peak)*float64(height-top-bottom) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-size="12">`, width, height)
	for i := 0; i <= 4; i++ {
		v := peak * float64(i) / 4
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/><text x="%d" y="%.1f" text-anchor="end" fill="#555">%.0f</text>`,
			left, y(v), width-10, y(v), left-6, y(v)+4, v)
	}
	slot := float64(width-left-20) / float64(len(bars))
	for i, s := range bars {
		bx := float64(left) + float64(i)*slot + slot*0.2
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s: %.0f req/s</title></rect>`,
			bx, y(s.rps()), slot*0.6, y(0)-y(s.rps()), seriesColors[0], template.HTMLEscapeString(s.name), s.rps())
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">size %d</text>`, bx+slot*0.3, height-bottom+16, s.poolSize)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#fff">%.0f</text>`, bx+slot*0.3, y(s.rps())+16, s.rps())
	}
	// The ceiling (a raw conn per client) and the floor (a dial per
	// request) as dashed lines, named in a legend above the chart.
	legendX := left + 90
	for _, ref := range []struct {
		s     *scenario
		color string
	}{{raw, "#59a14f"}, {dial, "#e15759"}} {
		if ref.s == nil {
			continue
		}
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s" stroke-dasharray="6 4" stroke-width="2"/>`,
			left, y(ref.s.rps()), width-10, y(ref.s.rps()), ref.color)
		label := fmt.Sprintf("%s: %.0f req/s", ref.s.name, ref.s.rps())
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-dasharray="6 4" stroke-width="2"/><text x="%d" y="%d" fill="%s">%s</text>`,
			legendX, top-10, legendX+24, top-10, ref.color, legendX+30, top-6, ref.color, template.HTMLEscapeString(label))
		legendX += 30 + 7*len(label) + 30
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#555">requests/s</text></svg>`, left-60, top-6)
	return template.HTML(b.String())
}

// niceStep rounds v up to 1, 2 or 5 times a power of ten, for axis ticks.
func niceStep(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// gainChart draws, for plain TCP and for TLS, the requests/s of a dial per
// request beside connpool's (its fastest pool; with TLS there is one), each bar labelled with its
// value and the pair with the gain: the one figure a newcomer came for.
// It is empty when neither pair ran.
func gainChart(all []*scenario) template.HTML {
	type pair struct {
		label      string
		dial, pool *scenario
	}
	var pairs []pair
	for _, tls := range []bool{false, true} {
		dial, pool := find(all, "dial", tls), largestPool(all, tls)
		if !tls {
			pool = bestPool(all)
		}
		if dial != nil && pool != nil && dial.rps() > 0 {
			pairs = append(pairs, pair{map[bool]string{false: "plain TCP", true: "TLS"}[tls], dial, pool})
		}
	}
	if len(pairs) == 0 {
		return ""
	}
	const left, width, barH, top = 240, 800, 18, 10
	right := float64(width - 200) // room for the label of the longest bar
	rowH := 2*barH + 26
	height := top + len(pairs)*rowH
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-size="12">`, width, height)
	for i, pr := range pairs {
		// Each pair on its own linear scale: the dial's bar is the sliver
		// it is beside the pool's.
		peak := math.Max(pr.dial.rps(), pr.pool.rps())
		y := top + i*rowH
		for j, s := range []*scenario{pr.dial, pr.pool} {
			w := math.Max(1, s.rps()/peak*(right-left))
			by := y + j*barH
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`, left-8, by+barH-5, template.HTMLEscapeString(s.name))
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`, left, by, w, barH-3, []string{"#e15759", "#4e79a7"}[j])
			fmt.Fprintf(&b, `<text x="%.1f" y="%d">%s req/s</text>`, left+w+6, by+barH-5, thousands(s.rps()))
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-weight="bold">%s: %s → %s req/s, %.0fx</text>`, left, y+2*barH+12,
			pr.label, thousands(pr.dial.rps()), thousands(pr.pool.rps()), pr.pool.rps()/pr.dial.rps())
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// largestPool returns the pool scenario of the largest size, with or
// without TLS.
func largestPool(all []*scenario, tls bool) *scenario {
	var out *scenario
	for _, s := range all {
		if s.group == "pool" && s.tls == tls && (out == nil || s.poolSize > out.poolSize) {
			out = s
		}
	}
	return out
}

// thousands formats v rounded, with commas: 37203 as "37,203".
func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// verdictLegend says, one sentence each, what the columns of the sizing
// verdicts mean, for the table and the report.
var verdictLegend = []string{
	"best fixed: the fixed pool size with the most replies within the deadline in that phase, the size you would pick knowing the load in advance.",
	"goodput vs best: the adaptive cap's replies within the deadline as a share of the best fixed size's (>=95%: whether it reached 95%).",
	"p99 vs best: the adaptive cap's 99th-percentile latency, arrival to reply, over the best fixed size's (<=1.2x: whether it stayed within 20%, issue 21's bar).",
	"adaptive cap (median): the median of the adaptive cap over the second half of the phase, once it had time to settle.",
	"server C: how many requests the server serves at once in that phase, the size beyond which requests only queue at the server (within 25%: whether the adaptive cap's median came that close).",
}

// collapseNote explains, with its figures, why the largest fixed pool (in
// effect uncapped) serves next to nothing at 100% load, when it does; ""
// when its goodput held up.
func collapseNote(res *sizingResult) string {
	at := -1
	for p, ph := range sizingPhases {
		if ph.load == 1 && ph.cTimes == 1 {
			at = p
		}
	}
	var big, best *sizingRun
	for _, r := range res.runs {
		if r.fixed == 0 {
			continue
		}
		if big == nil || r.fixed > big.fixed {
			big = r
		}
	}
	if at < 0 || big == nil {
		return ""
	}
	for _, r := range res.runs {
		if r.fixed > 0 && (best == nil || r.phases[at].ok > best.phases[at].ok) {
			best = r
		}
	}
	pr := &big.phases[at]
	if best == big || best.phases[at].ok == 0 || float64(pr.ok) >= 0.5*float64(best.phases[at].ok) {
		return ""
	}
	return fmt.Sprintf("Why %s collapses at 100%% load (%.0f%% of %s's goodput, %d of %d requests timed out waiting for the server): "+
		"in the 200%% phase it sent every request to the server, whose queue grew far past the %v deadline; at 100%% the server has no spare capacity "+
		"to work that backlog off, and it still serves the requests whose callers gave up, so nearly every reply comes late. "+
		"A capped pool keeps the excess waiting in Get, where it times out without adding work at the server.",
		big.name, 100*float64(pr.ok)/float64(best.phases[at].ok), best.name, pr.reqTimeouts, pr.offered, res.cfg.deadline)
}
