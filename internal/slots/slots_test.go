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
