//go:build race

package ricochettest

// raceEnabled reports whether the race detector is on: the heavy,
// single-threaded simulation tests skip themselves then (they start no
// goroutines, so the detector has nothing to find, and it makes them ~10x slower).
const raceEnabled = true
