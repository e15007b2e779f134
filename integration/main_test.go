package integration

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/connpool/connpool"
)

const (
	postgresAddr = "127.0.0.1:5432"
	mariadbAddr  = "127.0.0.1:3306"
	redisAddr    = "127.0.0.1:6379"
	waitFor      = 10 * time.Second
	tick         = 5 * time.Millisecond
)

// services maps each service to the examples that need it: examples
// cannot skip themselves, so TestMain leaves out those whose service is
// down (unless services are required, when they run and fail).
var services = map[string]struct {
	addr     string
	examples string
}{
	"PostgreSQL": {postgresAddr, "Example_pgx|Example_libpq"},
	"MariaDB":    {mariadbAddr, "Example_mysql"},
	"Redis":      {redisAddr, "Example_goRedis|Example_redisPingPong"},
}

func required() bool { return os.Getenv("CONNPOOL_REQUIRE_SERVICES") == "1" }

func reachable(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func TestMain(m *testing.M) {
	flag.Parse()
	if !required() {
		var skip []string
		for name, s := range services {
			if !reachable(s.addr) {
				fmt.Fprintf(os.Stderr, "integration: %s is not answering on %s: skipping %s\n", name, s.addr, s.examples)
				skip = append(skip, s.examples)
			}
		}
		if len(skip) > 0 {
			_ = flag.Set("test.skip", strings.Join(skip, "|"))
		}
	}
	goleak.VerifyTestMain(m)
}

// needService skips t when the service at addr does not answer, or fails
// it when services are required.
func needService(t *testing.T, name, addr string) {
	t.Helper()
	if reachable(addr) {
		return
	}
	if required() {
		t.Fatalf("%s is not answering on %s, and CONNPOOL_REQUIRE_SERVICES=1", name, addr)
	}
	t.Skipf("%s is not answering on %s (set CONNPOOL_REQUIRE_SERVICES=1 to fail instead)", name, addr)
}

// newPool returns a pool closed when the test ends, after its clients.
func newPool(t *testing.T, addr string, opts ...connpool.Option) *connpool.Pool {
	t.Helper()
	p, err := connpool.New("tcp", addr, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	return p
}

// capWatch samples a pool's open conns while a test runs and remembers
// the most seen.
type capWatch struct {
	peak atomic.Int64
	stop chan struct{}
	done chan struct{}
}

func watchCap(p *connpool.Pool) *capWatch {
	w := &capWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			st := p.Stats()
			if n := int64(st.OpenConns + st.Dialing); n > w.peak.Load() {
				w.peak.Store(n)
			}
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
		}
	}()
	return w
}

func (w *capWatch) Stop() int64 {
	close(w.stop)
	<-w.done
	return w.peak.Load()
}

// tally counts the outcomes of a hammer run.
type tally struct {
	ok, failed, wrong atomic.Int64
}

func (t *tally) String() string {
	return fmt.Sprintf("ok %d, failed %d (sessions killed mid-run), wrong %d", t.ok.Load(), t.failed.Load(), t.wrong.Load())
}

// hammer runs perWorker requests from each of workers goroutines, and
// kill once, a third of the way through. A request returns whether its
// reply was its own (wrong when not), or an error.
func hammer(t *testing.T, workers, perWorker int, kill func(), request func(g, i int) (wrong bool, err error)) *tally {
	t.Helper()
	var out tally
	var wg sync.WaitGroup
	killAt := make(chan struct{})
	for g := range workers {
		wg.Go(func() {
			for i := range perWorker {
				if g == 0 && i == perWorker/3 {
					close(killAt)
				}
				switch wrong, err := request(g, i); {
				case err != nil:
					out.failed.Add(1)
				case wrong:
					out.wrong.Add(1)
				default:
					out.ok.Add(1)
				}
			}
		})
	}
	<-killAt
	kill()
	wg.Wait()
	return &out
}

// recoverWithin polls f until it succeeds: a client that lost its server's
// session must get going again through the pool on its own.
func recoverWithin(t *testing.T, f func(ctx context.Context) error) {
	t.Helper()
	var last atomic.Pointer[error]
	ok := assert.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		err := f(ctx)
		last.Store(&err)
		return err == nil
	}, waitFor, 20*time.Millisecond)
	if !ok {
		t.Fatalf("did not recover: %v", *last.Load())
	}
}
