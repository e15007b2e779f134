package connpoolfleet_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool/connpoolfleet"
)

// clientIDs returns the IDs of the connections to Redis named name.
func clientIDs(t *testing.T, rdb *redis.Client, name string) []string {
	t.Helper()
	list, err := rdb.Do(context.Background(), "CLIENT", "LIST", "TYPE", "normal").Text()
	require.NoError(t, err)
	var ids []string
	for line := range strings.SplitSeq(list, "\n") {
		var id string
		named := false
		for f := range strings.FieldsSeq(line) {
			if v, ok := strings.CutPrefix(f, "id="); ok {
				id = v
			}
			if f == "name="+name {
				named = true
			}
		}
		if named {
			ids = append(ids, id)
		}
	}
	return ids
}

func idleTarget() connpoolfleet.Target {
	return connpoolfleet.FakeTarget(func(int) (int, int, int) { return 0, 0, 0 })
}

// TestConnNamedAfterReconnect: Redis closes the member's own connection (as
// its timeout, a restart or a failover would); the renew that finds it
// closed dials a new one and names it in the same round trip, so no renew
// fails and the name is back before the next lease could end. After Leave
// no connection carries the name: it is discarded, not pooled.
func TestConnNamedAfterReconnect(t *testing.T) {
	r := startRedis(t)
	rdb := r.client(t)
	ctx := context.Background()
	const budgetName, id = "reconnect", "m 1:%" // escaped in the name
	name := connpoolfleet.ConnName(budgetName, id)
	assert.Equal(t, "connpoolfleet:reconnect:m%201%3A%25", name)
	// The renew that finds the connection closed has an interval (500ms)
	// for go-redis's own retries on it (3, with backoff) and its own on a
	// new one.
	m, err := connpoolfleet.Join(ctx, rdb, budgetName, 4, []connpoolfleet.Target{idleTarget()},
		connpoolfleet.WithTTL(testTTL), connpoolfleet.WithID(id))
	require.NoError(t, err)
	left := false
	t.Cleanup(func() {
		if !left {
			_ = m.Leave(ctx)
		}
	})
	// A new ledger starts with a learning period of one TTL.
	require.Eventually(t, func() bool { return m.Stats().State == connpoolfleet.StateGranted }, settle, tick)
	ids := clientIDs(t, rdb, name)
	require.Len(t, ids, 1, "the member's connection is not named")
	require.NoError(t, rdb.Do(ctx, "CLIENT", "KILL", "ID", ids[0]).Err())
	renews := m.Stats().Renews
	require.Eventually(t, func() bool { return m.Stats().Renews >= renews+2 }, settle, tick, "the member stopped renewing")
	now := clientIDs(t, rdb, name)
	require.Len(t, now, 1, "the new connection is not named")
	assert.NotEqual(t, ids[0], now[0])
	assert.Zero(t, m.Stats().RenewErrors, "a renew failed on the closed connection")
	assert.Equal(t, connpoolfleet.StateGranted, m.Stats().State)

	require.NoError(t, m.Leave(ctx))
	left = true
	require.Eventually(t, func() bool { return len(clientIDs(t, rdb, name)) == 0 }, settle, tick,
		"a connection still carries the name after Leave")
}

// TestJoinWithoutOwnConn: a client that cannot give the member a connection
// of its own (here a Scripter that is not a *redis.Client, as a
// ClusterClient) still joins and renews, naming no connection: its grant is
// released at its lease's end, as before.
func TestJoinWithoutOwnConn(t *testing.T) {
	r := startRedis(t)
	rdb := r.client(t)
	ctx := context.Background()
	m, err := connpoolfleet.Join(ctx, struct{ redis.Scripter }{rdb}, "ttlonly", 4, []connpoolfleet.Target{idleTarget()},
		connpoolfleet.WithTTL(300*time.Millisecond), connpoolfleet.WithID("plain"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Leave(ctx) })
	require.Eventually(t, func() bool { return m.Stats().State == connpoolfleet.StateGranted }, settle, tick)
	conn, err := rdb.HGet(ctx, "{ttlonly}:m:plain", "conn").Result()
	require.NoError(t, err)
	assert.Empty(t, conn)
	assert.Empty(t, clientIDs(t, rdb, connpoolfleet.ConnName("ttlonly", "plain")))
}

// TestLedgerHoldsOpenConnections: three members' leases end: one with no
// connection name (released at once, TTL-only), one whose named connection
// is gone (released after a member checks), one whose named connection is
// still open (held, its grant counted, until that connection closes).
func TestLedgerHoldsOpenConnections(t *testing.T) {
	r := startRedis(t)
	rdb := r.client(t)
	ctx := context.Background()
	const name, ttl = "hold", 300 * time.Millisecond
	alive := rdb.EphemeralConn() // closed, it is gone: not back in the pool with its name
	t.Cleanup(func() { _ = alive.Close() })
	require.NoError(t, alive.ClientSetName(ctx, "alive-conn").Err())
	seq := time.Now().UnixMicro()
	for id, conn := range map[string]string{"ttl-only": "", "dead": "dead-conn", "alive": "alive-conn"} {
		_, err := connpoolfleet.RenewOnce(ctx, rdb, name, id, 20, ttl, 5, 3, 0, seq, conn)
		require.NoError(t, err)
	}
	grant := func(id string) int {
		g, err := rdb.HGet(ctx, "{"+name+"}:m:"+id, "grant").Int()
		require.NoError(t, err)
		return g
	}
	held := func(id string) bool {
		return rdb.ZScore(ctx, "{"+name+"}:h", id).Err() == nil
	}
	// In the learning period each claimed its 3 open conns.
	for _, id := range []string{"ttl-only", "dead", "alive"} {
		require.Equal(t, 3, grant(id), id)
	}
	waitUntil(t, time.Now().Add(ttl+ttl/3))
	// A member that renews finds the three leases ended and checks.
	m, err := connpoolfleet.Join(ctx, rdb, name, 20, []connpoolfleet.Target{idleTarget()},
		connpoolfleet.WithTTL(ttl), connpoolfleet.WithID("checker"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Leave(ctx) })
	require.Eventually(t, func() bool { return grant("ttl-only") == 0 && grant("dead") == 0 }, settle, tick,
		"the members without an open connection kept their grants")
	assert.False(t, held("dead"))
	assert.True(t, held("alive"), "the member with an open connection is not held")
	assert.Equal(t, 3, grant("alive"), "the member with an open connection lost its grant")
	// Checked again every interval: it stays held while its connection is
	// open, and is released once it closes.
	renews := m.Stats().Renews
	require.Eventually(t, func() bool { return m.Stats().Renews >= renews+3 }, settle, tick)
	assert.Equal(t, 3, grant("alive"))
	require.NoError(t, alive.Close())
	require.Eventually(t, func() bool { return grant("alive") == 0 && !held("alive") }, settle, tick,
		"the held grant was not released once its connection closed")
}

// TestACLWithoutClientCommands: a Redis user without client|setname makes
// the member fall back on renewing through the client, naming nothing (its
// grant released at its lease's end); one without client|list releases
// the held members it is told of as if their connections were gone. Both
// log a warning, and neither fails a renew.
func TestACLWithoutClientCommands(t *testing.T) {
	r := startRedis(t)
	rdb := r.client(t)
	ctx := context.Background()
	const name, ttl = "acl", 300 * time.Millisecond
	for _, u := range []string{"noname", "nolist"} {
		cmd := map[string]string{"noname": "-client|setname", "nolist": "-client|list"}[u]
		require.NoError(t, rdb.Do(ctx, "ACL", "SETUSER", u, "on", ">pw", "~*", "&*", "+@all", cmd).Err())
	}
	as := func(user string) *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: r.addr, Username: user, Password: "pw"})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	var logMu sync.Mutex
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, nil))
	logged := func() string {
		logMu.Lock()
		defer logMu.Unlock()
		return logs.String()
	}
	field := func(id, f string) string {
		v, _ := rdb.HGet(ctx, "{"+name+"}:m:"+id, f).Result()
		return v
	}

	// A held member with an open connection, of the default user.
	alive := rdb.EphemeralConn()
	t.Cleanup(func() { _ = alive.Close() })
	require.NoError(t, alive.ClientSetName(ctx, "alive-conn").Err())
	_, err := connpoolfleet.RenewOnce(ctx, rdb, name, "alive", 20, ttl, 5, 3, 0, time.Now().UnixMicro(), "alive-conn")
	require.NoError(t, err)

	noname, err := connpoolfleet.Join(ctx, as("noname"), name, 20, []connpoolfleet.Target{idleTarget()},
		connpoolfleet.WithTTL(ttl), connpoolfleet.WithID("noname"), connpoolfleet.WithLogger(logger))
	require.NoError(t, err)
	t.Cleanup(func() { _ = noname.Leave(ctx) })
	require.Eventually(t, func() bool { return noname.Stats().Renews >= 2 && field("noname", "conn") == "" }, settle, tick,
		"the member refused a name still names a connection")
	assert.Empty(t, clientIDs(t, rdb, connpoolfleet.ConnName(name, "noname")))

	waitUntil(t, time.Now().Add(ttl)) // alive's lease ends
	nolist, err := connpoolfleet.Join(ctx, as("nolist"), name, 20, []connpoolfleet.Target{idleTarget()},
		connpoolfleet.WithTTL(ttl), connpoolfleet.WithID("nolist"), connpoolfleet.WithLogger(logger))
	require.NoError(t, err)
	t.Cleanup(func() { _ = nolist.Leave(ctx) })
	require.Eventually(t, func() bool { return field("alive", "grant") == "0" }, settle, tick,
		"a member that may not list connections did not release the held grant")
	renews := nolist.Stats().Renews
	require.Eventually(t, func() bool { return nolist.Stats().Renews >= renews+2 }, settle, tick)
	assert.Zero(t, noname.Stats().RenewErrors)
	assert.Zero(t, nolist.Stats().RenewErrors)
	assert.Contains(t, logged(), "refused CLIENT SETNAME")
	assert.Contains(t, logged(), "refused CLIENT LIST")
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}
