package slots

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// queued starts an Acquire and waits until it is queued; the channel gets
// its result.
func queued(t *testing.T, s *Slots, ctx context.Context) <-chan error {
	t.Helper()
	s.mu.Lock()
	before := s.waiters.Len()
	s.mu.Unlock()
	done := make(chan error, 1)
	go func() { done <- s.Acquire(ctx) }()
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.waiters.Len() == before+1
	}, 5*time.Second, time.Millisecond)
	return done
}

// TestWaiterKeepsItsPlace pins the queue of a connpool Group: a waiter
// that stops waiting for a while (a dial that looks for an idle conn to
// evict, every 20ms) keeps its place. When such a waiter left and joined
// again, a raised size served four waiters in the order 4 3 2 1.
func TestWaiterKeepsItsPlace(t *testing.T) {
	s := New(1)
	require.True(t, s.TryAcquire())
	var ws []*Waiter
	for i := range 4 {
		ws = append(ws, s.Join(int64(i+1)))
		n, oldest := s.Waiting()
		assert.Equal(t, i+1, n)
		assert.Equal(t, int64(1), oldest, "the oldest waiter's stamp")
	}
	for i, w := range ws {
		s.Resize(2 + i)
		for j, other := range ws {
			select {
			case <-other.Granted():
				assert.LessOrEqual(t, j, i, "waiter %d served before waiter %d", j+1, i+1)
			default:
				assert.Greater(t, j, i, "waiter %d not served by the raise to %d", j+1, 2+i)
			}
		}
		assert.False(t, s.Leave(w), "a granted waiter cannot leave: it holds a slot")
	}
	n, oldest := s.Waiting()
	assert.Zero(t, n)
	assert.Zero(t, oldest)
	used, size := s.Used()
	assert.Equal(t, 5, used)
	assert.Equal(t, 5, size)
}

// TestLeave: a waiter that leaves gives up its place, not a slot; one
// granted at once by Join holds its slot.
func TestLeave(t *testing.T) {
	s := New(1)
	first := s.Join(0)
	select {
	case <-first.Granted():
	default:
		t.Fatal("a free slot was not granted at once")
	}
	second, third := s.Join(0), s.Join(0)
	assert.True(t, s.Leave(second))
	s.Release()
	select {
	case <-third.Granted():
	default:
		t.Fatal("the waiter behind one that left was not served")
	}
	s.Release()
	used, _ := s.Used()
	assert.Zero(t, used)
}

// TestFree: a slot is free for a newcomer only below the size with
// nobody waiting.
func TestFree(t *testing.T) {
	s := New(1)
	assert.True(t, s.Free())
	require.True(t, s.TryAcquire())
	assert.False(t, s.Free(), "at the size")
	s.Resize(2)
	assert.True(t, s.Free(), "below a raised size")
	require.True(t, s.TryAcquire())
	w := s.Join(7)
	assert.Equal(t, int64(7), w.At())
	s.Resize(3)
	<-w.Granted()
	s.Resize(4)
	assert.True(t, s.Free())
	w = s.Join(0)
	<-w.Granted()
	assert.False(t, s.Free(), "at the size again")
	s.Resize(3)
	s.Release()
	assert.False(t, s.Free(), "after a shrink, until enough are released")
	s.Release()
	assert.True(t, s.Free())
}

func TestFirstComeFirstServed(t *testing.T) {
	s := New(1)
	require.True(t, s.TryAcquire())
	first := queued(t, s, context.Background())
	second := queued(t, s, context.Background())
	assert.False(t, s.TryAcquire(), "a newcomer never jumps the queue")
	s.Release()
	require.NoError(t, <-first)
	select {
	case <-second:
		t.Fatal("the second waiter was served with no slot free")
	default:
	}
	s.Release()
	require.NoError(t, <-second)
	s.Release()
	used, size := s.Used()
	assert.Equal(t, 0, used)
	assert.Equal(t, 1, size)
}

func TestResize(t *testing.T) {
	s := New(2)
	require.True(t, s.TryAcquire())
	require.True(t, s.TryAcquire())
	waiting := queued(t, s, context.Background())
	s.Resize(3) // growing serves the waiter at once
	require.NoError(t, <-waiting)

	s.Resize(1) // shrinking takes nothing back
	used, _ := s.Used()
	assert.Equal(t, 3, used)
	s.Release()
	s.Release()
	assert.False(t, s.TryAcquire(), "over the size until enough are released")
	s.Release()
	assert.True(t, s.TryAcquire())
}

func TestAcquireCancelled(t *testing.T) {
	s := New(1)
	require.True(t, s.TryAcquire())
	ctx, cancel := context.WithCancel(context.Background())
	first := queued(t, s, ctx)
	second := queued(t, s, context.Background())
	cancel()
	require.ErrorIs(t, <-first, context.Canceled)
	s.Release()
	require.NoError(t, <-second, "the waiter behind a cancelled one is served")
	s.Release()
}

// TestNeverOverTheSize hammers Acquire, Release and Resize and checks
// that the slots held never exceed the size, but after a shrink.
func TestNeverOverTheSize(t *testing.T) {
	s := New(3)
	var held, peak atomic.Int32
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 300 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%3)*time.Millisecond)
				err := s.Acquire(ctx)
				cancel()
				if err != nil {
					continue
				}
				n := held.Add(1)
				for {
					if old := peak.Load(); n <= old || peak.CompareAndSwap(old, n) {
						break
					}
				}
				held.Add(-1)
				s.Release()
				if w == 0 && i%50 == 0 {
					s.Resize(3) // a no-op resize must not hand out extra slots
				}
			}
		})
	}
	wg.Wait()
	assert.LessOrEqual(t, peak.Load(), int32(3))
	used, _ := s.Used()
	assert.Zero(t, used)
}
