package connpoolfleet

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// FakeTarget is a target with no pool: its load is what f says given the
// cap set on it last.
func FakeTarget(f func(cap int) (open, inUse, waiting int)) Target {
	return &fakeTarget{f: f}
}

type fakeTarget struct {
	f   func(cap int) (open, inUse, waiting int)
	cap atomic.Int64
}

func (t *fakeTarget) setCap(n int) error { t.cap.Store(int64(n)); return nil }
func (t *fakeTarget) reset()             {}
func (t *fakeTarget) valid() bool        { return true }
func (t *fakeTarget) load() load {
	o, u, w := t.f(int(t.cap.Load()))
	return load{open: o, inUse: u, waiting: w}
}

// RenewOnce runs one renew of the ledger script for member id, as a member
// with the default options and ttl would, naming its connection conn ("" for
// none), and returns its answer.
func RenewOnce(ctx context.Context, rdb redis.Scripter, name, id string, budget int, ttl time.Duration, demand float64, used, held int, seq int64, conn string) ([]any, error) {
	return ledger.Run(ctx, rdb, []string{"{" + name + "}"}, "renew", id, budget, ttl.Milliseconds(),
		1, 1, ttl.Milliseconds(), demand, used, held, (ttl / 3).Milliseconds(), DefaultDamping, seq, conn).Slice()
}

// ConnName is the name a member of budget with ID id gives its own
// connection to Redis.
func ConnName(budget, id string) string { return connName(budget, id) }
