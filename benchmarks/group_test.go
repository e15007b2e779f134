package benchmarks

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/internal/fakeconn"
)

// BenchmarkGroup measures a Group spread over 1 and 1,000 addresses, with
// in-memory conns, round robin over the addresses: the cost of finding an
// address's pool must not grow with the number of pools.
//   - op=dialcontext: Group.DialContext and Close, the way net/http uses
//     a Group; each conn is dialed for the call and closed after it.
//   - op=getput: Group.Get and Put of an idle conn.
//
// Sequential is one goroutine; parallel is GOMAXPROCS goroutines.
func BenchmarkGroup(b *testing.B) {
	ctx := context.Background()
	for _, op := range []string{"dialcontext", "getput"} {
		for _, n := range []int{1, 1000} {
			addrs := make([]string, n)
			for i := range addrs {
				addrs[i] = fmt.Sprintf("host%d.example:443", i)
			}
			do := func(g *connpool.Group, addr string) error {
				if op == "dialcontext" {
					c, err := g.DialContext(ctx, "tcp", addr)
					if err != nil {
						return err
					}
					return c.Close()
				}
				c, err := g.Get(ctx, "tcp", addr)
				if err != nil {
					return err
				}
				return c.Close()
			}
			newGroup := func(b *testing.B) *connpool.Group {
				g, err := connpool.NewGroup(connpool.WithDialer(fakeconn.Dial))
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { g.Close() })
				for _, a := range addrs { // every pool exists before the timer starts
					if err := do(g, a); err != nil {
						b.Fatal(err)
					}
				}
				return g
			}
			b.Run(fmt.Sprintf("op=%s/addrs=%d/mode=sequential", op, n), func(b *testing.B) {
				g := newGroup(b)
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if err := do(g, addrs[i%n]); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
			b.Run(fmt.Sprintf("op=%s/addrs=%d/mode=parallel", op, n), func(b *testing.B) {
				g := newGroup(b)
				var next atomic.Uint64
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					i := int(next.Add(7919)) // each goroutine starts elsewhere in the ring
					for pb.Next() {
						if err := do(g, addrs[i%n]); err != nil {
							b.Error(err)
							return
						}
						i++
					}
				})
			})
		}
	}
}
