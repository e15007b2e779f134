// Command fleetdemo shows a fleet budget at work: it starts its own
// redis-server on a loopback port, a backend that counts the conns open at
// every instant, and 4 member processes (this binary re-executed) sharing a
// budget of B conns to it. It shifts demand between them, kills one with
// SIGKILL, and prints each member's grant and conns in use and the
// backend's total against B over time; -html writes the same as a chart.
//
//	go run ./cmd/fleetdemo -budget 20 -ttl 2s -html fleet.html
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/connpoolfleet"
)

const memberEnv = "FLEETDEMO_MEMBER"

// report is what a member process writes on stdout every 100ms.
type report struct {
	State string `json:"state"`
	Grant int    `json:"grant"`
	InUse int    `json:"inuse"`
}

func main() {
	if os.Getenv(memberEnv) != "" {
		if err := member(); err != nil {
			fmt.Fprintln(os.Stderr, "member:", err)
			os.Exit(1)
		}
		return
	}
	budget := flag.Int("budget", 20, "the budget B shared by the members")
	ttl := flag.Duration("ttl", 2*time.Second, "the lease TTL (renew every TTL/3)")
	phase := flag.Duration("phase", 6*time.Second, "how long each phase of demand lasts")
	htmlOut := flag.String("html", "", "write a chart of the run to this HTML file")
	flag.Parse()
	if err := run(*budget, *ttl, *phase, *htmlOut); err != nil {
		fmt.Fprintln(os.Stderr, "fleetdemo:", err)
		os.Exit(1)
	}
}

// sample is one row of the run: per member grant and in use, and the
// backend's total.
type sample struct {
	At    time.Duration
	Grant [4]int
	InUse [4]int
	Total int
}

func run(budget int, ttl, phase time.Duration, htmlOut string) error {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return errors.New("redis-server is not on PATH: install it (Debian: apt-get install redis-server) and run again")
	}
	// Stop on SIGINT or SIGTERM, and clean up: the members, redis-server.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	redisAddr, stopRedis, err := startRedis()
	if err != nil {
		return err
	}
	defer stopRedis()
	backend, err := startBackend()
	if err != nil {
		return err
	}
	defer backend.close()

	self, err := os.Executable()
	if err != nil {
		return err
	}
	ms := make([]*proc, 4)
	for i := range ms {
		ms[i], err = startMember(self, i, redisAddr, backend.addr(), budget, ttl)
		if err != nil {
			return err
		}
		defer ms[i].kill()
	}
	// Phases: member 0 busy; then member 1 busy and 0 idle; then member 1
	// is killed; then all busy.
	phases := []struct {
		say     string
		workers [4]int
		kill    int
	}{
		{"member 0 busy, the others idle", [4]int{30, 1, 1, 1}, -1},
		{"demand moves to member 1", [4]int{1, 30, 1, 1}, -1},
		{"member 1 is killed (SIGKILL) while busy; 2 and 3 get busy", [4]int{1, 30, 20, 20}, 1},
		{"everyone busy", [4]int{20, 0, 20, 20}, -1},
	}
	var samples []sample
	var marks []mark
	start := time.Now()
	fmt.Printf("B=%d TTL=%v; columns: member grant/in-use, then the backend's open conns\n", budget, ttl)
	for _, ph := range phases {
		fmt.Printf("-- %v: %s\n", time.Since(start).Round(100*time.Millisecond), ph.say)
		marks = append(marks, mark{At: time.Since(start), Say: ph.say})
		for i, m := range ms {
			m.send(fmt.Sprintf("workers %d", ph.workers[i]))
		}
		if ph.kill >= 0 {
			ms[ph.kill].kill()
		}
		end := time.Now().Add(phase)
		for time.Now().Before(end) {
			select {
			case <-ctx.Done():
				return errors.New("interrupted")
			case <-time.After(250 * time.Millisecond):
			}
			s := sample{At: time.Since(start), Total: backend.total()}
			var cols []string
			for i, m := range ms {
				r := m.last()
				s.Grant[i], s.InUse[i] = r.Grant, r.InUse
				cols = append(cols, fmt.Sprintf("m%d %-8s %2d/%2d", i, r.State, r.Grant, r.InUse))
			}
			samples = append(samples, s)
			fmt.Printf("%6v  %s  backend %2d/%d\n", s.At.Round(10*time.Millisecond), strings.Join(cols, "  "), s.Total, budget)
		}
	}
	fmt.Printf("peak at the backend: %d of B=%d\n", backend.peak(), budget)
	if htmlOut != "" {
		if err := writeChart(htmlOut, budget, ttl, backend.peak(), samples, marks); err != nil {
			return err
		}
		fmt.Println("chart:", htmlOut)
	}
	return nil
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func startRedis() (string, func(), error) {
	addr, err := freePort()
	if err != nil {
		return "", nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	for range 100 {
		if c.Ping(context.Background()).Err() == nil {
			return addr, stop, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	return "", nil, fmt.Errorf("redis-server on %s did not answer", addr)
}

// backend counts conns open at every instant.
type backend struct {
	ln        net.Listener
	open, top atomic.Int64
}

func startBackend() (*backend, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &backend{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := b.open.Add(1)
			for {
				p := b.top.Load()
				if n <= p || b.top.CompareAndSwap(p, n) {
					break
				}
			}
			go func() {
				_, _ = io.Copy(io.Discard, c)
				b.open.Add(-1)
				_ = c.Close()
			}()
		}
	}()
	return b, nil
}

func (b *backend) addr() string { return b.ln.Addr().String() }
func (b *backend) total() int   { return int(b.open.Load()) }
func (b *backend) peak() int    { return int(b.top.Load()) }
func (b *backend) close()       { _ = b.ln.Close() }

type proc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	mu    sync.Mutex
	r     report
	dead  bool
}

func startMember(self string, i int, redisAddr, backendAddr string, budget int, ttl time.Duration) (*proc, error) {
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), memberEnv+"=1", "FD_ID=m"+strconv.Itoa(i), "FD_REDIS="+redisAddr,
		"FD_BACKEND="+backendAddr, "FD_BUDGET="+strconv.Itoa(budget), "FD_TTL="+ttl.String())
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, stdin: stdin}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var r report
			if json.Unmarshal(sc.Bytes(), &r) == nil {
				p.mu.Lock()
				p.r = r
				p.mu.Unlock()
			}
		}
	}()
	return p, nil
}

func (p *proc) send(s string) { _, _ = io.WriteString(p.stdin, s+"\n") }

func (p *proc) last() report {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dead {
		return report{State: "killed"}
	}
	return p.r
}

func (p *proc) kill() {
	p.mu.Lock()
	dead := p.dead
	p.dead = true
	p.mu.Unlock()
	if !dead {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		_ = p.cmd.Wait()
	}
}

// member is one member process: a pool against the backend, joined to the
// budget, with workers that borrow a conn for 10ms in a loop; stdin sets
// how many work ("workers N").
func member() error {
	ttl, err := time.ParseDuration(os.Getenv("FD_TTL"))
	if err != nil {
		return err
	}
	budget, _ := strconv.Atoi(os.Getenv("FD_BUDGET"))
	gate := connpoolfleet.NewGate()
	pool, err := connpool.New("tcp", os.Getenv("FD_BACKEND"),
		connpool.WithDialer(gate.Dialer(nil)),
		connpool.WithDialBackoff(5*time.Millisecond, 50*time.Millisecond))
	if err != nil {
		return err
	}
	defer pool.Close()
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv("FD_REDIS"), ContextTimeoutEnabled: true})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	m, err := connpoolfleet.Join(ctx, rdb, "demo", budget, []connpoolfleet.Target{connpoolfleet.PoolTarget(pool)},
		connpoolfleet.WithTTL(ttl), connpoolfleet.WithGate(gate), connpoolfleet.WithID(os.Getenv("FD_ID")))
	cancel()
	if err != nil {
		return err
	}
	defer func() { _ = m.Leave(context.Background()) }()
	var workers atomic.Int64
	for i := range 40 {
		go func() {
			for {
				if int64(i) >= workers.Load() {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
				c, err := pool.Get(ctx)
				cancel()
				if err != nil {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				time.Sleep(10 * time.Millisecond)
				_ = c.Close()
			}
		}()
	}
	go func() {
		enc := json.NewEncoder(os.Stdout)
		for {
			s := m.Stats()
			_ = enc.Encode(report{State: s.State.String(), Grant: min(s.Grant, s.Target), InUse: pool.Stats().InUse})
			time.Sleep(100 * time.Millisecond)
		}
	}()
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if n, ok := strings.CutPrefix(sc.Text(), "workers "); ok {
			w, _ := strconv.Atoi(n)
			workers.Store(int64(w))
		}
	}
	return nil
}

// mark is the start of a phase, drawn on the chart.
type mark struct {
	At  time.Duration
	Say string
}

var chart = template.Must(template.New("chart").Parse(`<!doctype html><meta charset="utf-8"><title>fleet budget</title>
<style>body{font-family:sans-serif;max-width:1000px} .l{fill:none;stroke-width:1.5} text{font-size:11px}</style>
<h1>Fleet budget: 4 processes share B={{.Budget}} conns through Redis</h1>
<p>Each member's grant (solid) and conns in use (dotted, same colour), and the backend's open conns (black) against B (red),
sampled every 250ms. Lease TTL {{.TTL}} (renew every TTL/3). Peak at the backend: <b>{{.Peak}}</b> of B={{.Budget}}.</p>
<svg width="980" height="380" viewBox="0 0 980 380">
{{range .YTicks}}<line x1="40" x2="940" y1="{{.Y}}" y2="{{.Y}}" stroke="#eee"/><text x="34" y="{{.Y}}" text-anchor="end" dy="4">{{.Label}}</text>
{{end}}{{range .XTicks}}<text x="{{.X}}" y="336" text-anchor="middle">{{.Label}}</text>
{{end}}<text x="490" y="352" text-anchor="middle">seconds</text>
{{range .Marks}}<line x1="{{.X}}" x2="{{.X}}" y1="20" y2="320" stroke="#999" stroke-dasharray="2 4"/><text x="{{.X}}" y="14" dx="3">{{.N}}</text>
{{end}}<line x1="40" x2="940" y1="{{.BY}}" y2="{{.BY}}" stroke="red"/><text x="944" y="{{.BY}}" dy="4" fill="red">B</text>
{{range .Lines}}<polyline class="l" stroke="{{.Color}}" {{if .Dotted}}stroke-dasharray="3 3"{{end}} points="{{.Points}}"/>
{{end}}</svg>
<p>{{range .Lines}}{{if not .Dotted}}<span style="color:{{.Color}}">■ {{.Name}}</span> {{end}}{{end}}</p>
<ol>{{range .Marks}}<li>{{.At}}: {{.Say}}</li>{{end}}</ol>`))

func writeChart(path string, budget int, ttl time.Duration, peak int, ss []sample, ms []mark) error {
	if len(ss) == 0 {
		return errors.New("no samples")
	}
	end := ss[len(ss)-1].At
	top := budget + budget/4
	x := func(d time.Duration) float64 { return 40 + 900*float64(d)/float64(end) }
	y := func(v int) float64 { return 20 + 300*(1-float64(v)/float64(top)) }
	type line struct {
		Name, Color, Points string
		Dotted              bool
	}
	type tick struct {
		X, Y  float64
		Label string
	}
	pts := func(f func(s sample) int) string {
		var b strings.Builder
		for _, s := range ss {
			fmt.Fprintf(&b, "%.1f,%.1f ", x(s.At), y(f(s)))
		}
		return b.String()
	}
	colors := []string{"#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd"}
	var lines []line
	for i := range 4 {
		lines = append(lines,
			line{Name: fmt.Sprintf("member %d", i), Color: colors[i], Points: pts(func(s sample) int { return s.Grant[i] })},
			line{Name: fmt.Sprintf("member %d in use", i), Color: colors[i], Dotted: true, Points: pts(func(s sample) int { return s.InUse[i] })})
	}
	lines = append(lines, line{Name: "backend open", Color: "black", Points: pts(func(s sample) int { return s.Total })})
	var yt, xt []tick
	step := max(1, budget/4)
	for v := 0; v <= top; v += step {
		yt = append(yt, tick{Y: y(v), Label: fmt.Sprint(v)})
	}
	for sec := 0; time.Duration(sec)*time.Second <= end; sec += 5 {
		xt = append(xt, tick{X: x(time.Duration(sec) * time.Second), Label: fmt.Sprint(sec)})
	}
	type markAt struct {
		X   float64
		N   int
		At  time.Duration
		Say string
	}
	var marks []markAt
	for i, m := range ms {
		marks = append(marks, markAt{X: x(m.At), N: i + 1, At: m.At.Round(100 * time.Millisecond), Say: m.Say})
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return chart.Execute(f, map[string]any{"Budget": budget, "TTL": ttl, "Peak": peak, "BY": y(budget),
		"Lines": lines, "YTicks": yt, "XTicks": xt, "Marks": marks})
}
