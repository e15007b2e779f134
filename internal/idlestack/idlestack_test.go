package idlestack

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func older(a, b int) bool { return a < b }

func TestPushPopIsLIFO(t *testing.T) {
	var s Stack[int]
	_, ok := s.Pop()
	assert.False(t, ok)
	for i := range 4 {
		s.Push(i)
	}
	assert.Equal(t, 4, s.Len())
	for want := 3; want >= 0; want-- {
		got, ok := s.Pop()
		require.True(t, ok)
		assert.Equal(t, want, got)
	}
	assert.Equal(t, 0, s.Len())
}

func TestPopBottomIsOldest(t *testing.T) {
	var s Stack[int]
	_, ok := s.PopBottom()
	assert.False(t, ok)
	for i := range 3 {
		s.Push(i)
	}
	x, ok := s.PopBottom()
	require.True(t, ok)
	assert.Equal(t, 0, x)
	assert.Equal(t, []int{1, 2}, s.All())
}

func TestPopClearsSlot(t *testing.T) {
	// Popped items must not stay reachable through the backing array, or
	// a closed conn would be kept alive until the slot is overwritten.
	var s Stack[*int]
	v := new(int)
	s.Push(v)
	s.Push(v)
	backing := s.items[:2]
	s.Pop()
	s.PopBottom()
	assert.Nil(t, backing[0])
	assert.Nil(t, backing[1])
}

func TestPopFuncTakesTopmostMatch(t *testing.T) {
	var s Stack[int]
	for _, v := range []int{1, 2, 3, 4, 5} {
		s.Push(v)
	}
	odd := func(x int) bool { return x%2 == 1 }
	x, ok := s.PopFunc(odd)
	require.True(t, ok)
	assert.Equal(t, 5, x)
	x, ok = s.PopFunc(func(x int) bool { return x == 2 })
	require.True(t, ok)
	assert.Equal(t, 2, x)
	assert.Equal(t, []int{1, 3, 4}, s.All())
	_, ok = s.PopFunc(func(x int) bool { return x > 10 })
	assert.False(t, ok)
	assert.Equal(t, []int{1, 3, 4}, s.All())
}

func TestInsertKeepsOrder(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start []int
		x     int
		want  []int
	}{
		{"empty", nil, 5, []int{5}},
		{"bottom", []int{2, 4}, 1, []int{1, 2, 4}},
		{"middle", []int{2, 4}, 3, []int{2, 3, 4}},
		{"top", []int{2, 4}, 9, []int{2, 4, 9}},
		{"equal goes above", []int{2, 4}, 4, []int{2, 4, 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s Stack[int]
			for _, v := range tc.start {
				s.Push(v)
			}
			s.Insert(tc.x, older)
			assert.Equal(t, tc.want, s.All())
		})
	}
}

func TestRemoveFunc(t *testing.T) {
	var s Stack[int]
	for i := range 10 {
		s.Push(i)
	}
	var seen []int
	removed := s.RemoveFunc(func(x int) bool {
		seen = append(seen, x)
		return x%3 == 0
	}, nil)
	assert.Equal(t, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, seen, "walks bottom up")
	assert.Equal(t, []int{0, 3, 6, 9}, removed)
	assert.Equal(t, []int{1, 2, 4, 5, 7, 8}, s.All())
	full := s.items[:cap(s.items)]
	for _, v := range full[s.Len():10] {
		assert.Zero(t, v, "vacated slots are cleared")
	}
}

// TestRandomOpsStaySorted drives the stack with random operations and
// checks the sorted-by-recency invariant after each.
func TestRandomOpsStaySorted(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var s Stack[int]
	clock := 0
	var out []int
	for range 5000 {
		switch rng.IntN(5) {
		case 0, 1:
			clock++
			s.Push(clock)
		case 2:
			s.Pop()
		case 3:
			if x, ok := s.PopBottom(); ok && rng.IntN(2) == 0 {
				s.Insert(x, older) // back from a check, keeping its age
			}
		case 4:
			limit := rng.IntN(clock + 1)
			out = s.RemoveFunc(func(x int) bool { return x < limit }, out[:0])
			for _, x := range out {
				require.Less(t, x, limit)
			}
		}
		require.True(t, slices.IsSorted(s.All()), "stack out of order: %v", s.All())
	}
}
