package connpoolprom_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/connpool/connpool"
	"github.com/connpool/connpool/connpoolprom"
)

// readmePrometheus is the README's Prometheus recipe, run here (the integration
// module's TestREADMEGoBlocks builds the README's block as pasted).
func readmePrometheus() error {
	pool, err := connpool.New("tcp", "127.0.0.1:6379")
	if err != nil {
		return err
	}
	defer pool.Close()
	prometheus.MustRegister(connpoolprom.NewCollector(pool))

	_, err = prometheus.DefaultGatherer.Gather()
	return err
}

// TestREADMERecipe runs the recipe against a registry of its own, put in
// place of the default one for the test. The pool it makes never dials.
func TestREADMERecipe(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	prevReg, prevGat := prometheus.DefaultRegisterer, prometheus.DefaultGatherer
	prometheus.DefaultRegisterer, prometheus.DefaultGatherer = reg, reg
	t.Cleanup(func() { prometheus.DefaultRegisterer, prometheus.DefaultGatherer = prevReg, prevGat })
	require.NoError(t, readmePrometheus())
	families, err := reg.Gather()
	require.NoError(t, err)
	require.NotEmpty(t, families)
}
