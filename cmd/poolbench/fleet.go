package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"
)

// The fleet scenario (-scenario fleet) runs connpoolfleet's demo,
// connpoolfleet/cmd/fleetdemo: a redis-server of its own on a loopback
// port, a backend that counts the conns open at every instant, and 4
// member processes sharing a budget of B conns to it through Redis. Demand
// moves from one member to another, one member is killed with SIGKILL,
// and the demo prints each member's lease state, grant and conns in use
// and the backend's total against B every 250ms, then charts them in the
// report.
//
// connpoolfleet is a nested module on go-redis; this command stays in the
// core's module, which depends on neither, so it builds the demo from the
// repository's source with the go command (the workspace, go.work, points
// it at this core) and runs the binary.

// The demo's settings: B, the lease TTL (members renew every TTL/3) and
// the length of each of its 4 phases, so that it runs in about 25s.
const (
	fleetBudget = 20
	fleetTTL    = 2 * time.Second
	fleetPhase  = 6 * time.Second
)

// fleetDemoDir is the demo's package, under the connpoolfleet module.
var fleetDemoDir = filepath.Join("connpoolfleet", "cmd", "fleetdemo")

// errNoRedis is returned by the fleet scenario when redis-server is not on
// PATH.
var errNoRedis = errors.New("-scenario fleet needs redis-server on PATH, to start one of its own on a loopback port: " +
	"install it (Debian, Ubuntu: apt-get install redis-server; macOS: brew install redis) and run again")

// runFleet builds and runs the fleet demo, streaming its output, with its
// chart written to cfg.report.
func runFleet(cfg *config, stdout, stderr io.Writer) error {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return errNoRedis
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		return errors.New("-scenario fleet builds connpoolfleet/cmd/fleetdemo with the go command, which is not on PATH")
	}
	wd, _ := os.Getwd()
	module, err := findFleetModule(wd, sourceDir())
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "poolbench-fleet")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "fleetdemo")
	fmt.Fprintf(stderr, "fleet: building %s\n", filepath.Join(module, "cmd", "fleetdemo"))
	build := exec.Command(goTool, "build", "-o", bin, "./cmd/fleetdemo")
	build.Dir = module
	build.Stdout, build.Stderr = stderr, stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("fleet: building the demo: %w", err)
	}

	report, err := filepath.Abs(cfg.report)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "poolbench fleet: 4 processes share a budget of B=%d conns through Redis (lease TTL %v, phases of %v)\n",
		fleetBudget, fleetTTL, fleetPhase)
	demo := exec.Command(bin, "-budget", fmt.Sprint(fleetBudget), "-ttl", fleetTTL.String(),
		"-phase", fleetPhase.String(), "-html", report)
	demo.Stdout, demo.Stderr = stdout, stderr
	// On SIGINT or SIGTERM, pass it on and wait: the demo stops its member
	// processes and its redis-server, and the binary is removed.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if err := demo.Start(); err != nil {
		return fmt.Errorf("fleet: the demo: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- demo.Wait() }()
	for {
		select {
		case sig := <-sigs:
			_ = demo.Process.Signal(sig)
		case err := <-done:
			if err != nil {
				return fmt.Errorf("fleet: the demo: %w", err)
			}
			fmt.Fprintf(stdout, "\nreport: %s\n", cfg.report)
			return nil
		}
	}
}

// sourceDir returns the directory of this file as it was compiled, which
// go run keeps: the fallback when poolbench runs outside the repository.
func sourceDir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok || !filepath.IsAbs(file) {
		return ""
	}
	return filepath.Dir(file)
}

// findFleetModule returns the connpoolfleet module's directory: found from
// dir or one of its parents (the repository's root, or any directory in
// it), else from src, this command's source directory.
func findFleetModule(dir, src string) (string, error) {
	for _, start := range []string{dir, src} {
		for d := start; d != ""; {
			if _, err := os.Stat(filepath.Join(d, fleetDemoDir, "main.go")); err == nil {
				return filepath.Join(d, "connpoolfleet"), nil
			}
			parent := filepath.Dir(d)
			if parent == d {
				break
			}
			d = parent
		}
	}
	return "", fmt.Errorf("-scenario fleet builds %s from the connpool repository, which is neither around %q nor around this command's source: run it from the repository (go run ./cmd/poolbench -scenario fleet)",
		filepath.ToSlash(fleetDemoDir), dir)
}
