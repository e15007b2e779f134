package connpoolotel_test

import (
	"context"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/connpoolotel"
)

// BenchmarkGetPut measures what the hooks add to a Get and Put of an idle
// conn: hooks=none is the pool alone, hooks=otel records use_time on an
// SDK meter with a manual reader (a Get served at once records nothing).
func BenchmarkGetPut(b *testing.B) {
	for _, c := range []struct {
		name  string
		hooks bool
	}{{"hooks=none", false}, {"hooks=otel", true}} {
		for _, mode := range []string{"serial", "parallel"} {
			b.Run(c.name+"/"+mode, func(b *testing.B) {
				srv := startServer(b)
				var opts []connpool.Option
				if c.hooks {
					mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
					b.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
					m, err := connpoolotel.New(mp)
					if err != nil {
						b.Fatal(err)
					}
					opts = append(opts, connpool.WithHooks(m.Hooks()))
				}
				pool := newPool(b, srv.Addr(), opts...)
				getPut := func() error {
					conn, err := pool.Get(context.Background())
					if err != nil {
						return err
					}
					return conn.Close()
				}
				b.ReportAllocs()
				if mode == "serial" {
					for b.Loop() {
						if err := getPut(); err != nil {
							b.Fatal(err)
						}
					}
					return
				}
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := getPut(); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}
