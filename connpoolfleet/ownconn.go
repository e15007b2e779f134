package connpoolfleet

// A member's own connection to Redis: it renews over it, named after the
// budget and the member, so that the ledger can tell a stopped process
// (its connection still open) from a dead one (closed by the kernel), and
// it checks the connections of held members with CLIENT LIST. See Safety
// in the package doc.

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// script runs the ledger script with args. A member with a connection of
// its own runs it there, with CLIENT SETNAME in the same round trip, so
// that the name is on whatever connection renewed last; if that connection
// fails (Redis restarted, or closed it), it dials a new one and tries once
// more, within ctx (go-redis's own retries on the broken connection, with
// their backoff, come first). Otherwise it runs the script through rdb.
func (m *Member) script(ctx context.Context, args []any) ([]any, error) {
	if m.newConn == nil {
		return ledger.Run(ctx, m.rdb, m.keys, args...).Slice()
	}
	for retried := false; ; retried = true {
		fresh := m.conn == nil
		if fresh {
			m.conn = m.newConn()
		}
		res, err := m.scriptOn(ctx, m.conn, args)
		var rerr redis.Error
		if err == nil || errors.As(err, &rerr) {
			// Redis answered: the connection is sound.
			if m.connName == "" {
				// It refused the name: renew through rdb from now on.
				m.closeConn()
				m.newConn = nil
			}
			return res, err
		}
		m.closeConn()
		if fresh || retried {
			return nil, err
		}
	}
}

// scriptOn runs CLIENT SETNAME and the script in one pipeline on c, and
// again with EVAL if Redis does not have the script (a restart, a SCRIPT
// FLUSH).
func (m *Member) scriptOn(ctx context.Context, c *redis.Conn, args []any) ([]any, error) {
	var setName *redis.BoolCmd
	var res *redis.Cmd
	run := func(eval bool) error {
		_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			setName = p.ClientSetName(ctx, m.connName)
			if eval {
				res = ledger.Eval(ctx, p, m.keys, args...)
			} else {
				res = ledger.EvalSha(ctx, p, m.keys, args...)
			}
			return nil
		})
		return err
	}
	err := run(false)
	if err != nil && redis.HasErrorPrefix(res.Err(), "NOSCRIPT") {
		err = run(true)
	}
	if err != nil && res.Err() == nil {
		// Only the name was refused (an ACL without client|setname): the
		// member cannot be told from a dead one; its grant is released at
		// its lease's end, and it renews through rdb from now on.
		m.cfg.logger.Warn("connpoolfleet: Redis refused CLIENT SETNAME (allow client|setname to the fleet's Redis user); the member's grant will be released when its lease ends, even if its process is only stopped",
			"budget", m.name, "member", m.cfg.id, "err", setName.Err())
		m.connName = ""
	}
	if res.Err() != nil {
		return nil, res.Err()
	}
	return res.Slice()
}

// closeConn closes the member's own connection (it is discarded, not
// pooled, since it carries the member's name); the next renew dials one.
func (m *Member) closeConn() {
	if m.conn != nil {
		_ = m.conn.Close()
		m.conn = nil
	}
}

// gone returns, as id and seq pairs for the script, the members of check
// (id, connection name, seq triples from the ledger) that no connection to
// Redis is named after: their processes are gone, or cut off from Redis.
// If Redis refuses CLIENT LIST (an ACL), it returns them all: their grants
// are released as if their processes were gone, and the member logs it
// once.
func (m *Member) gone(ctx context.Context, check []string) ([]any, error) {
	if m.conn == nil {
		m.conn = m.newConn()
	}
	list, err := m.conn.Do(ctx, "CLIENT", "LIST", "TYPE", "normal").Text()
	var rerr redis.Error
	if err != nil && !errors.As(err, &rerr) {
		m.closeConn()
		return nil, err
	}
	// found has the names to look for; set true once seen.
	found := map[string]bool{}
	for i := 1; i < len(check); i += 3 {
		found[check[i]] = false
	}
	if err != nil {
		if !m.warned {
			m.warned = true
			m.cfg.logger.Warn("connpoolfleet: Redis refused CLIENT LIST; grants are released when leases end, even those of members that are only stopped (allow client|list to the fleet's Redis user)",
				"budget", m.name, "member", m.cfg.id, "err", err)
		}
	} else {
		// One line per connection, fields separated by spaces; a name has
		// no space in it.
		for line := range strings.SplitSeq(list, "\n") {
			if i := strings.Index(line, " name="); i >= 0 {
				n := line[i+len(" name="):]
				if j := strings.IndexByte(n, ' '); j >= 0 {
					n = n[:j]
				}
				n = strings.TrimSpace(n)
				if _, ok := found[n]; ok && n != "" {
					found[n] = true
				}
			}
		}
	}
	var gone []any
	for i := 0; i+2 < len(check); i += 3 {
		if !found[check[i+1]] {
			gone = append(gone, check[i], check[i+2])
		}
	}
	return gone, nil
}

// connOf returns how a member gets a connection of its own from rdb: a
// redis.Client's EphemeralConn (discarded when closed, so that no pooled
// caller inherits the name). Other clients (a ClusterClient, a Ring) give
// none: nil.
func connOf(rdb redis.Scripter) func() *redis.Conn {
	if c, ok := rdb.(interface{ EphemeralConn() *redis.Conn }); ok {
		return c.EphemeralConn
	}
	return nil
}

// connName is the name a member gives its connection: the budget and the
// ID, with every byte Redis does not take in a name (a space, a control
// byte, anything outside ASCII) and ':' and '%' escaped as %XX, so that two
// members never share a name.
func connName(budget, id string) string {
	esc := func(s string) string {
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			if c := s[i]; c > ' ' && c < 0x7f && c != ':' && c != '%' {
				b.WriteByte(c)
			} else {
				fmt.Fprintf(&b, "%%%02X", c)
			}
		}
		return b.String()
	}
	return "connpoolfleet:" + esc(budget) + ":" + esc(id)
}
