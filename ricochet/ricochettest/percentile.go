package ricochettest

import (
	"math"
	"time"
)

// Percentile returns the p-quantile (0 <= p <= 1) of sorted by the
// nearest-rank method: the smallest value with at least a share p of the
// samples at or below it (p = 0 gives the minimum). sorted must be
// ascending; an empty slice gives 0. It is the one percentile of the
// simulation reports (LatencyStats) and of cmd/tempest-bench.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}
