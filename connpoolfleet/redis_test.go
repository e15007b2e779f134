package connpoolfleet_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// redisServer is a redis-server of the test's own, on a free loopback
// port, with nothing on disk, that the test can kill, pause and restart.
type redisServer struct {
	t    testing.TB
	addr string
	port string
	cmd  *exec.Cmd
}

func required() bool { return os.Getenv("CONNPOOL_REQUIRE_SERVICES") == "1" }

// startRedis starts a redis-server, or skips the test when none is on PATH
// (fails with CONNPOOL_REQUIRE_SERVICES=1).
func startRedis(t testing.TB) *redisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if required() {
			t.Fatalf("redis-server is not on PATH, and CONNPOOL_REQUIRE_SERVICES=1 (.ci/services installs it)")
		}
		t.Skipf("redis-server is not on PATH: install it (apt-get install redis-server, or .ci/services); set CONNPOOL_REQUIRE_SERVICES=1 to fail instead")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	_, port, _ := net.SplitHostPort(addr)
	s := &redisServer{t: t, addr: addr, port: port}
	s.start()
	t.Cleanup(s.kill)
	return s
}

// start runs the server, empty, and waits until it answers.
func (s *redisServer) start() {
	s.t.Helper()
	s.cmd = exec.Command("redis-server", "--port", s.port, "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--protected-mode", "no", "--loglevel", "warning")
	require.NoError(s.t, s.cmd.Start())
	c := redis.NewClient(&redis.Options{Addr: s.addr, MaxRetries: -1})
	defer c.Close()
	require.Eventually(s.t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		return c.Ping(ctx).Err() == nil
	}, 10*time.Second, 20*time.Millisecond, "redis-server on %s did not answer", s.addr)
}

// kill ends the server with SIGKILL: its data is gone.
func (s *redisServer) kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT)
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

func (s *redisServer) signal(sig syscall.Signal) {
	s.t.Helper()
	require.NoError(s.t, s.cmd.Process.Signal(sig))
}

func (s *redisServer) client(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// commandCalls returns the calls of each command since the server started,
// from INFO commandstats.
func commandCalls(t testing.TB, c *redis.Client) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for cmd, st := range commandStats(t, c) {
		out[cmd] = st.calls
	}
	return out
}

type cmdStat struct{ calls, usec int64 }

// commandStats returns the calls of each command and the microseconds
// Redis spent in them, from INFO commandstats.
func commandStats(t testing.TB, c *redis.Client) map[string]cmdStat {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	require.NoError(t, err)
	out := map[string]cmdStat{}
	for line := range strings.SplitSeq(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		var st cmdStat
		for f := range strings.SplitSeq(rest, ",") {
			k, v, _ := strings.Cut(f, "=")
			n, _ := strconv.ParseInt(v, 10, 64)
			switch k {
			case "calls":
				st.calls = n
			case "usec":
				st.usec = n
			}
		}
		out[strings.TrimPrefix(name, "cmdstat_")] = st
	}
	return out
}
