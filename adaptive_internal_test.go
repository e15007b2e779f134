package connpool

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestProbeLeavesOutConnsLentBeforeIt pins the pool's half of the probe
// (see adaptive.Sample): while a probe is gathered, a conn lent before it
// began is not sampled, one lent after it is.
func TestProbeLeavesOutConnsLentBeforeIt(t *testing.T) {
	a := &adaptiveCap{}
	a.record(time.Millisecond, 10, false)
	assert.Equal(t, int64(1), a.returns.Load(), "no probe: every return counts")

	a.probeFrom.Store(100)
	a.record(3*time.Millisecond, 99, true)
	assert.Equal(t, int64(1), a.returns.Load(), "lent before the probe")
	assert.Zero(t, a.drops.Load())
	a.record(2*time.Millisecond, 100, true)
	assert.Equal(t, int64(2), a.returns.Load(), "lent as the probe began")
	assert.Equal(t, int64(3*time.Millisecond), a.held.Load())
	assert.Equal(t, int64(1), a.drops.Load())
}
