package connpoolfleet_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFleetDemoRuns builds cmd/fleetdemo and runs it with short phases to
// the end: every phase printed, the backend's peak within B, and the chart
// written. It is what go run ./cmd/poolbench -scenario fleet runs.
func TestFleetDemoRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs cmd/fleetdemo (about 10s)")
	}
	startRedis(t) // skips without redis-server; the demo starts its own
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH")
	}
	// Read the demo's source, so that go test's cache knows the result
	// depends on it (the build below is another process).
	_, err = os.ReadFile(filepath.Join("cmd", "fleetdemo", "main.go"))
	require.NoError(t, err)
	dir := t.TempDir()
	bin := filepath.Join(dir, "fleetdemo")
	build := exec.Command(goTool, "build", "-o", bin, "./cmd/fleetdemo")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)

	chart := filepath.Join(dir, "fleet.html")
	out, err = exec.Command(bin, "-budget", "10", "-ttl", "600ms", "-phase", "1500ms", "-html", chart).CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, phase := range []string{"member 0 busy", "demand moves to member 1", "member 1 is killed", "everyone busy"} {
		assert.Contains(t, string(out), phase)
	}
	peak := regexp.MustCompile(`peak at the backend: (\d+) of B=10`).FindSubmatch(out)
	require.NotNil(t, peak, "%s", out)
	n, _ := strconv.Atoi(string(peak[1]))
	assert.LessOrEqual(t, n, 10, "the backend's peak")
	assert.Positive(t, n)
	html, err := os.ReadFile(chart)
	require.NoError(t, err)
	assert.Contains(t, string(html), "<polyline")
}
