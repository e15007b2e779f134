package connpoolfleet_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/connpoolfleet"
)

// The test binary re-executed with helperEnv set is one member process: a
// pool against the count server, joined to the budget, with workers that
// borrow a conn for holdTime in a loop. It reads commands on stdin
// ("workers N", "budget N", "leave") and writes a JSON line per event and a
// stats line every 50ms on stdout.
const (
	helperEnv = "CONNPOOLFLEET_HELPER"
	holdTime  = 10 * time.Millisecond
)

// line is what a member process writes: Kind "s" for stats, "e" for an
// event, "left" after Leave.
type line struct {
	Kind     string `json:"k"`
	At       int64  `json:"at"`
	State    string `json:"state"`
	Old      string `json:"old,omitempty"`
	Grant    int    `json:"grant"`
	Target   int    `json:"target"`
	Caps     int    `json:"caps"`
	Open     int    `json:"open"`
	InUse    int    `json:"inuse"`
	LeaseEnd int64  `json:"lease_end"`
	Fences   int64  `json:"fences"`
	Budget   int    `json:"budget"`
}

func helperMain() int {
	env := func(k string) string { return os.Getenv("CPF_" + k) }
	atoi := func(k string) int { n, _ := strconv.Atoi(env(k)); return n }
	id := env("ID")
	ttl, _ := time.ParseDuration(env("TTL"))
	var outMu sync.Mutex
	enc := json.NewEncoder(os.Stdout)
	write := func(l line) {
		l.At = time.Now().UnixNano()
		outMu.Lock()
		_ = enc.Encode(l)
		outMu.Unlock()
	}

	gate := connpoolfleet.NewGate()
	pool, err := connpool.New("tcp", env("SERVER"),
		connpool.WithName(id),
		connpool.WithMaxConns(1),
		connpool.WithDialer(gate.Dialer(helloDial(id))),
		connpool.WithDialBackoff(5*time.Millisecond, 50*time.Millisecond),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	rdb := redis.NewClient(&redis.Options{
		Addr: env("REDIS"), DialTimeout: ttl / 6, ReadTimeout: ttl / 3, WriteTimeout: ttl / 3,
		ContextTimeoutEnabled: true, MaxRetries: -1,
	})
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	var member atomic.Pointer[connpoolfleet.Member]
	events := func(e connpoolfleet.Event) {
		l := line{Kind: "e", State: e.New.String(), Old: e.Old.String(), Grant: e.Grant, Target: e.Target, Caps: e.Caps}
		if m := member.Load(); m != nil {
			l.LeaseEnd = m.Stats().LeaseEnd.UnixNano()
		}
		write(l)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	m, err := connpoolfleet.Join(ctx, rdb, env("NAME"), atoi("BUDGET"),
		[]connpoolfleet.Target{connpoolfleet.PoolTarget(pool)},
		connpoolfleet.WithID(id), connpoolfleet.WithTTL(ttl), connpoolfleet.WithGate(gate),
		connpoolfleet.WithLogger(logger), connpoolfleet.WithEvents(events))
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	member.Store(m)

	var workers atomic.Int64
	workers.Store(int64(atoi("WORKERS")))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
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
				time.Sleep(holdTime)
				_ = c.Close()
			}
		}()
	}
	go func() {
		for {
			s, ps := m.Stats(), pool.Stats()
			write(line{Kind: "s", State: s.State.String(), Grant: s.Grant, Target: s.Target, Caps: s.Caps,
				Open: ps.OpenConns, InUse: ps.InUse, LeaseEnd: s.LeaseEnd.UnixNano(), Fences: s.Fences, Budget: s.BudgetSize})
			time.Sleep(50 * time.Millisecond)
		}
	}()
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		cmd, arg, _ := strings.Cut(sc.Text(), " ")
		n, _ := strconv.Atoi(arg)
		switch cmd {
		case "workers":
			workers.Store(int64(n))
		case "budget":
			if err := m.SetBudget(context.Background(), n); err != nil {
				fmt.Fprintln(os.Stderr, err)
			}
		case "leave":
			workers.Store(0)
			close(stop)
			wg.Wait()
			_ = m.Leave(context.Background())
			_ = pool.Close()
			write(line{Kind: "left"})
			return 0
		}
	}
	return 0
}

// proc is a member process seen from the test.
type proc struct {
	t     testing.TB
	id    string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	read  chan struct{} // closed when stdout is drained
	// stoppedAt is when the test sent it SIGSTOP, if it did.
	stoppedAt time.Time

	mu    sync.Mutex // guards lines
	lines []line
}

type fleetConfig struct {
	redis, server, name string
	budget              int
	ttl                 time.Duration
}

// startMember runs a member process with workers busy workers; it is killed
// at the end of the test.
func startMember(t testing.TB, fc fleetConfig, id string, workers int) *proc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1",
		"CPF_ID="+id, "CPF_REDIS="+fc.redis, "CPF_SERVER="+fc.server, "CPF_NAME="+fc.name,
		"CPF_BUDGET="+strconv.Itoa(fc.budget), "CPF_TTL="+fc.ttl.String(), "CPF_WORKERS="+strconv.Itoa(workers))
	cmd.Stderr = &prefixWriter{t: t, prefix: id + ": "}
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	p := &proc{t: t, id: id, cmd: cmd, stdin: stdin, read: make(chan struct{})}
	go func() {
		defer close(p.read)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var l line
			if json.Unmarshal(sc.Bytes(), &l) == nil {
				p.mu.Lock()
				p.lines = append(p.lines, l)
				p.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		if l, ok := p.last(); ok && t.Failed() {
			t.Logf("member %s last: %+v", id, l)
		}
		p.kill()
	})
	return p
}

func (p *proc) send(cmd string) {
	p.t.Helper()
	_, err := io.WriteString(p.stdin, cmd+"\n")
	require.NoError(p.t, err)
}

func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	require.NoError(p.t, p.cmd.Process.Signal(sig))
}

// kill ends the process with SIGKILL and waits for it.
func (p *proc) kill() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	_ = p.cmd.Process.Kill()
	<-p.read
	_ = p.cmd.Wait()
}

// wait waits for the process to exit by itself (after "leave").
func (p *proc) wait() {
	<-p.read
	_ = p.cmd.Wait()
}

// last returns the latest stats line, and whether there is one.
func (p *proc) last() (line, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.lines) - 1; i >= 0; i-- {
		if p.lines[i].Kind == "s" {
			return p.lines[i], true
		}
	}
	return line{}, false
}

func (p *proc) all() []line {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]line(nil), p.lines...)
}

type prefixWriter struct {
	t      testing.TB
	prefix string
}

func (w *prefixWriter) Write(b []byte) (int, error) {
	for l := range strings.SplitSeq(strings.TrimRight(string(b), "\n"), "\n") {
		w.t.Log(w.prefix + l)
	}
	return len(b), nil
}
