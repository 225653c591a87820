package actors

import (
	"runtime/metrics"
	"time"
)

// schedLatency reads the Go runtime's scheduling latency (the time
// goroutines spend runnable before they run: /sched/latencies:seconds) and
// reports a quantile of what was observed since the previous read. Under CPU
// saturation every goroutine waits, including those of requests the HTTP
// server has not yet handed to the gateway, whose wait no request-level
// measurement can see; this one sees it.
type schedLatency struct {
	sample []metrics.Sample
	prev   []uint64
}

const schedLatencyMetric = "/sched/latencies:seconds"

func newSchedLatency() *schedLatency {
	s := &schedLatency{sample: []metrics.Sample{{Name: schedLatencyMetric}}}
	s.read(0.99) // the baseline
	return s
}

// read returns quantile q of the scheduling latencies since the previous
// read (0 if there were none), as the upper bound of the runtime's bucket.
func (s *schedLatency) read(q float64) time.Duration {
	metrics.Read(s.sample)
	if s.sample[0].Value.Kind() != metrics.KindFloat64Histogram {
		return 0
	}
	h := s.sample[0].Value.Float64Histogram()
	if len(s.prev) != len(h.Counts) {
		s.prev = make([]uint64, len(h.Counts))
		copy(s.prev, h.Counts)
		return 0
	}
	var total uint64
	for i, c := range h.Counts {
		total += c - s.prev[i]
	}
	var out time.Duration
	if total > 0 {
		rank := uint64(q * float64(total))
		var seen uint64
		for i, c := range h.Counts {
			seen += c - s.prev[i]
			if seen > rank {
				out = time.Duration(h.Buckets[i+1] * float64(time.Second))
				break
			}
		}
	}
	copy(s.prev, h.Counts)
	return out
}
