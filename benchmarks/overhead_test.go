// Package benchmarks compares connpool with other pools and with floors,
// side by side in one process. See README.md for the command and a run.
package benchmarks

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"runtime/metrics"
	"testing"

	"github.com/jackc/puddle/v2"

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/internal/fakeconn"
)

// contender is one pool under test, reduced to get and put.
type contender struct {
	name string
	// setup returns get and put for a pool of size conns, all idle.
	setup func(b testing.TB, size int) (get func(context.Context) (any, error), put func(any))
	// canWait says whether the pool can make a caller wait (the stack
	// floor cannot).
	canWait bool
	// floor marks the hand-written floors, which ignore contexts.
	floor bool
	// setupWaits, if set, does what setup does and also returns a reader
	// of the pool's count of Gets that waited, for the starved mode's
	// waits/op. Only connpool has one.
	setupWaits func(b testing.TB, size int) (get func(context.Context) (any, error), put func(any), waits func() int64)
}

var contenders = []contender{
	{name: "connpool", canWait: true, setupWaits: setupConnpool, setup: func(b testing.TB, size int) (func(context.Context) (any, error), func(any)) {
		get, put, _ := setupConnpool(b, size)
		return get, put
	}},
	{name: "puddle", canWait: true, setup: func(b testing.TB, size int) (func(context.Context) (any, error), func(any)) {
		p, err := puddle.NewPool(&puddle.Config[net.Conn]{
			Constructor: func(context.Context) (net.Conn, error) { return &fakeconn.Conn{}, nil },
			Destructor:  func(net.Conn) {},
			MaxSize:     int32(size),
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(p.Close)
		if err := p.CreateResource(context.Background()); err != nil {
			b.Fatal(err)
		}
		return func(ctx context.Context) (any, error) { return p.Acquire(ctx) },
			func(r any) { r.(*puddle.Resource[net.Conn]).Release() }
	}},
	{name: "database-sql", canWait: true, setup: func(b testing.TB, size int) (func(context.Context) (any, error), func(any)) {
		db := openFakeDB(size)
		b.Cleanup(func() { db.Close() })
		return func(ctx context.Context) (any, error) { return db.Conn(ctx) },
			func(c any) { c.(interface{ Close() error }).Close() }
	}},
	{name: "floor-chan", canWait: true, floor: true, setup: func(b testing.TB, size int) (func(context.Context) (any, error), func(any)) {
		ch := newChanPool(size)
		return func(context.Context) (any, error) { return ch.get(), nil },
			func(c any) { ch.put(c.(net.Conn)) }
	}},
	fifoFloor("floor-fifo", false),
	fifoFloor("floor-fifo-timed", true),
	{name: "floor-stack", floor: true, setup: func(b testing.TB, size int) (func(context.Context) (any, error), func(any)) {
		s := newStackPool(size)
		return func(context.Context) (any, error) { return s.get(), nil },
			func(c any) { s.put(c.(net.Conn)) }
	}},
}

// fifoFloor is the contender of a fifoPool, timed or not.
func fifoFloor(name string, timed bool) contender {
	return contender{name: name, canWait: true, floor: true, setup: func(b testing.TB, size int) (func(context.Context) (any, error), func(any)) {
		p := newFIFOPool(size, timed)
		return func(context.Context) (any, error) { return p.get(), nil },
			func(c any) { p.put(c.(net.Conn)) }
	}}
}

// BenchmarkOverhead measures one Get and one Put of an idle in-memory conn
// in each pool: from one goroutine (sequential), from GOMAXPROCS
// goroutines with a conn each (parallel), from 8×GOMAXPROCS goroutines
// sharing GOMAXPROCS/2+1 conns (starved: most Gets wait), and from
// 8×GOMAXPROCS goroutines with a conn each that yield while they hold it
// (hold: the starved mode's crowd, switching as a busy service's do, and
// nobody waits).
func BenchmarkOverhead(b *testing.B) {
	ctx := context.Background()
	for _, c := range contenders {
		b.Run("pool="+c.name+"/mode=sequential", func(b *testing.B) {
			get, put := c.setup(b, 1)
			runSequential(b, ctx, get, put)
		})
		b.Run("pool="+c.name+"/mode=parallel", func(b *testing.B) {
			get, put := c.setup(b, runtime.GOMAXPROCS(0))
			runParallel(b, ctx, get, put)
		})
		if !c.canWait {
			continue
		}
		b.Run("pool="+c.name+"/mode=starved", func(b *testing.B) {
			size := runtime.GOMAXPROCS(0)/2 + 1
			b.SetParallelism(8)
			if c.setupWaits == nil {
				get, put := c.setup(b, size)
				runParallel(b, ctx, get, put)
				return
			}
			get, put, waits := c.setupWaits(b, size)
			// The wait count is read once either side of the timed loop,
			// not per op, so that reading it costs the loop nothing.
			before, blocked := waits(), mutexWait()
			runParallel(b, ctx, get, put)
			b.ReportMetric(float64(waits()-before)/float64(b.N), "waits/op")
			b.ReportMetric(float64(mutexWait()-blocked)/float64(b.N), "mutexwait-ns/op")
		})
		b.Run("pool="+c.name+"/mode=hold", func(b *testing.B) {
			b.SetParallelism(8)
			get, put := c.setup(b, 8*runtime.GOMAXPROCS(0))
			before := mutexWait()
			runHolding(b, ctx, get, put)
			b.ReportMetric(float64(mutexWait()-before)/float64(b.N), "mutexwait-ns/op")
		})
	}
}

// mutexWait returns how long goroutines have been blocked on mutexes
// (sync's and the runtime's own), in nanoseconds, so far. Read either
// side of a timed loop and divided by its ops, it is summed over the
// goroutines, so it exceeds the op's own time when several wait at once.
func mutexWait() float64 {
	s := []metrics.Sample{{Name: "/sync/mutex/wait/total:seconds"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindFloat64 {
		return 0
	}
	return s[0].Value.Float64() * 1e9
}

// runHolding is runParallel with a yield while each conn is held, so that
// the other goroutines run while it is out.
func runHolding(b *testing.B, ctx context.Context, get func(context.Context) (any, error), put func(any)) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			x, err := get(ctx)
			if err != nil {
				b.Error(err)
				return
			}
			runtime.Gosched()
			put(x)
		}
	})
}

// setupConnpool returns get and put for a connpool of size in-memory conns,
// all idle, with the checkout peek off (fake conns have no socket), and
// waits, which reads the pool's Stats().WaitCount.
func setupConnpool(b testing.TB, size int) (get func(context.Context) (any, error), put func(any), waits func() int64) {
	p, err := connpool.New("tcp", "fake:0", connpool.WithMaxConns(size), connpool.WithDialer(fakeconn.Dial),
		connpool.WithLivenessCheck(false))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	warm := make([]*connpool.Conn, size)
	for i := range warm {
		if warm[i], err = p.Get(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range warm {
		c.Close()
	}
	return func(ctx context.Context) (any, error) { return p.Get(ctx) },
		func(c any) { p.Put(c.(*connpool.Conn)) },
		func() int64 { return p.Stats().WaitCount }
}

func runSequential(b *testing.B, ctx context.Context, get func(context.Context) (any, error), put func(any)) {
	b.ReportAllocs()
	for b.Loop() {
		x, err := get(ctx)
		if err != nil {
			b.Fatal(err)
		}
		put(x)
	}
}

func runParallel(b *testing.B, ctx context.Context, get func(context.Context) (any, error), put func(any)) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			x, err := get(ctx)
			if err != nil {
				b.Error(err)
				return
			}
			put(x)
		}
	})
}

// BenchmarkIdleScale measures connpool Get+Put with many idle conns: the
// cost must not grow with the idle set.
func BenchmarkIdleScale(b *testing.B) {
	ctx := context.Background()
	for _, idle := range []int{1, 100, 10000} {
		b.Run(fmt.Sprintf("idle=%d", idle), func(b *testing.B) {
			get, put := contenders[0].setup(b, idle)
			runSequential(b, ctx, get, put)
		})
	}
}
