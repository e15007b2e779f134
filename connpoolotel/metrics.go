package connpoolotel

import (
	"errors"
	"fmt"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/semconv/v1.43.0/dbconv"

	"github.com/connpool/connpool"
)

// ScopeName is the instrumentation scope of the meter New creates.
const ScopeName = "github.com/connpool/connpool/connpoolotel"

// The names of connpool's own instrument and attribute, outside the
// semantic conventions.
const (
	closedName = "connpool.client.connection.closed"
	reasonKey  = attribute.Key("connpool.close.reason")

	// getsName counts every Get that returned, by getResultKey: hit,
	// miss, or the failure's name; a failed Get's point carries the
	// failure as semconv's error.type too.
	getsName     = "connpool.client.connection.gets"
	getResultKey = attribute.Key("connpool.get.result")

	// ejectionsName counts the ejections of the pool's addresses
	// (connpool.WithOutlierEjection).
	ejectionsName = "connpool.client.connection.ejections"

	// The instruments of each address a pool of a host name dials
	// (Stats.Addresses), with network.peer.address and network.peer.port.
	backendCountName      = "connpool.client.connection.backend.count"
	backendDialsName      = "connpool.client.connection.backend.dials"
	backendDialErrorsName = "connpool.client.connection.backend.dial_errors"
	backendBackingOffName = "connpool.client.connection.backend.backing_off"
	backendDrainingName   = "connpool.client.connection.backend.draining"
	backendEjectedName    = "connpool.client.connection.backend.ejected"
	backendEjectionsName  = "connpool.client.connection.backend.ejections"
)

// Metrics holds the instruments for connpool pools, from one meter.
// One Metrics serves any number of pools. It is safe for concurrent use.
type Metrics struct {
	meter metric.Meter

	createTime metric.Float64Histogram
	waitTime   metric.Float64Histogram
	useTime    metric.Float64Histogram

	count    metric.Int64ObservableUpDownCounter
	idleMax  metric.Int64ObservableUpDownCounter
	idleMin  metric.Int64ObservableUpDownCounter
	max      metric.Int64ObservableUpDownCounter
	pending  metric.Int64ObservableUpDownCounter
	timeouts metric.Int64ObservableCounter
	closed   metric.Int64ObservableCounter
	gets     metric.Int64ObservableCounter
	ejected  metric.Int64ObservableCounter

	backendCount      metric.Int64ObservableUpDownCounter
	backendDials      metric.Int64ObservableCounter
	backendDialErrors metric.Int64ObservableCounter
	backendBackingOff metric.Int64ObservableGauge
	backendDraining   metric.Int64ObservableGauge
	backendEjected    metric.Int64ObservableGauge
	backendEjections  metric.Int64ObservableCounter

	// byPool holds, for the hooks, the record options of each pool name
	// seen, a []metric.RecordOption: one attribute set per pool, not one
	// per event. PoolClosed deletes the pool's entry.
	byPool sync.Map
}

// New returns Metrics whose instruments come from a meter of mp, named
// ScopeName with the schema URL of the semantic conventions followed.
// If mp is nil, New uses otel.GetMeterProvider(). It returns an error when
// the meter refuses an instrument.
func New(mp metric.MeterProvider) (*Metrics, error) {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	meter := mp.Meter(ScopeName, metric.WithSchemaURL(semconv.SchemaURL))
	bounds := metric.WithExplicitBucketBoundaries(histogramBounds()...)
	m := &Metrics{meter: meter}
	var errs []error
	keep := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}

	createTime, err := dbconv.NewClientConnectionCreateTime(meter, bounds)
	keep(err)
	waitTime, err := dbconv.NewClientConnectionWaitTime(meter, bounds)
	keep(err)
	useTime, err := dbconv.NewClientConnectionUseTime(meter, bounds)
	keep(err)
	m.createTime, m.waitTime, m.useTime = createTime.Inst(), waitTime.Inst(), useTime.Inst()

	count, err := dbconv.NewClientConnectionCountObservable(meter)
	keep(err)
	idleMax, err := dbconv.NewClientConnectionIdleMaxObservable(meter)
	keep(err)
	idleMin, err := dbconv.NewClientConnectionIdleMinObservable(meter)
	keep(err)
	maxConns, err := dbconv.NewClientConnectionMaxObservable(meter)
	keep(err)
	pending, err := dbconv.NewClientConnectionPendingRequestsObservable(meter)
	keep(err)
	timeouts, err := dbconv.NewClientConnectionTimeoutsObservable(meter)
	keep(err)
	m.count, m.idleMax, m.idleMin, m.max = count.Inst(), idleMax.Inst(), idleMin.Inst(), maxConns.Inst()
	m.pending, m.timeouts = pending.Inst(), timeouts.Inst()

	// connpool's own instruments, outside the conventions.
	counter := func(name, unit, desc string) metric.Int64ObservableCounter {
		c, err := meter.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		keep(err)
		return c
	}
	gauge := func(name, desc string) metric.Int64ObservableGauge {
		g, err := meter.Int64ObservableGauge(name, metric.WithUnit("1"), metric.WithDescription(desc))
		keep(err)
		return g
	}
	m.closed = counter(closedName, "{connection}", "The number of connections the pool closed, or let go, by reason.")
	m.gets = counter(getsName, "{request}",
		"The number of requests for a connection (Get, TryGet, DialContext) that returned, by result: hit, miss, or the error.type of a failed one.")
	m.backendCount, err = meter.Int64ObservableUpDownCounter(backendCountName, metric.WithUnit("{connection}"),
		metric.WithDescription("The number of connections to one address of the pool's host name, by state: idle or used."))
	keep(err)
	m.backendDials = counter(backendDialsName, "{connection}",
		"The number of connections dialed successfully to one address of the pool's host name.")
	m.backendDialErrors = counter(backendDialErrorsName, "{error}",
		"The number of dials to one address of the pool's host name that failed.")
	m.backendBackingOff = gauge(backendBackingOffName,
		"1 while dials to one address of the pool's host name are paused after failures, else 0.")
	m.backendDraining = gauge(backendDrainingName,
		"1 while one address that left the pool's resolved set still has connections open, else 0.")
	m.ejected = counter(ejectionsName, "{ejection}",
		"The number of times an address of the pool's host name was ejected for its failing connections.")
	m.backendEjected = gauge(backendEjectedName,
		"1 while one address of the pool's host name is ejected for its failing connections, else 0.")
	m.backendEjections = counter(backendEjectionsName, "{ejection}",
		"The number of times one address of the pool's host name was ejected for its failing connections.")

	if len(errs) > 0 {
		return nil, fmt.Errorf("connpoolotel: %w", errors.Join(errs...))
	}
	return m, nil
}

// histogramBounds returns the upper bounds of connpool's Histogram
// buckets, in seconds.
func histogramBounds() []float64 {
	b := make([]float64, connpool.HistogramBuckets)
	for i := range b {
		b[i] = connpool.HistogramBound(i).Seconds()
	}
	return b
}

// poolSet returns the attribute set that names a pool.
func poolSet(pool string) attribute.Set {
	return attribute.NewSet(semconv.DBClientConnectionPoolName(pool))
}
