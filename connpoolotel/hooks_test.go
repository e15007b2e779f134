package connpoolotel_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
)

// TestHooksChainWithUsersOwn checks that the hooks compose with the
// user's, either way round: both run, and the metrics are recorded.
func TestHooksChainWithUsersOwn(t *testing.T) {
	for _, c := range []struct {
		name  string
		hooks func(ours, mine connpool.Hooks) []connpool.Option
	}{
		{"WithHooks twice", func(ours, mine connpool.Hooks) []connpool.Option {
			return []connpool.Option{connpool.WithHooks(mine), connpool.WithHooks(ours)}
		}},
		{"Chain", func(ours, mine connpool.Hooks) []connpool.Option {
			return []connpool.Option{connpool.WithHooks(ours.Chain(mine))}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := startServer(t)
			h := newHarness(t)
			puts := make(chan connpool.PutEvent, 1)
			mine := connpool.Hooks{Put: func(ev connpool.PutEvent) { puts <- ev }}
			opts := append(c.hooks(h.m.Hooks(), mine), connpool.WithName("p"))
			pool := newPool(t, srv.Addr(), opts...)
			conn, err := pool.Get(context.Background())
			require.NoError(t, err)
			require.NoError(t, conn.Close())
			assert.Equal(t, "p", (<-puts).Pool, "the user's hook ran")
			dp, ok := h.collect(t).histPoint("db.client.connection.use_time", poolName("p"))
			require.True(t, ok, "ours ran")
			assert.EqualValues(t, 1, dp.Count)
		})
	}
}
