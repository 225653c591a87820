package actors

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// latencyHist counts durations in power-of-two buckets of microseconds
// (bucket i holds [2^(i-1), 2^i) µs; bucket 0 under 1 µs), lock-free, for
// status figures such as how long the node takes to refuse a request. A
// quantile is reported as its bucket's upper bound: at most 2x off, which
// is enough to tell 10 µs from 1 ms.
type latencyHist struct {
	buckets [40]atomic.Uint64
	count   atomic.Uint64
	max     atomic.Int64
}

func (h *latencyHist) observe(d time.Duration) {
	us := uint64(max(d.Microseconds(), 0))
	i := min(bits.Len64(us), len(h.buckets)-1)
	h.buckets[i].Add(1)
	h.count.Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

// quantile returns the upper bound of the bucket holding quantile q.
func (h *latencyHist) quantile(q float64) time.Duration {
	n := h.count.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(q * float64(n))
	var seen uint64
	for i := range h.buckets {
		seen += h.buckets[i].Load()
		if seen > rank {
			return time.Duration(uint64(1)<<i) * time.Microsecond
		}
	}
	return time.Duration(h.max.Load())
}

// LatencySummary is a latencyHist's figures for status, in microseconds
// (p50 and p99 are bucket upper bounds: at most 2x high).
type LatencySummary struct {
	Count uint64 `json:"count"`
	P50Us int64  `json:"p50_us"`
	P99Us int64  `json:"p99_us"`
	MaxUs int64  `json:"max_us"`
	// Buckets are the counts since start: bucket i holds [2^(i-1), 2^i)
	// µs (bucket 0: under 1 µs), trailing empty buckets left out. Two reads
	// subtracted give the figures of the time between them (a benchmark
	// run).
	Buckets []uint64 `json:"buckets_pow2_us,omitempty"`
}

func (h *latencyHist) summary() LatencySummary {
	s := LatencySummary{
		Count: h.count.Load(),
		P50Us: h.quantile(0.5).Microseconds(),
		P99Us: h.quantile(0.99).Microseconds(),
		MaxUs: time.Duration(h.max.Load()).Microseconds(),
	}
	var b [len(h.buckets)]uint64
	last := -1
	for i := range h.buckets {
		if b[i] = h.buckets[i].Load(); b[i] > 0 {
			last = i
		}
	}
	if last >= 0 {
		s.Buckets = b[:last+1]
	}
	return s
}
