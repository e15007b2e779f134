package connpool_test

import (
	"context"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
)

// leakReports returns the leak records logged so far, with their times.
func (r *logRecorder) withPrefix(level slog.Level, prefix string) []slog.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []slog.Record
	for _, rec := range r.records {
		if rec.Level == level && strings.HasPrefix(rec.Message, prefix) {
			out = append(out, rec)
		}
	}
	return out
}

func attr(rec slog.Record, key string) string {
	var v string
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value.String()
			return false
		}
		return true
	})
	return v
}

const (
	leakWarning  = "connpool: conn held past the leak threshold"
	leakReturned = "connpool: a conn reported as held past the leak threshold was returned"
)

// borrowAndKeep is the call site a leak report must name.
func borrowAndKeep(t *testing.T, p *connpool.Pool) *connpool.Conn {
	t.Helper()
	return getConn(t, p)
}

// TestLeakDetectionReportsTheOneLeak: of 10,000 Gets, one keeps its conn.
// Exactly one report comes, after the threshold and within a quarter of
// it (give or take the machine's scheduling), naming the borrower's call
// site; its return logs exactly one INFO line. The report's time is the
// log record's own, so the bound measures the detector, not the 10,000
// Gets that run meanwhile (issue 22: they were timed inside it, and a
// loaded run took 410ms against 400ms). A loop loan that a loaded machine
// stalls past the threshold is rightly reported too (issue 22: a second
// report, of a loan held 260ms): the test times each loop loan, and
// allows a report for each it saw take half the threshold or more. And
// the stalls that delay the test delay the pool's scans as much: the
// bound on the report's delay allows the longest stall a ticker saw.
func TestLeakDetectionReportsTheOneLeak(t *testing.T) {
	const threshold = 200 * time.Millisecond
	srv := startServer(t)
	rec := &logRecorder{}
	var events []connpool.LeakEvent
	var mu sync.Mutex
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(4), connpool.WithLeakDetection(threshold),
		connpool.WithLogger(slog.New(rec)), connpool.WithHooks(connpool.Hooks{LeakDetected: func(e connpool.LeakEvent) {
			mu.Lock()
			events = append(events, e)
			mu.Unlock()
		}}))
	maxStall := stallGauge(t)
	before := time.Now()
	leaked := borrowAndKeep(t, p)
	borrowed := time.Now()
	longLoans := 0 // loop loans a stall made long; a short one is never reported
	for range 10_000 {
		start := time.Now()
		c := getConn(t, p)
		require.NoError(t, c.Close())
		if time.Since(start) >= threshold/2 {
			longLoans++
		}
	}
	leakReports := func() []slog.Record {
		var out []slog.Record
		for _, r := range rec.withPrefix(slog.LevelWarn, leakWarning) {
			if strings.Contains(attr(r, "borrowed_at"), "borrowAndKeep") {
				out = append(out, r)
			}
		}
		return out
	}
	require.Eventually(t, func() bool { return len(leakReports()) > 0 }, waitFor, time.Millisecond)
	reportedAt := leakReports()[0].Time
	assert.GreaterOrEqual(t, reportedAt.Sub(before), threshold, "not before the threshold")
	stalled := maxStall()
	t.Logf("reported %v after the borrow; the longest stall %v", reportedAt.Sub(borrowed), stalled)
	assert.Less(t, reportedAt.Sub(borrowed), threshold*5/4+100*time.Millisecond+stalled,
		"reported within a quarter of the threshold, and some slack for a loaded machine's scheduling")

	// Past another scan, still one report of the leak.
	require.Eventually(t, func() bool { return time.Since(borrowed) > threshold*2 }, waitFor, time.Millisecond)
	all, reports := rec.withPrefix(slog.LevelWarn, leakWarning), leakReports()
	t.Logf("%d loop loans stalled past half the threshold", longLoans)
	require.Len(t, reports, 1)
	site := attr(reports[0], "borrowed_at")
	assert.Contains(t, site, "connpool_test.borrowAndKeep", "the report names the borrower")
	assert.NotContains(t, site, "connpool.(*Pool)", "without the pool's own frames")
	assert.Equal(t, "1", attr(reports[0], "conns"))
	mu.Lock()
	leakEvents := 0
	for _, e := range events {
		if strings.Contains(e.Stack, "borrowAndKeep") {
			leakEvents++
		}
	}
	assert.Equal(t, 1, leakEvents)
	assert.LessOrEqual(t, len(events)-leakEvents, longLoans, "a short loan is reported: %v", all)
	assert.Equal(t, int64(len(events)), p.Stats().Leaks, "a conn counted for each event")
	mu.Unlock()

	out := p.Borrowed()
	require.Len(t, out, 1)
	assert.Contains(t, out[0].Stack, "borrowAndKeep")
	assert.GreaterOrEqual(t, out[0].Held, threshold)

	require.NoError(t, leaked.Close())
	returned := 0
	for _, r := range rec.withPrefix(slog.LevelInfo, leakReturned) {
		if attr(r, "conn") == attr(reports[0], "first_conn") {
			returned++
		}
	}
	assert.Equal(t, 1, returned, "one line when it comes back")
	assert.Empty(t, p.Borrowed())
}

// stallGauge starts a 5ms ticker until the test ends, and returns a
// function that reports how late its longest-delayed tick came: the
// stalls of a loaded machine, which delay the pool's timers as much.
func stallGauge(t *testing.T) (longest func() time.Duration) {
	const period = 5 * time.Millisecond
	var worst atomic.Int64
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tk := time.NewTicker(period)
		defer tk.Stop()
		last := time.Now()
		for {
			select {
			case <-done:
				return
			case <-tk.C:
				at := time.Now()
				if late := at.Sub(last) - period; late > time.Duration(worst.Load()) {
					worst.Store(int64(late))
				}
				last = at
			}
		}
	}()
	t.Cleanup(func() {
		close(done)
		<-stopped
	})
	return func() time.Duration { return time.Duration(worst.Load()) }
}

// TestDroppedConnIsReclaimed: a Conn its borrower dropped without Close
// is found by the garbage collector, reported, and its slot freed, once.
func TestDroppedConnIsReclaimed(t *testing.T) {
	srv := startServer(t)
	rec := &logRecorder{}
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(1), connpool.WithLeakDetection(time.Hour),
		connpool.WithLogger(slog.New(rec)))
	func() {
		c := getConn(t, p)
		mustRoundTrip(t, c, "then dropped")
	}()
	require.Eventually(t, func() bool {
		runtime.GC()
		return p.Stats().InUse == 0
	}, waitFor, 10*time.Millisecond)
	st := p.Stats()
	assert.Equal(t, int64(1), st.LeakedClosed)
	assert.Len(t, rec.withPrefix(slog.LevelWarn, "connpool: a borrowed conn was dropped"), 1)
	checkBooks(t, st)

	// The slot serves again.
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, err := p.Get(ctx)
	require.NoError(t, err)
	mustRoundTrip(t, c, "the slot is back")
	require.NoError(t, c.Close())
	runtime.GC()
	assert.Equal(t, int64(1), p.Stats().LeakedClosed, "a returned conn is never reclaimed")
	require.NoError(t, p.CheckInvariants())
}

func TestBorrowedWithoutLeakDetection(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr())
	c := getConn(t, p)
	out := p.Borrowed()
	require.Len(t, out, 1)
	assert.Equal(t, c.RemoteAddr().String(), out[0].RemoteAddr.String())
	assert.Zero(t, out[0].Held)
	assert.Empty(t, out[0].Stack)
	require.NoError(t, c.Close())
	assert.Empty(t, p.Borrowed())
}

// borrowVia gets a conn from p with get, from a frame of its own: the
// first frame a leak stack must name.
//
//go:noinline
func borrowVia(get func() (*connpool.Conn, error)) (*connpool.Conn, error) { return get() }

// TestLeakStackStartsAtTheBorrower pins the shape of a loan's stack: its
// first frame is the function that called Get (or TryGet), with the
// pool's frames trimmed and no compiler wrapper (a method value, a go
// statement's closure) in it, whichever way the stack was captured.
func TestLeakStackStartsAtTheBorrower(t *testing.T) {
	srv := startServer(t)
	p := newPool(t, srv.Addr(), connpool.WithMaxConns(2), connpool.WithLeakDetection(time.Hour))
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		get  func() (*connpool.Conn, error)
	}{
		{"Get", func() (*connpool.Conn, error) { return p.Get(ctx) }},
		{"TryGet", p.TryGet}, // a method value: a wrapper frame between borrowVia and the pool
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "TryGet" {
				c := getConn(t, p) // an idle conn for TryGet
				require.NoError(t, c.Close())
			}
			type got struct {
				c   *connpool.Conn
				err error
			}
			ch := make(chan got)
			go func() { // a go statement's wrapper at the bottom of the stack
				c, err := borrowVia(tc.get)
				ch <- got{c, err}
			}()
			g := <-ch
			require.NoError(t, g.err)
			out := p.Borrowed()
			require.Len(t, out, 1)
			lines := strings.Split(out[0].Stack, "\n")
			require.NotEmpty(t, lines)
			if tc.name == "TryGet" {
				assert.True(t, strings.HasSuffix(lines[0], "connpool_test.borrowVia"), "the first frame calls the pool:\n%s", out[0].Stack)
			} else {
				assert.Contains(t, lines[0], "TestLeakStackStartsAtTheBorrower", "the first frame calls the pool:\n%s", out[0].Stack)
				assert.Contains(t, lines[2], "connpool_test.borrowVia", out[0].Stack)
			}
			assert.NotContains(t, out[0].Stack, "github.com/connpool/connpool.")
			assert.NotContains(t, out[0].Stack, "<autogenerated>")
			assert.NotContains(t, out[0].Stack, "gowrap")
			assert.Contains(t, lines[len(lines)-2], "TestLeakStackStartsAtTheBorrower.func", "the stack reaches the goroutine's start:\n%s", out[0].Stack)
			require.NoError(t, g.c.Close())
		})
	}
}
