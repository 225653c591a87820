package actors

import (
	"testing"
	"time"
)

func TestLatencyHistQuantiles(t *testing.T) {
	var h latencyHist
	if s := h.summary(); s.Count != 0 || s.P99Us != 0 || s.Buckets != nil {
		t.Fatalf("empty: %+v", s)
	}
	for i := 0; i < 990; i++ {
		h.observe(10 * time.Microsecond) // bucket [8, 16) µs
	}
	for i := 0; i < 10; i++ {
		h.observe(3 * time.Millisecond) // bucket [2048, 4096) µs
	}
	s := h.summary()
	if s.Count != 1000 || s.P50Us != 16 || s.MaxUs != 3000 {
		t.Fatalf("summary %+v: want count 1000, p50 16 µs (bucket bound), max 3000 µs", s)
	}
	if s.P99Us != 4096 {
		t.Fatalf("p99 %d µs, want 4096 (the 3 ms bucket: 10 of 1000 are there)", s.P99Us)
	}
	if len(s.Buckets) != 13 || s.Buckets[4] != 990 || s.Buckets[12] != 10 {
		t.Fatalf("buckets %v: want 990 in bucket 4 ([8,16) µs), 10 in bucket 12 ([2048,4096) µs), none after", s.Buckets)
	}
}
