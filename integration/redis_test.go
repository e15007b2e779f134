package integration

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
)

// redisPingPong is the RESP health check for Redis.
var redisPingPong = connpool.PingPong([]byte("PING\r\n"), []byte("+PONG\r\n"))

// killRedis returns a kill for hammer: every client session ends.
func killRedis(t *testing.T) func() {
	return func() {
		n, err := killRedisClients(context.Background())
		require.NoError(t, err)
		assert.Positive(t, n)
	}
}

// killRedisClients ends every normal client session but the caller's.
func killRedisClients(ctx context.Context) (int64, error) {
	admin := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer admin.Close()
	return admin.ClientKillByFilter(ctx, "TYPE", "normal", "SKIPME", "yes").Result()
}

// command sends one inline command on c and reads one reply line (and a
// bulk string's body).
func command(c net.Conn, r *bufio.Reader, line string) (string, error) {
	if _, err := c.Write([]byte(line + "\r\n")); err != nil {
		return "", err
	}
	head, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(head, "$") || head == "$-1\r\n" {
		return strings.TrimRight(head, "\r\n"), nil
	}
	body, err := r.ReadString('\n')
	return strings.TrimRight(body, "\r\n"), err
}

// TestRedisDirect uses the pool as the Redis client's pool: borrowed conns
// speak RESP, a PING/PONG check runs in the background, and when Redis
// kills every session the checkout peek keeps dead conns from callers.
func TestRedisDirect(t *testing.T) {
	needService(t, "Redis", redisAddr)
	pool := newPool(t, redisAddr, connpool.WithMaxConns(maxConns), connpool.WithMinIdle(2),
		connpool.WithHealthCheck(redisPingPong), connpool.WithHealthCheckInterval(50*time.Millisecond))
	watch := watchCap(pool)
	res := hammer(t, 16, 200, killRedis(t), func(g, i int) (bool, error) {
		key, val := fmt.Sprintf("connpool:test:%d", g), fmt.Sprintf("v%d-%d", g, i)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := pool.Get(ctx)
		if err != nil {
			return false, err
		}
		defer c.Close()
		r := bufio.NewReader(c)
		if got, err := command(c, r, "SET "+key+" "+val); err != nil || got != "+OK" {
			c.MarkUnusable()
			return false, fmt.Errorf("SET: %q %v", got, err)
		}
		got, err := command(c, r, "GET "+key)
		if err != nil {
			c.MarkUnusable()
		}
		return got != val, err
	})
	st := pool.Stats()
	t.Logf("%v; pool %+v", res, st)
	assert.Zero(t, res.wrong.Load(), "a reply to another request")
	assert.LessOrEqual(t, res.failed.Load(), int64(maxConns), "only requests in flight at the kill may fail")
	assert.LessOrEqual(t, watch.Stop(), int64(maxConns))
	assert.Positive(t, st.HealthFailures+st.BrokenClosed, "killed sessions were found and dropped")
}

func TestGoRedisThroughPool(t *testing.T) {
	needService(t, "Redis", redisAddr)
	pool := newPool(t, redisAddr, connpool.WithMaxConns(maxConns), connpool.WithMinIdle(2))
	client := redis.NewClient(&redis.Options{Addr: redisAddr, Dialer: pool.DialContext, PoolSize: maxConns})
	watch := watchCap(pool)
	res := hammer(t, 16, 200, killRedis(t), func(g, i int) (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		key, val := fmt.Sprintf("connpool:goredis:%d", g), fmt.Sprintf("v%d-%d", g, i)
		if err := client.Set(ctx, key, val, time.Minute).Err(); err != nil {
			return false, err
		}
		got, err := client.Get(ctx, key).Result()
		return got != val, err
	})
	recoverWithin(t, func(ctx context.Context) error { return client.Ping(ctx).Err() })
	require.NoError(t, client.Close())
	st := pool.Stats()
	t.Logf("%v; pool %+v", res, st)
	assert.Zero(t, res.wrong.Load())
	assert.Greater(t, res.ok.Load(), int64(16*200/2))
	assert.LessOrEqual(t, watch.Stop(), int64(maxConns))
	assert.Zero(t, st.InUse, "go-redis gave every conn back by closing it")
	assert.Positive(t, st.ReleasedClosed)
}
