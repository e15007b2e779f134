package integration

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
)

// The README's recipes, each verbatim in a func that returns an error, run
// against the real services. TestREADMERecipesAreTested keeps them in step
// with the README.

func readmeQuickStart(ctx context.Context) error {
	pool, err := connpool.New("tcp", "127.0.0.1:6379",
		connpool.WithMaxConns(32),
		connpool.WithMinIdle(4),
		connpool.WithHealthCheck(connpool.PingPong([]byte("PING\r\n"), []byte("+PONG\r\n"))),
	)
	if err != nil {
		return err // names the bad option, e.g. WithMinIdle(40) exceeds WithMaxConns(32)
	}
	defer pool.Close()

	conn, err := pool.Get(ctx) // waits at the cap until ctx ends
	if err != nil {
		return err // errors.Is(err, context.DeadlineExceeded), with the pool's state
	}
	defer conn.Close() // back to the pool; a conn whose Read or Write failed is closed instead

	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}

	return expectPong(conn)
}

func readmeEvents(ctx context.Context) error {
	pool, err := connpool.New("tcp", "127.0.0.1:6379",
		connpool.WithName("sessions"),
		connpool.WithMaxWaiters(256), // the 257th waiting Get fails at once with ErrTooManyWaiters
		connpool.WithHooks(connpool.Hooks{
			GetDone: func(e connpool.GetDoneEvent) {
				if e.Failure != 0 {
					slog.Warn("get failed", "pool", e.Pool, "failure", e.Failure, "waited", e.Waited, "err", e.Err)
				}
			},
			ConnClosed: func(e connpool.ConnClosedEvent) {
				slog.Debug("conn closed", "pool", e.Pool, "conn", e.ConnID, "age", e.Age, "reason", e.Reason)
			},
		}),
	)
	if err != nil {
		return err
	}
	defer pool.Close()

	conn, err := pool.Get(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	return expectPong(conn)
}

func readmePgx(ctx context.Context) error {
	pool, err := connpool.New("tcp", "127.0.0.1:5432", connpool.WithMaxConns(8), connpool.WithMinIdle(2))
	if err != nil {
		return err
	}
	defer pool.Close()
	cfg, err := pgx.ParseConfig("postgres://postgres@127.0.0.1:5432/test")
	if err != nil {
		return err
	}
	cfg.DialFunc = pool.DialContext
	db := stdlib.OpenDB(*cfg)
	defer db.Close()

	return db.PingContext(ctx)
}

func expectPong(c interface{ Read([]byte) (int, error) }) error {
	got := make([]byte, len("+PONG\r\n"))
	if _, err := c.Read(got); err != nil {
		return err
	}
	if string(got) != "+PONG\r\n" {
		return &unexpectedReply{got: string(got)}
	}
	return nil
}

type unexpectedReply struct{ got string }

func (e *unexpectedReply) Error() string { return "unexpected reply " + e.got }

func TestREADMERecipesRun(t *testing.T) {
	for _, tc := range []struct {
		name, service, addr string
		recipe              func(context.Context) error
	}{
		{"quick start", "Redis", redisAddr, readmeQuickStart},
		{"events", "Redis", redisAddr, readmeEvents},
		{"pgx", "PostgreSQL", postgresAddr, readmePgx},
	} {
		t.Run(tc.name, func(t *testing.T) {
			needService(t, tc.service, tc.addr)
			ctx, cancel := context.WithTimeout(context.Background(), waitFor)
			defer cancel()
			require.NoError(t, tc.recipe(ctx))
		})
	}
}

// TestREADMERecipesAreTested: every Go block of the README stands,
// verbatim but for its indentation, in a test file that compiles it (this
// one, the core's for net/http, or the exporters'), so that a recipe
// cannot drift from code that runs.
func TestREADMERecipesAreTested(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	require.NoError(t, err)
	var tests strings.Builder
	for _, f := range []string{
		"readme_test.go",
		filepath.Join("..", "group_http_test.go"),
		filepath.Join("..", "connpoolprom", "readme_test.go"),
		filepath.Join("..", "connpoolotel", "readme_test.go"),
	} {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		tests.WriteString(unindent(string(b)))
	}
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```\n").FindAllStringSubmatch(string(readme), -1)
	require.NotEmpty(t, blocks)
	for _, b := range blocks {
		first, _, _ := strings.Cut(b[1], "\n")
		assert.True(t, strings.Contains(tests.String(), unindent(b[1])), "no test compiles the README recipe that starts %q", first)
	}
}

// unindent drops the leading tabs of every line of s.
func unindent(s string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimLeft(l, "\t")
	}
	return strings.Join(lines, "")
}
