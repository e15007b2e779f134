package main

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// phaseVerdict is how the adaptive cap did in one phase against the best
// fixed cap: the fixed cap with the highest goodput in that phase.
type phaseVerdict struct {
	Phase      string
	Best       string
	GoodRatio  float64 // adaptive goodput / best's
	P99Ratio   float64 // adaptive p99 / best's
	CapMedian  int     // the adaptive cap's median over the phase's second half
	ServerC    int
	CapWithin  bool // CapMedian within 25% of ServerC
	GoodputMet bool // GoodRatio >= 0.95
	P99Met     bool // P99Ratio <= p99Bar
}

// p99Bar is the most the adaptive cap's p99 may be, over the best fixed
// cap's (issue 21's bar, in both workloads).
const p99Bar = 1.2

func (res *sizingResult) verdicts() []phaseVerdict {
	ad := res.adaptive()
	var out []phaseVerdict
	for p, ph := range res.cfg.phases {
		var best *sizingRun
		for _, r := range res.runs[:len(res.runs)-1] {
			if best == nil || r.phases[p].ok > best.phases[p].ok ||
				(r.phases[p].ok == best.phases[p].ok && r.phases[p].percentile(.99) < best.phases[p].percentile(.99)) {
				best = r
			}
		}
		a, b := &ad.phases[p], &best.phases[p]
		v := phaseVerdict{Phase: ph.name, Best: best.name, ServerC: res.cfg.c * ph.cTimes}
		if b.ok > 0 {
			v.GoodRatio = float64(a.ok) / float64(b.ok)
		}
		if bp := b.percentile(.99); bp > 0 {
			v.P99Ratio = float64(a.percentile(.99)) / float64(bp)
		}
		if len(a.caps) > 0 {
			caps := slices.Clone(a.caps)
			slices.Sort(caps)
			v.CapMedian = caps[len(caps)/2]
		}
		v.CapWithin = math.Abs(float64(v.CapMedian-v.ServerC)) <= 0.25*float64(v.ServerC)
		v.GoodputMet, v.P99Met = v.GoodRatio >= 0.95, v.P99Ratio > 0 && v.P99Ratio <= p99Bar
		out = append(out, v)
	}
	return out
}

// followTime is how long after the server's C doubled the adaptive cap
// first came within 25% of the new C, or -1 if it never did.
func (res *sizingResult) followTime() time.Duration {
	p := slices.IndexFunc(res.cfg.phases, func(ph sizingPhase) bool { return ph.cTimes > 1 })
	from := res.cfg.phaseStart(p)
	target := 2 * res.cfg.c
	for _, tp := range res.adaptive().timeline {
		if tp.at >= from && math.Abs(float64(tp.cap-target)) <= 0.25*float64(target) {
			return tp.at - from
		}
	}
	return -1
}

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "NO"
}

// printSizing prints both workloads' tables.
func printSizing(w io.Writer, res *sizingResult) {
	printWorkload(w, res)
	if res.closed != nil {
		fmt.Fprintln(w)
		printWorkload(w, res.closed)
	}
}

// intro is the first line of a workload's table.
func (res *sizingResult) intro() string {
	cfg := res.cfg
	return fmt.Sprintf("sizing, %s: server of concurrency C=%d, lognormal service (mean %v, sigma %.1f; measured %v a request, so capacity %.0f/s); deadline %v from arrival, of which Get at most %v; %v per phase after a %v warm-up; every configuration at once, each with a server of its own",
		cfg.workload(), cfg.c, cfg.service, cfg.sigma, cfg.effective.Round(10*time.Microsecond), float64(cfg.c)/cfg.effective.Seconds(), cfg.deadline, cfg.getBudget, cfg.phase, cfg.warmup.Round(time.Millisecond))
}

func printWorkload(w io.Writer, res *sizingResult) {
	cfg := res.cfg
	fmt.Fprintf(w, "%s\n\n", res.intro())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tpool\toffered/s\tgoodput/s\tp50\tp95\tp99\twaits\tGet timeouts\treq timeouts\tcap\t")
	for p, ph := range cfg.phases {
		for _, r := range res.runs {
			pr := &r.phases[p]
			fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.0f\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t\n", ph.name, r.name,
				pr.offeredRate(cfg.phaseLen(p)), pr.goodput(cfg.phaseLen(p)),
				short(pr.percentile(.5)), short(pr.percentile(.95)), short(pr.percentile(.99)),
				pr.waits, pr.getTimeouts, pr.reqTimeouts, r.capText(pr))
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "phase\tbest fixed\tgoodput vs best\t>=95%%\tp99 vs best\t<=%.1fx\tadaptive cap (median)\tserver C\twithin 25%%\t\n", p99Bar)
	for _, v := range res.verdicts() {
		fmt.Fprintf(tw, "%s\t%s\t%.1f%%\t%s\t%.2fx\t%s\t%d\t%d\t%s\t\n", v.Phase, v.Best, 100*v.GoodRatio, yes(v.GoodputMet),
			v.P99Ratio, yes(v.P99Met), v.CapMedian, v.ServerC, yes(v.CapWithin))
	}
	tw.Flush()
	if d := res.followTime(); d >= 0 {
		fmt.Fprintf(w, "\nafter C doubled to %d, the adaptive cap was within 25%% of it in %v\n", 2*cfg.c, d.Round(time.Millisecond))
	} else {
		fmt.Fprintf(w, "\nafter C doubled to %d, the adaptive cap never came within 25%% of it\n", 2*cfg.c)
	}
}

// capRange shows the adaptive cap in a phase's second half: its median,
// and its range.
func capRange(caps []int) string {
	if len(caps) == 0 {
		return "-"
	}
	s := slices.Clone(caps)
	slices.Sort(s)
	return fmt.Sprintf("%d (%d-%d)", s[len(s)/2], s[0], s[len(s)-1])
}

// sizingReportRow is one row of the report's sizing table.
type sizingReportRow struct {
	Phase, Pool, Offered, Goodput, P50, P95, P99, Cap string
	Waits, GetTimeouts, ReqTimeouts                   int64
	First                                             bool // first row of its phase
}

type sizingReport struct {
	Intro    string
	Rows     []sizingReportRow
	Verdicts []phaseVerdict
	Follow   string
	Chart    template.HTML
}

// sizingReportData is the report's sizing section: the open loop's, and
// after it the closed loop's, whose phases are named "closed: ...".
func sizingReportData(res *sizingResult) *sizingReport {
	rep := workloadReport(res, "")
	if c := res.closed; c != nil {
		cr := workloadReport(c, "closed: ")
		rep.Intro += " Then: " + cr.Intro
		rep.Chart += cr.Chart
		rep.Rows = append(rep.Rows, cr.Rows...)
		rep.Verdicts = append(rep.Verdicts, cr.Verdicts...)
		rep.Follow += " Closed loop: " + cr.Follow
	}
	return rep
}

func workloadReport(res *sizingResult, prefix string) *sizingReport {
	rep := &sizingReport{Intro: res.intro(), Chart: sizingChart(res)}
	for p, ph := range res.cfg.phases {
		for i, r := range res.runs {
			pr := &r.phases[p]
			rep.Rows = append(rep.Rows, sizingReportRow{Phase: prefix + ph.name, Pool: r.name, First: i == 0,
				Offered: fmt.Sprintf("%.0f", pr.offeredRate(res.cfg.phaseLen(p))), Goodput: fmt.Sprintf("%.0f", pr.goodput(res.cfg.phaseLen(p))),
				P50: short(pr.percentile(.5)), P95: short(pr.percentile(.95)), P99: short(pr.percentile(.99)),
				Waits: pr.waits, GetTimeouts: pr.getTimeouts, ReqTimeouts: pr.reqTimeouts, Cap: r.capText(pr)})
		}
	}
	rep.Verdicts = res.verdicts()
	for i := range rep.Verdicts {
		rep.Verdicts[i].Phase = prefix + rep.Verdicts[i].Phase
	}
	if d := res.followTime(); d >= 0 {
		rep.Follow = fmt.Sprintf("After C doubled to %d, the adaptive cap was within 25%% of it in %v.", 2*res.cfg.c, d.Round(time.Millisecond))
	} else {
		rep.Follow = fmt.Sprintf("After C doubled to %d, the adaptive cap never came within 25%% of it.", 2*res.cfg.c)
	}
	return rep
}

// sizingChart draws the adaptive cap, its conns in use and the server's C
// over the run, with the phases marked.
func sizingChart(res *sizingResult) template.HTML {
	const width, height, left, right, top, bottom = 940, 300, 50, 20, 30, 40
	tl := res.adaptive().timeline
	if len(tl) == 0 {
		return "<p>no timeline recorded</p>"
	}
	total := res.cfg.phaseStart(len(res.cfg.phases))
	peak := 0
	for _, tp := range tl {
		peak = max(peak, tp.cap, tp.inUse, tp.serverC)
	}
	step := niceStep(float64(peak) * 1.1 / 4)
	yMax := 4 * step
	x := func(d time.Duration) float64 {
		return left + float64(d)/float64(total)*float64(width-left-right)
	}
	y := func(v float64) float64 { return top + (1-v/yMax)*float64(height-top-bottom) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-size="12">`, width, height)
	for i := 0; i <= 4; i++ {
		v := yMax * float64(i) / 4
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/><text x="%d" y="%.1f" text-anchor="end" fill="#555">%.0f</text>`,
			left, y(v), width-right, y(v), left-6, y(v)+4, v)
	}
	for p, ph := range res.cfg.phases {
		px := x(res.cfg.phaseStart(p))
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ccc" stroke-dasharray="3 3"/><text x="%.1f" y="%d" fill="#555">%s</text>`,
			px, top, px, height-bottom, px+4, height-bottom+16, template.HTMLEscapeString(ph.name))
	}
	series := []struct {
		name  string
		color string
		v     func(timePoint) int
	}{
		{"server C", "#59a14f", func(tp timePoint) int { return tp.serverC }},
		{"in use", "#f28e2b", func(tp timePoint) int { return tp.inUse }},
		{"adaptive cap", "#4e79a7", func(tp timePoint) int { return tp.cap }},
	}
	for i, s := range series {
		var pts []string
		for _, tp := range tl {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(tp.at), y(float64(s.v(tp)))))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="%d" points="%s"/>`, s.color, 1+i/2, strings.Join(pts, " "))
		fmt.Fprintf(&b, `<rect x="%d" y="8" width="12" height="10" fill="%s"/><text x="%d" y="17">%s</text>`, left+i*120, s.color, left+i*120+16, s.name)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#555">conns over %v</text></svg>`, width-200, 17, total)
	return template.HTML(b.String())
}

// capText is the cap column of run r in a phase: the fixed cap, or the
// adaptive cap's median and range.
func (r *sizingRun) capText(pr *phaseResult) string {
	if r.fixed == 0 {
		return capRange(pr.caps)
	}
	return fmt.Sprint(r.fixed)
}
