package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFleetFlags checks that -scenario fleet parses, alone, and is refused
// with -addr.
func TestFleetFlags(t *testing.T) {
	var stderr bytes.Buffer
	cfg, err := parseFlags([]string{"-scenario", "fleet"}, &stderr)
	require.NoError(t, err)
	assert.Equal(t, "fleet", cfg.scenario)
	_, err = parseFlags([]string{"-scenario", "fleet", "-addr", "127.0.0.1:6379"}, &stderr)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "-scenario fleet needs the embedded servers")
}

// TestFleetWithoutRedis checks that without redis-server on PATH the fleet
// scenario fails, saying how to install it, before building anything.
func TestFleetWithoutRedis(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	var stdout, stderr bytes.Buffer
	err := run(&config{scenario: "fleet", report: filepath.Join(t.TempDir(), "r.html")}, &stdout, &stderr)
	require.ErrorIs(t, err, errNoRedis)
	assert.Contains(t, err.Error(), "apt-get install redis-server")
	assert.Empty(t, stderr.String(), "nothing built")
}

// TestFindFleetModule checks that the demo is found from the repository's
// root, from a directory in it (this test runs in cmd/poolbench), and
// from this command's source when the working directory is elsewhere; and
// that the error outside says where to run it.
func TestFindFleetModule(t *testing.T) {
	wd, err := os.Getwd()
	require.NoError(t, err)
	root := filepath.Dir(filepath.Dir(wd))
	want := filepath.Join(root, "connpoolfleet")

	for _, dir := range []string{root, wd, filepath.Join(root, "connpoolfleet", "cmd")} {
		got, err := findFleetModule(dir, "")
		require.NoError(t, err, dir)
		assert.Equal(t, want, got, dir)
	}
	got, err := findFleetModule(t.TempDir(), wd)
	require.NoError(t, err)
	assert.Equal(t, want, got, "from the source directory")
	if src := sourceDir(); src != "" { // "" when built with -trimpath
		assert.Equal(t, wd, src, "the source directory of a test build")
	}

	_, err = findFleetModule(t.TempDir(), "")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "go run ./cmd/poolbench -scenario fleet")
}
