package yieldlock

import (
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestMutualExclusion has goroutines increment a plain counter under the
// lock; the race detector and the final count catch any overlap.
func TestMutualExclusion(t *testing.T) {
	for _, yield := range []bool{false, true} {
		t.Run(fmt.Sprintf("yield=%v", yield), func(t *testing.T) {
			var m Mutex
			m.SetYield(yield)
			assert.Equal(t, 16*2000, hammer(&m, 16, 2000))
		})
	}
}

// hammer has workers increment a plain counter under m, rounds times
// each, and returns the count.
func hammer(m *Mutex, workers, rounds int) int {
	var (
		count int
		wg    sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for range rounds {
				m.Lock()
				count++
				m.Unlock()
			}
		})
	}
	wg.Wait()
	return count
}

// TestLongHold checks that a waiter behind a holder that outlasts the
// yields parks and still gets the lock.
func TestLongHold(t *testing.T) {
	var m Mutex
	m.SetYield(true)
	m.Lock()
	got := make(chan struct{})
	go func() {
		m.Lock()
		close(got)
		m.Unlock()
	}()
	select {
	case <-got:
		t.Fatal("Lock succeeded while held")
	default:
	}
	m.Unlock()
	<-got
}

func TestTryLock(t *testing.T) {
	var m Mutex
	assert.True(t, m.TryLock())
	assert.False(t, m.TryLock())
	m.Unlock()
	assert.True(t, m.TryLock())
	m.Unlock()
}

// BenchmarkContended compares Mutex, yielding and not, with sync.Mutex on
// a tiny critical section; run it with -cpu 1,2,8.
func BenchmarkContended(b *testing.B) {
	yielding := &Mutex{}
	yielding.SetYield(true)
	for _, l := range []struct {
		name string
		m    sync.Locker
	}{
		{"yieldlock", yielding},
		{"yieldlock-no-yield", &Mutex{}},
		{"sync", &sync.Mutex{}},
	} {
		b.Run("lock="+l.name, func(b *testing.B) {
			n := 0
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					l.m.Lock()
					n++
					l.m.Unlock()
				}
			})
		})
	}
}

func TestOversubscribed(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	runtime.GOMAXPROCS(runtime.NumCPU())
	assert.False(t, Oversubscribed())
	runtime.GOMAXPROCS(runtime.NumCPU() + 1)
	assert.True(t, Oversubscribed())
}
