package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/connpool/connpool"
)

// The sizing scenario: which pool size serves a backend best, and does
// the adaptive cap find it by itself?
//
// The backend (sizingServer) serves C requests at once, each for a
// lognormal service time (mean 20ms, sigma 0.5), and queues the rest first
// come, first served. Requests arrive open loop, Poisson, at a rate that
// steps through 50%, 90%, 200% and 100% of the server's capacity (C / mean
// service time); then the server's C doubles, and a last phase runs at 90%
// of the new capacity. Every configuration (fixed caps of C/2, C, 2C, 4C
// and 16C, and the adaptive cap between 1 and 16C, starting, as a pool
// does, at the default cap) runs at the same time, each against a server
// of its own, with the same arrival sequence, after a warm-up at 50% that
// is not measured.
//
// Beside this open loop runs a closed loop (sizing's second workload,
// after the first): 3C clients, each sending its next request as soon as
// its last one ends, as a service's worker pool does, against a server
// whose C is steady, then doubled (two phases long), then halved back.
// Each client draws its requests' service times from a sequence of its
// own, the same for every configuration. In a closed loop a cap above C
// moves the queue from the pool to the server and costs nothing; a cap
// below C costs throughput in proportion.
//
// A request that would wait forever is cut off: each has a deadline of 10
// mean service times (200ms) from its arrival, of which at most half may be
// spent in Get. A Get that runs out of its budget is a Get timeout; a
// request that gets a conn but no reply by its deadline is a request
// timeout (its conn is marked unusable and closed, and the server still
// does the work). Goodput counts the replies within the deadline, by the
// phase the request arrived in; latency is from arrival to reply, Get
// included.

// sizingConfig parameterizes a sizing run.
type sizingConfig struct {
	c         int           // the server's concurrency
	phase     time.Duration // each phase's length
	warmup    time.Duration
	service   time.Duration // the mean of the lognormal sleep
	effective time.Duration // the mean time a request holds a server slot, measured: sleeps overshoot
	sigma     float64
	deadline  time.Duration
	getBudget time.Duration

	phases  []sizingPhase // the workload's phases
	clients int           // the closed loop's clients; 0: the open loop

	// serverDraws: the requests carry no service time; each server draws
	// them in the order it serves, from one sequence per phase, the same
	// for every configuration (the overload comparison; see overload.go).
	serverDraws bool
}

func newSizingConfig(c int, phase time.Duration) sizingConfig {
	return sizingConfig{c: c, phase: phase, warmup: min(3*time.Second, max(phase/2, 200*time.Millisecond)),
		service: 20 * time.Millisecond, sigma: 0.5, deadline: 200 * time.Millisecond, getBudget: 100 * time.Millisecond,
		phases: sizingPhases}
}

// closedLoop returns cfg for the closed-loop workload.
func (cfg sizingConfig) closedLoop() sizingConfig {
	cfg.phases, cfg.clients = closedPhases, 3*cfg.c
	return cfg
}

// workload names cfg's workload.
func (cfg sizingConfig) workload() string {
	if cfg.clients > 0 {
		return fmt.Sprintf("closed loop, %d clients", cfg.clients)
	}
	return "open loop, Poisson arrivals"
}

// duration is how long a run of cfg's workload takes, warm-up included.
func (cfg sizingConfig) duration() time.Duration { return cfg.warmup + cfg.phaseStart(len(cfg.phases)) }

// sizingPhase is one step of the load.
type sizingPhase struct {
	name     string
	load     float64 // of the server's capacity in the phase (open loop only)
	cTimes   int     // the server's concurrency, in multiples of C
	lenTimes int     // the phase's length, in phase lengths
}

// sizingPhases: the last is three phases long, so that the time the
// adaptive cap takes to follow the doubled C (allowed: 30s in the full
// run) weighs on its figures no more than it should.
var sizingPhases = []sizingPhase{
	{"50%", 0.5, 1, 1}, {"90%", 0.9, 1, 1}, {"200%", 2, 1, 1}, {"100%", 1, 1, 1}, {"2C, 90%", 0.9, 2, 3},
}

// closedPhases are the closed loop's: the doubled C runs two phases long.
var closedPhases = []sizingPhase{
	{"steady", 0, 1, 1}, {"C doubled", 0, 2, 2}, {"C halved", 0, 1, 1},
}

// phaseStart returns when phase p starts, since the end of the warm-up;
// phaseStart(len(cfg.phases)) is the end of the run.
func (cfg sizingConfig) phaseStart(p int) time.Duration {
	var d time.Duration
	for _, ph := range cfg.phases[:p] {
		d += time.Duration(ph.lenTimes) * cfg.phase
	}
	return d
}

// phaseLen returns phase p's length.
func (cfg sizingConfig) phaseLen(p int) time.Duration {
	return time.Duration(cfg.phases[p].lenTimes) * cfg.phase
}

// sizingRun is one configuration's run.
type sizingRun struct {
	name     string
	fixed    int               // the fixed cap, 0 for adaptive
	opts     []connpool.Option // more options for the pool (the overload comparison's queue policies)
	phases   []phaseResult
	timeline []timePoint // sampled every timelineStep
	stats    connpool.Stats
}

type phaseResult struct {
	offered, ok, getTimeouts, reqTimeouts int64
	shedDeadline, shedOverload            int64 // Gets the queue policy turned away (overload.go), not in getTimeouts
	okEnded                               int64 // replies within the deadline that ended in the phase, whenever their request arrived
	waits                                 int64
	srv                                   serverPhase     // what the server did in the phase
	latencies                             []time.Duration // sorted
	caps                                  []int           // the cap sampled in the phase's second half
}

func (r *phaseResult) percentile(q float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	i := int(q*float64(len(r.latencies))+0.5) - 1
	return r.latencies[min(max(i, 0), len(r.latencies)-1)]
}

// goodput is replies within the deadline per second of the phase.
func (r *phaseResult) goodput(phase time.Duration) float64 { return float64(r.ok) / phase.Seconds() }

// offeredRate is arrivals per second of the phase.
func (r *phaseResult) offeredRate(phase time.Duration) float64 {
	return float64(r.offered) / phase.Seconds()
}

type timePoint struct {
	at           time.Duration // since the end of the warm-up
	cap, inUse   int
	serverC      int
	waiting      int
	rateFraction float64
}

const timelineStep = 100 * time.Millisecond

// sizingResult is a whole sizing run.
type sizingResult struct {
	cfg    sizingConfig
	runs   []*sizingRun  // the fixed caps, then the adaptive cap
	closed *sizingResult // the closed loop, after the open one's; nil in it
}

func (res *sizingResult) adaptive() *sizingRun { return res.runs[len(res.runs)-1] }

// calibrate measures the time a request really holds a server slot, sleep
// overshoot and scheduling included, with as many servers busy at once as
// the run has configurations: the server's capacity, on which the loads
// are based, is C over that time.
func calibrate(cfg sizingConfig, servers int) (time.Duration, error) {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total time.Duration
		errs  []error
	)
	stop := time.Now().Add(400 * time.Millisecond)
	for range servers {
		wg.Go(func() {
			srv, err := startSizingServer(cfg.c, cfg.service, cfg.sigma, 3)
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			defer srv.close()
			var clients sync.WaitGroup
			for range 2 * cfg.c {
				clients.Go(func() {
					c, err := net.Dial("tcp", srv.addr())
					if err != nil {
						return
					}
					defer c.Close()
					buf := make([]byte, reqSize)
					for time.Now().Before(stop) {
						if _, err := c.Write(buf); err != nil {
							return
						}
						if _, err := io.ReadFull(c, buf); err != nil {
							return
						}
					}
				})
			}
			clients.Wait()
			mu.Lock()
			total += srv.meanService()
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return 0, errs[0]
	}
	if total == 0 {
		return 0, fmt.Errorf("calibration: no request served")
	}
	return total / time.Duration(servers), nil
}

// runSizing runs both workloads, the open loop then the closed loop,
// each with every configuration at once, and returns their results.
func runSizing(cfg sizingConfig) (*sizingResult, error) {
	eff, err := calibrate(cfg, 6)
	if err != nil {
		return nil, err
	}
	cfg.effective = eff
	res, err := runWorkload(cfg)
	if err != nil {
		return nil, err
	}
	if res.closed, err = runWorkload(cfg.closedLoop()); err != nil {
		return nil, fmt.Errorf("closed loop: %w", err)
	}
	return res, nil
}

// runWorkload runs cfg's workload with every configuration at once.
func runWorkload(cfg sizingConfig) (*sizingResult, error) {
	res := &sizingResult{cfg: cfg}
	for _, n := range []int{max(1, cfg.c/2), cfg.c, 2 * cfg.c, 4 * cfg.c, 16 * cfg.c} {
		res.runs = append(res.runs, &sizingRun{name: fmt.Sprintf("fixed %d", n), fixed: n})
	}
	res.runs = append(res.runs, &sizingRun{name: fmt.Sprintf("adaptive 1-%d", 16*cfg.c)})
	if err := runAll(cfg, res.runs); err != nil {
		return nil, err
	}
	return res, nil
}

// phaseAt returns the phase of an instant since the end of the warm-up,
// -1 in the warm-up, len(cfg.phases) after the end.
func (cfg sizingConfig) phaseAt(since time.Duration) int {
	if since < 0 {
		return -1
	}
	p := 0
	for p < len(cfg.phases) && since >= cfg.phaseStart(p+1) {
		p++
	}
	return p
}

// rate returns the arrivals per second and the server's concurrency in a
// phase (the warm-up runs as the first phase).
func (cfg sizingConfig) rate(ph int) (perSec float64, serverC int) {
	p := cfg.phases[max(ph, 0)]
	c := cfg.c * p.cTimes
	return p.load * float64(c) / cfg.effective.Seconds(), c
}

func (r *sizingRun) run(cfg sizingConfig, start time.Time) error {
	srv, err := startSizingServer(cfg.c, cfg.service, cfg.sigma, 1)
	if err != nil {
		return err
	}
	defer srv.close()
	srv.recordSpans()
	opt := connpool.WithAdaptiveMaxConns(1, 16*cfg.c)
	if r.fixed > 0 {
		opt = connpool.WithMaxConns(r.fixed)
	}
	pool, err := connpool.New("tcp", srv.addr(), append([]connpool.Option{opt, connpool.WithMaxConnecting(16 * cfg.c)}, r.opts...)...)
	if err != nil {
		return err
	}
	defer pool.Close()

	measured := start.Add(cfg.warmup)
	end := measured.Add(cfg.phaseStart(len(cfg.phases)))
	n := len(cfg.phases)
	var (
		ok, getTO, reqTO, offered = make([]atomic.Int64, n), make([]atomic.Int64, n), make([]atomic.Int64, n), make([]atomic.Int64, n)
		shedD, shedO, okEnded     = make([]atomic.Int64, n), make([]atomic.Int64, n), make([]atomic.Int64, n)
		mu                        sync.Mutex
		lat                       = make([][]time.Duration, n)
		reqs                      sync.WaitGroup
	)
	request := func(t0 time.Time, ph int, service time.Duration) {
		defer reqs.Done()
		ctx, cancel := context.WithDeadline(context.Background(), t0.Add(cfg.getBudget))
		c, err := pool.Get(ctx)
		cancel()
		if err != nil {
			switch {
			case ph < 0:
			case errors.Is(err, connpool.ErrShed) && errors.Is(err, context.DeadlineExceeded):
				shedD[ph].Add(1)
			case errors.Is(err, connpool.ErrShed):
				shedO[ph].Add(1)
			default:
				getTO[ph].Add(1)
			}
			return
		}
		buf := make([]byte, reqSize)
		if !cfg.serverDraws {
			binary.LittleEndian.PutUint64(buf, uint64(service))
		}
		err = c.SetDeadline(t0.Add(cfg.deadline))
		if err == nil {
			_, err = c.Write(buf)
		}
		if err == nil {
			_, err = c.Read(buf)
		}
		if err != nil {
			c.MarkUnusable()
			c.Close()
			if ph >= 0 {
				reqTO[ph].Add(1)
			}
			return
		}
		took := time.Since(t0)
		c.Close()
		if end := cfg.phaseAt(t0.Add(took).Sub(measured)); end >= 0 && end < n {
			okEnded[end].Add(1)
		}
		if ph >= 0 {
			ok[ph].Add(1)
			mu.Lock()
			lat[ph] = append(lat[ph], took)
			mu.Unlock()
		}
	}

	// The sampler: phase changes at the server, and the timeline.
	samplerDone := make(chan struct{})
	waitsAt := make([]int64, n+1)
	go func() {
		defer close(samplerDone)
		time.Sleep(time.Until(start))
		tk := time.NewTicker(timelineStep / 4)
		defer tk.Stop()
		cur, lastPoint := -1, time.Duration(-timelineStep)
		for now := range tk.C {
			since := now.Sub(measured)
			ph := cfg.phaseAt(since)
			if ph != cur {
				s := pool.Stats()
				for p := cur + 1; p <= ph && p <= n; p++ {
					if p >= 0 {
						waitsAt[p] = s.WaitCount
					}
				}
				cur = ph
				if ph < n {
					_, c := cfg.rate(ph)
					srv.setLimit(c)
					if cfg.serverDraws {
						srv.reseed(uint64(ph))
					}
				}
			}
			if ph >= n {
				return
			}
			if since >= 0 && since-lastPoint >= timelineStep {
				lastPoint = since.Truncate(timelineStep)
				s := pool.Stats()
				_, c := cfg.rate(ph)
				r.timeline = append(r.timeline, timePoint{at: since, cap: s.MaxConns, inUse: s.InUse, serverC: c, waiting: s.Waiting,
					rateFraction: cfg.phases[ph].load})
			}
		}
	}()

	if cfg.clients > 0 {
		// The closed loop: each client's requests carry the same
		// service times in every configuration.
		time.Sleep(time.Until(start))
		for i := range cfg.clients {
			reqs.Go(func() {
				services := rand.New(rand.NewPCG(uint64(i)+100, 2))
				for {
					t0 := time.Now()
					if !t0.Before(end) {
						return
					}
					ph := cfg.phaseAt(t0.Sub(measured))
					if ph >= 0 {
						offered[ph].Add(1)
					}
					reqs.Add(1)
					request(t0, ph, lognormal(services, cfg.service, cfg.sigma))
				}
			})
		}
	}
	// Open-loop arrivals: the same sequence for every configuration, each
	// with the same service time (see sizingServer).
	rng, services := rand.New(rand.NewPCG(7, 7)), rand.New(rand.NewPCG(1, 2))
	next := start
	for cfg.clients == 0 && next.Before(end) {
		ph := cfg.phaseAt(next.Sub(measured))
		perSec, _ := cfg.rate(ph)
		if d := time.Until(next); d > 500*time.Microsecond {
			time.Sleep(d)
		}
		if ph >= 0 {
			offered[ph].Add(1)
		}
		reqs.Add(1)
		go request(next, ph, lognormal(services, cfg.service, cfg.sigma))
		next = next.Add(time.Duration(rng.ExpFloat64() / perSec * float64(time.Second)))
	}
	reqs.Wait()
	<-samplerDone
	spans := srv.servedSpans()
	r.stats = pool.Stats()

	for p := range n {
		pr := phaseResult{offered: offered[p].Load(), ok: ok[p].Load(), getTimeouts: getTO[p].Load(), reqTimeouts: reqTO[p].Load(),
			shedDeadline: shedD[p].Load(), shedOverload: shedO[p].Load(), okEnded: okEnded[p].Load(),
			waits: waitsAt[p+1] - waitsAt[p], latencies: lat[p],
			srv: serverInPhase(spans, measured.Add(cfg.phaseStart(p)), measured.Add(cfg.phaseStart(p+1)), cfg.c)}
		slices.Sort(pr.latencies)
		half := cfg.phaseStart(p) + cfg.phaseLen(p)/2
		for _, tp := range r.timeline {
			if tp.at >= half && tp.at < cfg.phaseStart(p+1) {
				pr.caps = append(pr.caps, tp.cap)
			}
		}
		r.phases = append(r.phases, pr)
	}
	return nil
}

// runAll runs every configuration of a comparison at once, from one start,
// each against a server of its own, and returns the first error by name.
func runAll(cfg sizingConfig, runs []*sizingRun) error {
	start := time.Now().Add(50 * time.Millisecond) // one start for all
	var wg sync.WaitGroup
	errs := make([]error, len(runs))
	for i, r := range runs {
		wg.Go(func() { errs[i] = r.run(cfg, start) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("%s: %w", runs[i].name, err)
		}
	}
	return nil
}

// serverPhase is what a sizing server did in a phase: the work its pool
// gave it, whatever the pool's order.
type serverPhase struct {
	served      int64         // requests whose slot ended in the phase
	serviceSum  time.Duration // the service times of those requests
	utilisation float64       // of its C slots, over the phase
	// turnaround: the time a conn spent at the server between a reply
	// and its next request (the client reading the reply, Put, the
	// hand-off to the next Get and its write), summed over the requests
	// served whose conn had served one before.
	turnaround  time.Duration
	turnarounds int64
	queued      int64 // requests served that waited more than 200µs for a slot at the server
	newConns    int64 // requests served that were their conn's first
}

// serverInPhase sums spans over the phase from from to to, for a server
// of c slots.
func serverInPhase(spans []servedSpan, from, to time.Time, c int) serverPhase {
	var sp serverPhase
	var busy time.Duration
	for _, s := range spans {
		start, end := s.start, s.end
		if start.Before(from) {
			start = from
		}
		if end.After(to) {
			end = to
		}
		if b := end.Sub(start); b > 0 {
			busy += b
		}
		if s.end.Before(from) || !s.end.Before(to) {
			continue
		}
		sp.served++
		sp.serviceSum += s.service
		if s.first {
			sp.newConns++
		} else {
			sp.turnaround += s.idle
			sp.turnarounds++
		}
		if s.start.Sub(s.read) > 200*time.Microsecond {
			sp.queued++
		}
	}
	sp.utilisation = float64(busy) / float64(time.Duration(c)*to.Sub(from))
	return sp
}
