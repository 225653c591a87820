//go:build !race

package ricochet

// raceEnabled reports whether the race detector is on (see engine_race_test.go).
const raceEnabled = false
