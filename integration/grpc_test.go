package integration

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/connpool/connpool"
)

// startHealthServer serves the standard health service on addr.
func startHealthServer(t *testing.T, addr string) (*grpc.Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	s := grpc.NewServer()
	healthpb.RegisterHealthServer(s, health.NewServer())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(ln)
	}()
	t.Cleanup(func() {
		s.Stop()
		<-done
	})
	return s, ln.Addr().String()
}

// TestGRPCThroughPool: a grpc-go client dials through the pool; the
// server is stopped and started again on the same port, and the client
// recovers through the pool by itself.
func TestGRPCThroughPool(t *testing.T) {
	server, addr := startHealthServer(t, "127.0.0.1:0")
	// No spare conns for gRPC: it keeps one long-lived HTTP/2 conn, and a
	// gRPC server holds a conn that has not sent its preface for its
	// ConnectionTimeout (120s), which its Stop waits for.
	pool := newPool(t, addr, connpool.WithMaxConns(4),
		connpool.WithDialBackoff(10*time.Millisecond, 100*time.Millisecond))
	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithContextDialer(pool.DialAddr),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer cc.Close()
	client := healthpb.NewHealthClient(cc)
	check := func(ctx context.Context) error {
		resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
		if err == nil && resp.Status != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("status %v", resp.Status)
		}
		return err
	}

	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				assert.NoError(t, check(ctx))
				cancel()
			}
		})
	}
	wg.Wait()
	assert.LessOrEqual(t, pool.Stats().OpenConns, 4)

	server.Stop()
	startHealthServer(t, addr)
	recoverWithin(t, check)
	require.NoError(t, cc.Close())
	require.Eventually(t, func() bool { return pool.Stats().InUse == 0 }, waitFor, tick)
	st := pool.Stats()
	assert.Positive(t, st.ReleasedClosed, "the conn to the stopped server was destroyed")
	assert.GreaterOrEqual(t, st.Dials, int64(2))
}
