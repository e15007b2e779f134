package waitq

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func drain(q *Queue[int]) []int {
	var out []int
	for e := q.PopFront(); e != nil; e = q.PopFront() {
		out = append(out, e.Value)
	}
	return out
}

func TestFIFO(t *testing.T) {
	var q Queue[int]
	assert.Nil(t, q.PopFront())
	for i := range 5 {
		q.PushBack(&Elem[int]{Value: i})
	}
	assert.Equal(t, 5, q.Len())
	var walked []int
	for e := q.Front(); e != nil; e = e.Next() {
		walked = append(walked, e.Value)
	}
	assert.Equal(t, []int{0, 1, 2, 3, 4}, walked)
	walked = nil
	for e := q.Back(); e != nil; e = e.Prev() {
		walked = append(walked, e.Value)
	}
	assert.Equal(t, []int{4, 3, 2, 1, 0}, walked, "newest first from the back")
	assert.Equal(t, []int{0, 1, 2, 3, 4}, drain(&q))
	assert.Nil(t, q.Back())
	assert.Equal(t, 0, q.Len())
}

func TestRemove(t *testing.T) {
	for _, tc := range []struct {
		name   string
		remove []int
		want   []int
	}{
		{"head", []int{0}, []int{1, 2, 3}},
		{"tail", []int{3}, []int{0, 1, 2}},
		{"middle", []int{1, 2}, []int{0, 3}},
		{"all", []int{2, 0, 3, 1}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var q Queue[int]
			elems := make([]*Elem[int], 4)
			for i := range elems {
				elems[i] = &Elem[int]{Value: i}
				q.PushBack(elems[i])
			}
			for _, i := range tc.remove {
				assert.True(t, q.Remove(elems[i]))
				assert.False(t, elems[i].Queued())
				assert.False(t, q.Remove(elems[i]), "second remove is a no-op")
			}
			assert.Equal(t, len(tc.want), q.Len())
			var back []int
			for e := q.Back(); e != nil; e = e.Prev() {
				back = append([]int{e.Value}, back...)
			}
			assert.Equal(t, tc.want, back, "the back links agree with the front ones")
			assert.Equal(t, tc.want, drain(&q))
		})
	}
}

func TestRemoveAfterPop(t *testing.T) {
	// A waiter served by a hand-off is popped; its later cancellation must
	// see that and not corrupt the list.
	var q Queue[int]
	a, b := &Elem[int]{Value: 1}, &Elem[int]{Value: 2}
	q.PushBack(a)
	q.PushBack(b)
	require.Same(t, a, q.PopFront())
	assert.False(t, q.Remove(a))
	assert.Equal(t, []int{2}, drain(&q))
	// The popped element can be queued again.
	q.PushBack(a)
	assert.Equal(t, []int{1}, drain(&q))
}

func TestPushTwicePanics(t *testing.T) {
	var q Queue[int]
	e := &Elem[int]{}
	q.PushBack(e)
	assert.PanicsWithValue(t, "connpool: waitq element pushed twice", func() { q.PushBack(e) })
}

// TestRandomOps checks the queue against a slice model under random pushes,
// pops and removals.
func TestRandomOps(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var q Queue[int]
	var model []*Elem[int]
	for i := range 10000 {
		switch rng.IntN(3) {
		case 0:
			e := &Elem[int]{Value: i}
			q.PushBack(e)
			model = append(model, e)
		case 1:
			e := q.PopFront()
			if len(model) == 0 {
				require.Nil(t, e)
				continue
			}
			require.Same(t, model[0], e)
			model = model[1:]
		case 2:
			if len(model) == 0 {
				continue
			}
			k := rng.IntN(len(model))
			require.True(t, q.Remove(model[k]))
			model = append(model[:k], model[k+1:]...)
		}
		require.Equal(t, len(model), q.Len())
	}
}
