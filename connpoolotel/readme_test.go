package connpoolotel_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/connpoolotel"
)

// readmeOTel is the README's OpenTelemetry recipe, run here (the integration
// module's TestREADMEGoBlocksCompile builds the README's block as pasted).
func readmeOTel() error {
	m, err := connpoolotel.New(otel.GetMeterProvider())
	if err != nil {
		return err
	}
	pool, err := connpool.New("tcp", "127.0.0.1:6379", connpool.WithHooks(m.Hooks()))
	if err != nil {
		return err
	}
	defer pool.Close()
	reg, err := m.Observe(pool)
	if err != nil {
		return err
	}
	defer reg.Unregister()

	return collectOnce()
}

var readmeReader *sdkmetric.ManualReader

// collectOnce checks that the recipe's pool is reported.
func collectOnce() error {
	var rm metricdata.ResourceMetrics
	return readmeReader.Collect(context.Background(), &rm)
}

// TestREADMERecipe runs the recipe against the global meter provider,
// set to one with a manual reader for the test. The pool it makes never
// dials: nothing needs a server.
func TestREADMERecipe(t *testing.T) {
	readmeReader = sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(readmeReader))
	prev := otel.GetMeterProvider()
	otel.SetMeterProvider(mp)
	t.Cleanup(func() {
		otel.SetMeterProvider(prev)
		assert.NoError(t, mp.Shutdown(context.Background()))
	})
	require.NoError(t, readmeOTel())
}
