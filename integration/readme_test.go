package integration

import (
	"bytes"
	"context"
	"fmt"
	"go/scanner"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The root README's Go blocks, tested as a reader uses them: each one
// pasted, unchanged, into
//
//	func run(ctx context.Context) error {
//		<block>
//		return nil
//	}
//
// with the imports an editor adds, must build and pass vet; a block that
// is a whole `package main` program is built as it stands. The complete
// program runs, and so does each block that needs only loopback services.
// The
// blocks of docs/reference.md, where the README's detail moved, are held
// to the same rule. They
// live in this module because it already requires the client libraries
// the README's integration blocks use (go-redis, pgx, gRPC, ...), so that
// those blocks are compiled against the real libraries.

// readmeImports maps the package names the README's blocks use to their
// import paths, as goimports would resolve them. A block that uses a
// package missing here fails to compile with "undefined: name": add it.
var readmeImports = map[string]string{
	"bufio":        "bufio",
	"bytes":        "bytes",
	"connpool":     "github.com/connpool/connpool",
	"connpoolotel": "github.com/connpool/connpool/connpoolotel",
	"connpoolprom": "github.com/connpool/connpool/connpoolprom",
	"context":      "context",
	"errors":       "errors",
	"fmt":          "fmt",
	"grpc":         "google.golang.org/grpc",
	"http":         "net/http",
	"insecure":     "google.golang.org/grpc/credentials/insecure",
	"io":           "io",
	"log":          "log",
	"mysql":        "github.com/go-sql-driver/mysql",
	"net":          "net",
	"os":           "os",
	"otel":         "go.opentelemetry.io/otel",
	"pgx":          "github.com/jackc/pgx/v5",
	"prometheus":   "github.com/prometheus/client_golang/prometheus",
	"redis":        "github.com/redis/go-redis/v9",
	"slog":         "log/slog",
	"sql":          "database/sql",
	"stdlib":       "github.com/jackc/pgx/v5/stdlib",
	"strings":      "strings",
	"sync":         "sync",
	"time":         "time",
	"tls":          "crypto/tls",
}

// readmeBlock is one ```go block of the README or of docs/reference.md.
type readmeBlock struct {
	file string // the absolute path of the Markdown file
	line int    // its line of the block's first line of code
	code string // the block's text, without the fences
}

// isProgram reports whether the block is a whole program.
func (b readmeBlock) isProgram() bool { return strings.HasPrefix(b.code, "package main\n") }

// readmeGoBlocks returns the ```go blocks of the root README and of
// docs/reference.md, where the README's reference detail lives, in order.
func readmeGoBlocks(t testing.TB) (root string, blocks []readmeBlock) {
	t.Helper()
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	for _, name := range []string{"README.md", filepath.Join("docs", "reference.md")} {
		path := filepath.Join(root, name)
		text, err := os.ReadFile(path)
		require.NoError(t, err)
		lines := strings.SplitAfter(string(text), "\n")
		for i := 0; i < len(lines); i++ {
			if strings.TrimSpace(lines[i]) != "```go" {
				continue
			}
			start := i + 1
			for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
			}
			require.Less(t, i, len(lines), "%s:%d: the ```go block is not closed", name, start)
			blocks = append(blocks, readmeBlock{file: path, line: start + 1, code: strings.Join(lines[start:i], "")})
		}
	}
	require.NotEmpty(t, blocks, "no ```go block in README.md")
	return root, blocks
}

// usedPackages returns the import paths of the packages code refers to
// (an identifier of readmeImports followed by a dot), sorted.
func usedPackages(code string) []string {
	var s scanner.Scanner
	fset := token.NewFileSet()
	src := []byte(code)
	s.Init(fset.AddFile("", -1, len(src)), src, nil, 0)
	seen := map[string]bool{}
	prev := ""
	for {
		_, tok, lit := s.Scan()
		if tok == token.EOF {
			break
		}
		if tok == token.PERIOD && readmeImports[prev] != "" {
			seen[readmeImports[prev]] = true
		}
		prev = ""
		if tok == token.IDENT {
			prev = lit
		}
	}
	var paths []string
	for p := range seen {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	return paths
}

// wrapBlock returns the file a reader gets by pasting b into a run
// function and letting the editor add the imports, with a main that calls
// run with a deadline, so that the block can also be run. A line
// directive makes the compiler report errors at the Markdown's own lines.
func wrapBlock(b readmeBlock) string {
	var f strings.Builder
	f.WriteString("package main\n\nimport (\n")
	for _, p := range usedPackages("context.Context\nfmt.Print\nos.Exit\ntime.Second\n" + b.code) {
		fmt.Fprintf(&f, "\t%q\n", p)
	}
	f.WriteString(")\n\nfunc run(ctx context.Context) error {\n")
	fmt.Fprintf(&f, "//line %s:%d\n", b.file, b.line)
	f.WriteString(b.code)
	f.WriteString("return nil\n}\n\n")
	f.WriteString(`//line readme_main.go:1
func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	err := run(ctx)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
`)
	return f.String()
}

// readmeWorkspace writes, into a temporary directory, a module holding
// every block (blockNN/, one package each) inside a workspace with the
// repository's modules, and returns the directory.
func readmeWorkspace(t *testing.T, root string, blocks []readmeBlock) string {
	t.Helper()
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
	}
	write("go.mod", "module readme\n\ngo 1.26.0\n")
	var work strings.Builder
	work.WriteString("go 1.26.0\n\nuse (\n\t.\n")
	for _, m := range []string{".", "connpoolprom", "connpoolotel", "integration"} {
		fmt.Fprintf(&work, "\t%s\n", filepath.Join(root, m))
	}
	work.WriteString(")\n")
	write("go.work", work.String())
	sum, err := os.ReadFile(filepath.Join(root, "go.work.sum"))
	require.NoError(t, err)
	write("go.work.sum", string(sum))
	for i, b := range blocks {
		name := fmt.Sprintf("block%02d", i+1)
		if b.isProgram() {
			write(name+"/main.go", fmt.Sprintf("//line %s:%d\n%s", b.file, b.line, b.code))
			write(name+"/readme_program_test.go", programTest)
		} else {
			write(name+"/block.go", wrapBlock(b))
		}
	}
	return dir
}

// goCmd runs the go command in dir, in the workspace of dir's go.work,
// and returns its combined output.
func goCmd(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK="+filepath.Join(dir, "go.work"), "GOFLAGS="+strings.TrimSpace(os.Getenv("GOFLAGS")+" -mod=readonly"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// programTest is added beside the README's complete program (as
// readme_program_test.go, package main) and run with go test: it pins
// that the program's roundTrip, the README's recipe for using a pooled
// conn, keeps a reply it did not understand from the next borrower. The
// server answers the first request of its first conn with an error, and
// from then on that conn is one reply behind: a roundTrip that gave the
// conn back without MarkUnusable would have the next borrower read
// "+stale" for its own reply.
const programTest = `package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/connpool/connpool"
)

func TestRoundTripKeepsABadReplyFromTheNextBorrower(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			first := conns.Add(1) == 1
			go func() {
				defer c.Close()
				for n, s := 0, bufio.NewScanner(c); s.Scan(); n++ {
					switch {
					case !first:
						fmt.Fprintf(c, "+%s\n", s.Text())
					case n == 0:
						fmt.Fprintf(c, "-ERR\n")
					default:
						fmt.Fprintf(c, "+stale\n+%s\n", s.Text())
					}
				}
			}()
		}
	}()

	pool, err := connpool.New("tcp", ln.Addr().String(), connpool.WithMaxConns(1))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if reply, err := roundTrip(ctx, pool, "first"); err == nil {
		t.Fatalf("roundTrip returned %q for an error reply", reply)
	}
	reply, err := roundTrip(ctx, pool, "second")
	if err != nil {
		t.Fatal(err)
	}
	if reply != "second" {
		t.Fatalf("the next borrower read %q, left by the error reply before it", reply)
	}
}
`

// readmeServices maps the loopback addresses the README's blocks use to
// the service that must answer there for the block to run.
var readmeServices = map[string]string{
	redisAddr:    "Redis",
	postgresAddr: "PostgreSQL",
	mariadbAddr:  "MariaDB",
}

// TestREADMEGoBlocks builds and vets every Go block of the README, each
// pasted into run(ctx) followed only by `return nil`, then runs the
// complete program and every block that dials only loopback services.
// It pins that a reader can copy any block: the net/http and Group
// recipes once declared a client they never used, which a test that added
// code after them could not see.
func TestREADMEGoBlocks(t *testing.T) {
	root, blocks := readmeGoBlocks(t)
	dir := readmeWorkspace(t, root, blocks)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, step := range [][]string{{"build", "-o", "bin" + string(filepath.Separator), "./..."}, {"vet", "./..."}} {
		out, err := goCmd(ctx, dir, step...)
		require.NoError(t, err, "go %s of the Go blocks (each wrapped in func run(ctx context.Context) error { ... return nil }):\n%s",
			strings.Join(step, " "), out)
	}
	t.Logf("%d Go blocks of README.md and docs/reference.md build and vet", len(blocks))

	programs := 0
	for i, b := range blocks {
		where := fmt.Sprintf("%s:%d", filepath.Base(b.file), b.line)
		if b.isProgram() && filepath.Base(b.file) == "README.md" {
			programs++
		}
		if strings.Contains(b.code, ".internal") {
			continue // a host of the reader's, not on this machine
		}
		t.Run(where, func(t *testing.T) {
			for addr, service := range readmeServices {
				if strings.Contains(b.code, addr) {
					needService(t, service, addr)
				}
			}
			// The complete program serves itself on loopback; a recipe
			// runs in run(ctx) as pasted, under a 30 s deadline.
			cmd := exec.CommandContext(ctx, filepath.Join(dir, "bin", fmt.Sprintf("block%02d", i+1)))
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s exits non-zero:\n%s", where, out)
			if len(out) > 0 {
				t.Logf("%s output:\n%s", where, out)
			}
			if b.isProgram() {
				out, err := goCmd(ctx, dir, "test", "-count=1", fmt.Sprintf("./block%02d", i+1))
				require.NoError(t, err, "the test of %s's roundTrip (programTest):\n%s", where, out)
			}
		})
	}
	require.Positive(t, programs, "README.md has no complete program (a ```go block starting with package main)")
}
