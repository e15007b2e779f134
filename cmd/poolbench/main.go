// Command poolbench shows what connection pooling buys. It starts an
// embedded loopback echo server (plain TCP and TLS), drives it with
// concurrent clients that get their conn for each request in different
// ways (a new conn per request, connpool at a few pool sizes, and a raw
// persistent conn per client as the floor), then saturates small pools
// (32 clients on 2 and 4 conns) to set connpool, with its checkout peek
// off and on, beside a plain buffered-channel pool of the same size. It
// prints a table of throughput,
// latency percentiles, dials and pool statistics, and writes an HTML
// report with charts that opens offline.
//
// Usage:
//
//	go run ./cmd/poolbench [flags]
//
// With -addr it aims at a real server instead, speaking an echo protocol
// or the request/reply given by -ping and -pong (for Redis:
// -ping 'PING\r\n' -pong '+PONG\r\n').
//
// On the embedded server, the default run ends with a short sizing run;
// -scenario sizing runs the full one alone (see sizing.go): fixed pool
// sizes and the adaptive cap (WithAdaptiveMaxConns) against a server that
// serves -sizing-c requests at once, under loads from 50% to 200% of its
// capacity. -scenario overload runs the overload comparison alone (see
// overload.go): the sizing scenario's open loop at 90%, 200% and 100% of
// capacity, against pools capped at the server's concurrency, one for each
// queue policy (WithQueuePolicy). It is not part of the default run, which
// it would take past a minute.
//
// -scenario fleet runs connpoolfleet's demo alone (see fleet.go): 4
// processes share a budget of conns through a redis-server of its own.
package main

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/connpool/connpool/internal/testcert"
)

// config is the parsed command line.
type config struct {
	addr       string
	ping, pong []byte
	load       load
	rtt        time.Duration
	sizes      []int
	report     string
	scenario   string        // "" for the default run, "sizing", "overload" or "fleet"
	sizingC    int           // the sizing server's concurrency
	sizingLen  time.Duration // each sizing phase; 0: the default for the run
}

// Sizing phase lengths: the full scenario's, and the short run's at the
// end of the default run (seven phase lengths and a warm-up: about 15s).
const (
	sizingPhaseFull  = 10 * time.Second
	sizingPhaseShort = 2 * time.Second
)

// defaultPing is the request, 64 bytes, shown whole by -h.
const defaultPing = "connpool poolbench: a 64-byte request; the server echoes it back"

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("poolbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		addr   = fs.String("addr", "", "aim at this server (host:port) instead of the embedded one")
		ping   = fs.String("ping", defaultPing, "request to send; Go escapes such as \\r\\n are understood")
		pong   = fs.String("pong", "", "reply to expect (default: the request, echoed)")
		c      = fs.Int("c", 32, "concurrent clients")
		n      = fs.Int64("n", 0, "requests per scenario (instead of -d)")
		d      = fs.Duration("d", 2*time.Second, "duration of each scenario")
		rtt    = fs.Duration("rtt", 0, "simulated network round trip added by the embedded server")
		sizes  = fs.String("sizes", "", "comma-separated pool sizes (default: c/16, c/4 and c)")
		report = fs.String("report", "poolbench-report.html", "where to write the HTML report")
		scen   = fs.String("scenario", "", `"sizing": run only the full sizing scenario; "overload": run only the overload comparison of queue policies; "fleet": run only the fleet budget demo (needs redis-server) (default: every scenario, and a short sizing run)`)
		sizC   = fs.Int("sizing-c", 8, "requests the sizing server serves at once (its C)")
		sizLen = fs.Duration("sizing-phase", 0, fmt.Sprintf("length of each sizing phase (default %v with -scenario sizing, %v with -scenario overload, %v in the default run)", sizingPhaseFull, overloadPhase, sizingPhaseShort))
	)
	fs.Usage = func() {
		sizes, _ := parseSizes("", 32)
		sc := newSizingConfig(8, sizingPhaseShort)
		fmt.Fprintf(stderr, "Usage: poolbench [flags]\n\nShows what connection pooling buys against a loopback echo server.\n"+
			"The default run: %d scenarios of -d each, then a short sizing run of %v (%v phases after a %v warm-up).\n\nFlags:\n",
			len(scenarios(&config{sizes: sizes}, true)), sc.warmup+sc.phaseStart(len(sizingPhases)), sizingPhaseShort, sc.warmup)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	cfg := &config{addr: *addr, rtt: *rtt, report: *report,
		load:     load{concurrency: *c, requests: *n, duration: *d},
		scenario: *scen, sizingC: *sizC, sizingLen: *sizLen}
	var err error
	if cfg.ping, err = unescape(*ping); err != nil || len(cfg.ping) == 0 {
		return nil, fmt.Errorf("-ping %q: must be a non-empty string with valid Go escapes", *ping)
	}
	cfg.pong = cfg.ping
	if *pong != "" {
		if cfg.pong, err = unescape(*pong); err != nil {
			return nil, fmt.Errorf("-pong %q: invalid Go escapes", *pong)
		}
	}
	switch {
	case *c < 1:
		return nil, fmt.Errorf("-c %d: need at least one client", *c)
	case *n < 0:
		return nil, fmt.Errorf("-n %d: must not be negative", *n)
	case *n == 0 && *d <= 0:
		return nil, fmt.Errorf("-d %v: must be positive", *d)
	case *rtt < 0:
		return nil, fmt.Errorf("-rtt %v: must not be negative", *rtt)
	case *rtt > 0 && *addr != "":
		return nil, errors.New("-rtt simulates delay on the embedded server; it cannot be used with -addr")
	case *report == "":
		return nil, errors.New("-report: need a path")
	case *scen != "" && *scen != "sizing" && *scen != "overload" && *scen != "fleet":
		return nil, fmt.Errorf("-scenario %q: the scenarios to run alone are sizing, overload and fleet", *scen)
	case *scen != "" && *addr != "":
		return nil, fmt.Errorf("-scenario %s needs the embedded servers; it cannot be used with -addr", *scen)
	case *sizC < 2:
		return nil, fmt.Errorf("-sizing-c %d: need at least 2", *sizC)
	case *sizLen < 0:
		return nil, fmt.Errorf("-sizing-phase %v: must not be negative", *sizLen)
	}
	if cfg.sizes, err = parseSizes(*sizes, *c); err != nil {
		return nil, err
	}
	return cfg, nil
}

func unescape(s string) ([]byte, error) {
	u, err := strconv.Unquote(`"` + strings.ReplaceAll(s, `"`, `\"`) + `"`)
	return []byte(u), err
}

func parseSizes(s string, c int) ([]int, error) {
	if s == "" {
		var out []int
		for _, n := range []int{max(1, c/16), max(1, c/4), c} {
			if len(out) == 0 || out[len(out)-1] != n {
				out = append(out, n)
			}
		}
		return out, nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-sizes %q: want positive integers separated by commas", s)
		}
		out = append(out, n)
	}
	return out, nil
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "poolbench:", err)
		os.Exit(2)
	}
	if err := run(cfg, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "poolbench:", err)
		os.Exit(1)
	}
}

// Saturated scenarios: this many clients share a pool of each of these
// sizes, so nearly every Get waits.
const saturatedClients = 32

var saturatedSizes = []int{2, 4}

// scenarios lists what to run, slowest way of getting a conn first, then,
// on the embedded server, the saturated ones: for each size a plain
// buffered-channel pool and connpool with the checkout peek off and on,
// side by side.
func scenarios(cfg *config, embedded bool) []*scenario {
	withTLS := embedded
	out := []*scenario{{name: "dial per request", group: "dial"}}
	if withTLS {
		out = append(out, &scenario{name: "TLS dial per request", group: "dial", tls: true})
	}
	for _, n := range cfg.sizes {
		out = append(out, &scenario{name: fmt.Sprintf("connpool size=%d", n), group: "pool", poolSize: n})
	}
	if withTLS {
		n := cfg.sizes[len(cfg.sizes)-1]
		out = append(out, &scenario{name: fmt.Sprintf("connpool TLS size=%d", n), group: "pool", poolSize: n, tls: true})
	}
	out = append(out, &scenario{name: "raw conn per client", group: "raw"})
	if embedded {
		for _, n := range saturatedSizes {
			out = append(out,
				&scenario{name: fmt.Sprintf("saturated chan pool size=%d", n), group: "chan", poolSize: n, clients: saturatedClients},
				&scenario{name: fmt.Sprintf("saturated connpool size=%d peek off", n), group: "saturated", poolSize: n, clients: saturatedClients, noPeek: true},
				&scenario{name: fmt.Sprintf("saturated connpool size=%d peek on", n), group: "saturated", poolSize: n, clients: saturatedClients})
		}
	}
	return out
}

func run(cfg *config, stdout, stderr io.Writer) error {
	switch cfg.scenario {
	case "sizing":
		return runSizingOnly(cfg, stdout, stderr)
	case "overload":
		return runOverloadOnly(cfg, stdout, stderr)
	case "fleet":
		return runFleet(cfg, stdout, stderr)
	}
	t := &target{addr: cfg.addr, ping: cfg.ping, pong: cfg.pong}
	where := cfg.addr
	if cfg.addr == "" {
		plain, err := startEchoServer(cfg.rtt, nil)
		if err != nil {
			return err
		}
		defer plain.close()
		pair, err := testcert.New()
		if err != nil {
			return err
		}
		secure, err := startEchoServer(cfg.rtt, pair.Server)
		if err != nil {
			return err
		}
		defer secure.close()
		t.addr, t.tlsAddr, t.tlsConfig = plain.addr(), secure.addr(), pair.Client
		where = fmt.Sprintf("embedded loopback echo server (%s, TLS %s), simulated RTT %v", plain.addr(), secure.addr(), cfg.rtt)
	}
	all := scenarios(cfg, cfg.addr == "")
	amount := fmt.Sprintf("%v each", cfg.load.duration)
	if cfg.load.requests > 0 {
		amount = fmt.Sprintf("%d requests each", cfg.load.requests)
	}
	fmt.Fprintf(stdout, "poolbench: %d clients against %s; %d scenarios, %s\n\n", cfg.load.concurrency, where, len(all), amount)

	live := isTerminal(stderr)
	for i, s := range all {
		label := fmt.Sprintf("[%d/%d] %-36s", i+1, len(all), s.name)
		progress := func(done int64) {
			if live {
				fmt.Fprintf(stderr, "\r%s %9d requests", label, done)
			}
		}
		if err := s.run(t, cfg.load, progress); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		if live {
			fmt.Fprint(stderr, "\r\033[K")
		}
		fmt.Fprintf(stderr, "%s %9d requests, %8.0f req/s\n", label, s.requests, s.rps())
	}
	fmt.Fprintln(stdout)
	printTable(stdout, all)
	var sizing *sizingResult
	if cfg.addr == "" {
		sc := newSizingConfig(cfg.sizingC, cmp.Or(cfg.sizingLen, sizingPhaseShort))
		fmt.Fprintf(stderr, "sizing, short: 6 configurations at once, %v\n", sc.duration()+sc.closedLoop().duration())
		var err error
		if sizing, err = runSizing(sc); err != nil {
			return fmt.Errorf("sizing: %w", err)
		}
		fmt.Fprintln(stdout)
		printSizing(stdout, sizing)
		printSizingNotes(stdout, sizing)
	}
	if err := writeReport(cfg.report, cfg, where, all, sizing); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nreport: %s\n", cfg.report)
	for _, s := range all {
		if s.requests == 0 {
			return fmt.Errorf("%s: no request succeeded: %v", s.name, s.firstErr)
		}
	}
	return nil
}

// runSizingOnly runs the full sizing scenario, prints its table and
// writes a report of it alone.
func runSizingOnly(cfg *config, stdout, stderr io.Writer) error {
	sc := newSizingConfig(cfg.sizingC, cmp.Or(cfg.sizingLen, sizingPhaseFull))
	fmt.Fprintf(stderr, "sizing: 6 configurations at once, %v\n", sc.duration()+sc.closedLoop().duration())
	res, err := runSizing(sc)
	if err != nil {
		return err
	}
	printSizing(stdout, res)
	if err := writeReport(cfg.report, cfg, "embedded loopback sizing servers", nil, res); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nreport: %s\n", cfg.report)
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
