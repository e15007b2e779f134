//go:build race

package connpool_test

// raceEnabled says the race detector is on: it makes sync.Pool drop
// items at random, so allocation counts are not the real ones.
const raceEnabled = true
