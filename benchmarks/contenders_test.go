package benchmarks

import (
	"context"
	"testing"
	"time"
)

// TestContendersWork checks that every pool under comparison hands out
// and takes back conns, and that the waiting ones make a caller wait at
// their cap: a benchmark of a broken contender would measure nothing.
func TestContendersWork(t *testing.T) {
	for _, c := range contenders {
		t.Run(c.name, func(t *testing.T) {
			get, put := c.setup(t, 1)
			x, err := get(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !c.floor {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
				defer cancel()
				if _, err := get(ctx); err == nil {
					t.Fatal("a second get at a cap of 1 did not wait")
				}
			}
			put(x)
			if x, err = get(context.Background()); err != nil {
				t.Fatal(err)
			}
			put(x)
		})
	}
}
