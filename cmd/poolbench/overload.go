package main

import (
	"cmp"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/connpool/connpool"
)

// The overload comparison (-scenario overload): the sizing scenario's
// open loop (its server, its lognormal service times, its Poisson
// arrivals, its deadline of 200ms per request of which Get may take
// 100ms) at 90%, 200% and 100% of the server's capacity, against pools
// capped at the server's C, one for each queue policy (WithQueuePolicy):
// first come, first served (the default), deadline admission, adaptive
// LIFO with CoDel, and both. Every pool runs at the same time, each with a
// server of its own, with the same arrivals.
//
// The service times are drawn by each server in the order it serves, from
// one sequence per phase, the same for every server (sizingServer.reseed),
// not carried by the requests as in the sizing scenario. At 200% every
// pool keeps its C conns busy, and the orders serve different halves of
// the arrivals. With a time carried by each request, a policy's goodput
// over FIFO's there was the mean service time of the half FIFO served
// over that of the half the policy served: a draw of the fixed seed, not
// an effect of the order, which cannot see a request's service time (in
// a model of that phase without pool overhead, LIFO over FIFO was 100.0%
// on average over 1,000 seeds, with a standard deviation of 1.1%, and
// 98.4% with the seed the runs used; the runs measured 97-100%, with the
// same utilisation for every server). Drawn in serving order, the servers
// of a phase do the same work for the same busy time, and the goodputs
// differ by what the policies do: idle conns, slow hand-offs, work on
// requests given up, replies past the deadline. printOverloadServers
// shows these for each server.
//
// At 200% the queue grows until Gets time out: first come, first served
// then serves the Gets that waited longest, near their deadline; the
// policies should serve as many requests within their deadline (goodput)
// with a p99 of the requests served at most half of it, and cost nothing
// at 90%.
//
// Goodput is shown two ways: by the phase the request arrived in, as the
// sizing table counts it, and by the phase its reply ended in, which the
// verdicts use. They differ at the phase boundaries, where the orders
// differ by design: when 200% gives way to 100%, first come, first served
// spends the next phase's first ~100ms on the 200% backlog, and a LIFO
// queue serves the new arrivals and lets that backlog go; counted by
// arrival, LIFO then loses about 100ms of the 200% phase's replies (some
// 2-3% of a 5s phase) that FIFO moved into the next phase, without doing
// less useful work.

// overloadPhases: 90% first, so that a policy that reacts when it should
// not shows before the overload.
var overloadPhases = []sizingPhase{{"90%", 0.9, 1, 1}, {"200%", 2, 1, 1}, {"100%", 1, 1, 1}}

// overloadPolicies are the configurations compared, FIFO first.
var overloadPolicies = []struct {
	name string
	q    connpool.QueuePolicy
}{
	{"FIFO", connpool.QueuePolicy{}},
	{"deadline", connpool.QueuePolicy{DeadlineAdmission: true}},
	{"adaptive LIFO", connpool.QueuePolicy{AdaptiveLIFO: true}},
	{"both", connpool.QueuePolicy{DeadlineAdmission: true, AdaptiveLIFO: true}},
}

// Overload phase length by default.
const overloadPhase = 5 * time.Second

// The bars: at 200% load, goodput at least FIFO's and p99 at most
// overloadP99Bar of it; at 90%, goodput within overloadCalmBar of FIFO's.
const (
	overloadP99Bar  = 0.5
	overloadCalmBar = 0.05
)

// overloadConfig returns cfg for the overload comparison: its phases, and
// service times the servers draw.
func overloadConfig(cfg sizingConfig) sizingConfig {
	cfg.phases, cfg.serverDraws = overloadPhases, true
	return cfg
}

// runOverload runs the overload comparison.
func runOverload(cfg sizingConfig) (*sizingResult, error) {
	cfg = overloadConfig(cfg)
	eff, err := calibrate(cfg, len(overloadPolicies))
	if err != nil {
		return nil, err
	}
	cfg.effective = eff
	res := &sizingResult{cfg: cfg}
	for _, pol := range overloadPolicies {
		var opts []connpool.Option
		if pol.q != (connpool.QueuePolicy{}) {
			opts = append(opts, connpool.WithQueuePolicy(pol.q))
		}
		res.runs = append(res.runs, &sizingRun{name: pol.name, fixed: cfg.c, opts: opts})
	}
	if err := runAll(cfg, res.runs); err != nil {
		return nil, err
	}
	return res, nil
}

// runOverloadOnly runs the overload comparison and prints its tables.
func runOverloadOnly(cfg *config, stdout, stderr io.Writer) error {
	sc := overloadConfig(newSizingConfig(cfg.sizingC, cmp.Or(cfg.sizingLen, overloadPhase)))
	fmt.Fprintf(stderr, "overload: %d queue policies at once, %v\n", len(overloadPolicies), sc.duration())
	res, err := runOverload(sc)
	if err != nil {
		return err
	}
	printOverload(stdout, res)
	return nil
}

// overloadVerdict compares a policy with FIFO in one phase.
type overloadVerdict struct {
	phase, policy       string
	goodRatio, p99Ratio float64 // the policy's over FIFO's
	met                 bool
}

// overloadVerdicts judges every policy against FIFO at 200% and 90%.
func (res *sizingResult) overloadVerdicts() []overloadVerdict {
	var out []overloadVerdict
	fifo := res.runs[0]
	for p, ph := range res.cfg.phases {
		if ph.load != 2 && ph.load != 0.9 {
			continue
		}
		f := &fifo.phases[p]
		for _, r := range res.runs[1:] {
			pr := &r.phases[p]
			v := overloadVerdict{phase: ph.name, policy: r.name,
				goodRatio: ratio(float64(pr.okEnded), float64(f.okEnded)), p99Ratio: ratio(float64(pr.percentile(.99)), float64(f.percentile(.99)))}
			if ph.load == 2 {
				v.met = v.goodRatio >= 1 && v.p99Ratio <= overloadP99Bar
			} else {
				v.met = v.goodRatio >= 1-overloadCalmBar
			}
			out = append(out, v)
		}
	}
	return out
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func printOverload(w io.Writer, res *sizingResult) {
	cfg := res.cfg
	fmt.Fprintf(w, "overload, %s: pools capped at C=%d against a server of concurrency C, lognormal service (mean %v, sigma %.1f; measured %v a request, so capacity %.0f/s), drawn by each server as it serves, the same sequence for every server in a phase; deadline %v from arrival, of which Get at most %v (the Get's context deadline); %v per phase after a %v warm-up; every policy at once, each with a server of its own\n\n",
		cfg.workload(), cfg.c, cfg.service, cfg.sigma, cfg.effective.Round(10*time.Microsecond), float64(cfg.c)/cfg.effective.Seconds(),
		cfg.deadline, cfg.getBudget, cfg.phase, cfg.warmup.Round(time.Millisecond))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tpolicy\toffered/s\tgoodput/s by end\tby arrival\tp50\tp99\tshed at once\tshed waiting\tGet timeouts\treq timeouts\t")
	for p, ph := range cfg.phases {
		for _, r := range res.runs {
			pr := &r.phases[p]
			fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.0f\t%.0f\t%s\t%s\t%d\t%d\t%d\t%d\t\n", ph.name, r.name,
				pr.offeredRate(cfg.phaseLen(p)), float64(pr.okEnded)/cfg.phaseLen(p).Seconds(), pr.goodput(cfg.phaseLen(p)),
				short(pr.percentile(.5)), short(pr.percentile(.99)),
				pr.shedDeadline, pr.shedOverload, pr.getTimeouts, pr.reqTimeouts)
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "phase\tpolicy\tgoodput (by end) vs FIFO\tp99 vs FIFO\tbar\tmet\t\n")
	for _, v := range res.overloadVerdicts() {
		bar := fmt.Sprintf("goodput >= 100%%, p99 <= %.1fx", overloadP99Bar)
		if v.phase == "90%" {
			bar = fmt.Sprintf("goodput >= %.0f%%", 100*(1-overloadCalmBar))
		}
		fmt.Fprintf(tw, "%s\t%s\t%.1f%%\t%.2fx\t%s\t%s\t\n", v.phase, v.policy, 100*v.goodRatio, v.p99Ratio, bar, yes(v.met))
	}
	tw.Flush()
	fmt.Fprintln(w)
	printOverloadServers(w, res)
}

// printOverloadServers prints what each pool's server did in each phase,
// and the pools' conns: what tells a policy that loses goodput by
// idling its conns, wasting the server's work on requests given up, or
// slowing hand-offs, from one that serves other requests in as much
// time.
func printOverloadServers(w io.Writer, res *sizingResult) {
	cfg := res.cfg
	fmt.Fprintln(w, "the servers: requests whose slot ended in the phase, the slots' utilisation, the mean service time of those requests, the mean turnaround (a conn's time at the server between a reply and its next request), requests that waited for a slot at the server, and requests on a new conn")
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tpolicy\tserved/s\tutilisation\tmean service\tturnaround\tqueued at server\tnew conns\t")
	for p, ph := range cfg.phases {
		for _, r := range res.runs {
			s := &r.phases[p].srv
			fmt.Fprintf(tw, "%s\t%s\t%.1f\t%.1f%%\t%s\t%s\t%d\t%d\t\n", ph.name, r.name, float64(s.served)/cfg.phaseLen(p).Seconds(),
				100*s.utilisation, meanOf(s.serviceSum, s.served), meanOf(s.turnaround, s.turnarounds), s.queued, s.newConns)
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, r := range res.runs {
		s := r.stats
		fmt.Fprintf(w, "%s: %d dials, %d conns closed broken, %d Get timeouts in all\n", r.name, s.Dials, s.BrokenClosed, s.Timeouts)
	}
}

// meanOf returns sum/n to the microsecond, or "-" for none.
func meanOf(sum time.Duration, n int64) string {
	if n == 0 {
		return "-"
	}
	return (sum / time.Duration(n)).Round(time.Microsecond).String()
}
