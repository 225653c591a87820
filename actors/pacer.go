package actors

import (
	"sync"
	"time"
)

// snapshotPacer shares one CPU budget for snapshot production among the
// schedulers of a node. A snapshot slice is short (Config.SnapshotSlice),
// but a scheduler that sends itself the next slice at once keeps its
// goroutine always runnable: a full snapshot of a million items is seconds
// of CPU, and two or three clones producing theirs at the same time took
// most of a loaded node's CPU, so its front door refused most requests for
// as long (measured: ~70% refused for 17 s at 1M items on one CPU). Paced,
// snapshot work may use at most Share of one CPU's time, node-wide, averaged
// over Burst: a slice that took d moves the budget's horizon d/Share ahead,
// and a scheduler whose horizon is in the future waits that long before its
// next slice (requests meanwhile run unhindered). Short snapshots (a small
// state, a delta) fit in the burst and are not slowed down at all.
//
// It is pure apart from its lock: callers pass the time.
type snapshotPacer struct {
	share float64
	burst time.Duration

	mu   sync.Mutex
	free time.Time // the budget is spent up to here
}

func newSnapshotPacer(share float64, burst time.Duration) *snapshotPacer {
	return &snapshotPacer{share: share, burst: burst}
}

// spend records a slice of d that ended at now and returns how long the
// caller should wait before its next slice (0: go on at once).
func (p *snapshotPacer) spend(now time.Time, d time.Duration) time.Duration {
	if p == nil || p.share >= 1 {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	// An idle budget accrues at most Burst of wall time's worth of credit.
	if floor := now.Add(-p.burst); p.free.Before(floor) {
		p.free = floor
	}
	p.free = p.free.Add(time.Duration(float64(d) / p.share))
	return max(0, p.free.Sub(now))
}

// wait is how long a slice starting at now should wait (0: none).
func (p *snapshotPacer) wait(now time.Time) time.Duration {
	if p == nil || p.share >= 1 {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return max(0, p.free.Sub(now))
}
