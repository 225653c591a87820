package main

import "testing"

func TestParseVmRSS(t *testing.T) {
	status := "Name:\ttempest-node\nVmPeak:\t  900 kB\nVmRSS:\t   73456 kB\nRssAnon:\t 1 kB\n"
	if got, want := parseVmRSS(status), int64(73456*1024); got != want {
		t.Fatalf("VmRSS %d, want %d", got, want)
	}
	if got := parseVmRSS("Name:\tx\n"); got != 0 {
		t.Fatalf("no VmRSS line: %d, want 0", got)
	}
}
