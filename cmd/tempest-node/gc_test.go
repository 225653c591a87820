package main

import (
	"strings"
	"testing"
)

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{
		"1073741824": 1 << 30, "8GiB": 8 << 30, "800MB": 800e6, "1.5 GiB": 3 << 29, "64kib": 64 << 10, "12B": 12,
	} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "GiB", "-1GiB", "0", "12 parsecs", "1e30", "99999999999TiB"} {
		if got, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q) = %d, want an error", in, got)
		}
	}
}

func TestMemoryLimit(t *testing.T) {
	const gib = 1 << 30
	cases := []struct {
		flag      string
		available int64
		want      int64
		wantErr   bool
	}{
		{"auto", 24 * gib, 18 * gib, false},
		{"", 4 * gib, 3 * gib, false},
		{"auto", 0, 0, false}, // unknown: none set
		{"off", 24 * gib, 0, false},
		{"0", 24 * gib, 0, false},
		{"2GiB", 24 * gib, 2 * gib, false},
		{"lots", 24 * gib, 0, true},
	}
	for _, c := range cases {
		got, src, err := memoryLimit(c.flag, c.available)
		if (err != nil) != c.wantErr || got != c.want {
			t.Errorf("memoryLimit(%q, %d) = %d (%s), %v; want %d, error %v", c.flag, c.available, got, src, err, c.want, c.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), "--memory-limit") {
			t.Errorf("error %q does not name the flag", err)
		}
	}
}
