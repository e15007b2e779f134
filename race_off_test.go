//go:build !race

package connpool_test

const raceEnabled = false
