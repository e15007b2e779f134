package integration

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
)

// redisPingPong is the RESP health check for Redis.
var redisPingPong = connpool.PingPong([]byte("PING\r\n"), []byte("+PONG\r\n"))

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
	var ok, failed, wrong atomic.Int64
	var wg sync.WaitGroup
	killAt := make(chan struct{})
	for g := range 16 {
		wg.Go(func() {
			for i := range 200 {
				if g == 0 && i == 60 {
					close(killAt)
				}
				key, val := fmt.Sprintf("connpool:test:%d", g), fmt.Sprintf("v%d-%d", g, i)
				err := func() error {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					c, err := pool.Get(ctx)
					if err != nil {
						return err
					}
					defer c.Close()
					r := bufio.NewReader(c)
					if got, err := command(c, r, "SET "+key+" "+val); err != nil || got != "+OK" {
						c.MarkUnusable()
						return fmt.Errorf("SET: %q %v", got, err)
					}
					got, err := command(c, r, "GET "+key)
					if err != nil {
						c.MarkUnusable()
						return err
					}
					if got != val {
						wrong.Add(1)
					}
					return nil
				}()
				if err != nil {
					failed.Add(1)
				} else {
					ok.Add(1)
				}
			}
		})
	}
	<-killAt
	n, err := killRedisClients(context.Background())
	require.NoError(t, err)
	assert.Positive(t, n)
	wg.Wait()
	st := pool.Stats()
	t.Logf("ok %d, failed %d, wrong %d; pool %+v", ok.Load(), failed.Load(), wrong.Load(), st)
	assert.Zero(t, wrong.Load(), "a reply to another request")
	assert.LessOrEqual(t, failed.Load(), int64(maxConns), "only requests in flight at the kill may fail")
	assert.LessOrEqual(t, watch.Stop(), int64(maxConns))
	assert.Positive(t, st.HealthFailures+st.BrokenClosed, "killed sessions were found and dropped")
}

func TestGoRedisThroughPool(t *testing.T) {
	needService(t, "Redis", redisAddr)
	pool := newPool(t, redisAddr, connpool.WithMaxConns(maxConns), connpool.WithMinIdle(2))
	client := redis.NewClient(&redis.Options{Addr: redisAddr, Dialer: pool.DialContext, PoolSize: maxConns})
	watch := watchCap(pool)
	var ok, failed, wrong atomic.Int64
	var wg sync.WaitGroup
	killAt := make(chan struct{})
	for g := range 16 {
		wg.Go(func() {
			for i := range 200 {
				if g == 0 && i == 60 {
					close(killAt)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				key, val := fmt.Sprintf("connpool:goredis:%d", g), fmt.Sprintf("v%d-%d", g, i)
				err := client.Set(ctx, key, val, time.Minute).Err()
				var got string
				if err == nil {
					got, err = client.Get(ctx, key).Result()
				}
				cancel()
				switch {
				case err != nil:
					failed.Add(1)
				case got != val:
					wrong.Add(1)
				default:
					ok.Add(1)
				}
			}
		})
	}
	<-killAt
	_, err := killRedisClients(context.Background())
	require.NoError(t, err)
	wg.Wait()
	recoverWithin(t, func(ctx context.Context) error { return client.Ping(ctx).Err() })
	require.NoError(t, client.Close())
	st := pool.Stats()
	t.Logf("ok %d, failed %d, wrong %d; pool %+v", ok.Load(), failed.Load(), wrong.Load(), st)
	assert.Zero(t, wrong.Load())
	assert.Greater(t, ok.Load(), int64(16*200/2))
	assert.LessOrEqual(t, watch.Stop(), int64(maxConns))
	assert.Zero(t, st.InUse, "go-redis gave every conn back by closing it")
	assert.Positive(t, st.ReleasedClosed)
}
