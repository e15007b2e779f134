package connpoolotel

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/connpool/connpool"
)

// Hooks returns the hooks that record the histograms of m: create_time on
// each successful DialDone, wait_time on each GetDone of a Get that queued,
// and use_time on each Put. Give them to [connpool.WithHooks], next to the
// user's own or chained with them ([connpool.Hooks.Chain]); the same hooks
// serve any number of pools. Their PoolClosed hook forgets the pool's name.
func (m *Metrics) Hooks() connpool.Hooks {
	return connpool.Hooks{
		DialDone: func(ev connpool.DialDoneEvent) {
			if ev.Err == nil {
				m.record(m.createTime, ev.Pool, ev.Duration)
			}
		},
		GetDone: func(ev connpool.GetDoneEvent) {
			if ev.Queued {
				m.record(m.waitTime, ev.Pool, ev.Waited)
			}
		},
		Put: func(ev connpool.PutEvent) {
			m.record(m.useTime, ev.Pool, ev.Held)
		},
		PoolClosed: func(ev connpool.PoolEvent) {
			m.byPool.Delete(ev.Pool)
		},
	}
}

// record records d, in seconds, in h for the pool named pool. The hooks
// carry no context, so neither does the measurement.
func (m *Metrics) record(h metric.Float64Histogram, pool string, d time.Duration) {
	h.Record(context.Background(), d.Seconds(), m.recordOptions(pool)...)
}

// recordOptions returns the record options that name pool, made once per
// pool name and kept in m.byPool until its PoolClosed event.
func (m *Metrics) recordOptions(pool string) []metric.RecordOption {
	if opts, ok := m.byPool.Load(pool); ok {
		return opts.([]metric.RecordOption)
	}
	opts, _ := m.byPool.LoadOrStore(pool, []metric.RecordOption{metric.WithAttributeSet(poolSet(pool))})
	return opts.([]metric.RecordOption)
}
