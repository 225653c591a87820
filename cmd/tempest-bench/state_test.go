package main

import (
	"maps"
	"testing"
)

func TestParseVmRSS(t *testing.T) {
	status := "Name:\ttempest-node\nVmPeak:\t  900 kB\nVmRSS:\t   73456 kB\nRssAnon:\t 1 kB\n"
	if got, want := parseVmRSS(status), int64(73456*1024); got != want {
		t.Fatalf("VmRSS %d, want %d", got, want)
	}
	if got := parseVmRSS("Name:\tx\n"); got != 0 {
		t.Fatalf("no VmRSS line: %d, want 0", got)
	}
}

// TestTurnsDelta: counters are summed over the clones as differences,
// maxima taken from the end; clones that changed in number give nothing.
func TestTurnsDelta(t *testing.T) {
	before := []map[string]int64{{"turns": 10, "wall_over_1ms": 1, "max_wall_us": 900}, {"turns": 5, "wall_over_1ms": 0, "max_wall_us": 3000}}
	after := []map[string]int64{{"turns": 30, "wall_over_1ms": 3, "max_wall_us": 1200}, {"turns": 25, "wall_over_1ms": 1, "max_wall_us": 3000}}
	got := turnsDelta(before, after)
	want := map[string]int64{"turns": 40, "wall_over_1ms": 3, "max_wall_us": 3000}
	if !maps.Equal(got, want) {
		t.Fatalf("turnsDelta = %v, want %v", got, want)
	}
	if got := turnsDelta(before, after[:1]); got != nil {
		t.Fatalf("a clone missing: %v, want nil", got)
	}
}
