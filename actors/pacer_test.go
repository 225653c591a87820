package actors

import (
	"testing"
	"time"
)

// TestSnapshotPacerHoldsTheShare: back-to-back slices from several
// schedulers, each waiting as told, get Share of the wall time (plus the
// burst), and a short snapshot after an idle spell runs without waiting.
func TestSnapshotPacerHoldsTheShare(t *testing.T) {
	p := newSnapshotPacer(0.1, 50*time.Millisecond)
	t0 := time.Unix(1000, 0)
	now := t0
	// Three schedulers take turns; each slice is 500 µs of work.
	const slice = 500 * time.Microsecond
	var work time.Duration
	ready := make([]time.Time, 3) // when each may run its next slice
	for range 3000 {
		// the next scheduler to run is the one ready first
		i := 0
		for j := range ready {
			if ready[j].Before(ready[i]) {
				i = j
			}
		}
		if ready[i].After(now) {
			now = ready[i]
		}
		if w := p.wait(now); w > 0 {
			ready[i] = now.Add(w)
			continue
		}
		now = now.Add(slice)
		work += slice
		ready[i] = now.Add(p.spend(now, slice))
	}
	elapsed := now.Sub(t0)
	share := float64(work) / float64(elapsed)
	// 50 ms of burst credit at 10% is 5 ms of extra work at most.
	if max := 0.1 + float64(5*time.Millisecond+slice)/float64(elapsed); share > max || share < 0.09 {
		t.Fatalf("snapshot work took %.3f of %v, want 0.1 (at most %.3f)", share, elapsed, max)
	}

	// Idle for a second: a 5 ms snapshot (10 slices) fits in the burst.
	now = now.Add(time.Second)
	for i := range 10 {
		if w := p.wait(now); w > 0 {
			t.Fatalf("slice %d of a short snapshot after an idle spell waits %v", i, w)
		}
		now = now.Add(slice)
		if w := p.spend(now, slice); w > 0 && i < 9 {
			t.Fatalf("slice %d of a short snapshot after an idle spell told to wait %v", i, w)
		}
	}
}

// TestSnapshotPacerOff: share 1 (or no pacer) never waits.
func TestSnapshotPacerOff(t *testing.T) {
	var nilPacer *snapshotPacer
	now := time.Unix(1000, 0)
	for _, p := range []*snapshotPacer{nilPacer, newSnapshotPacer(1, 0)} {
		for range 100 {
			if w := p.spend(now, time.Millisecond); w != 0 {
				t.Fatalf("pacer %v: wait %v", p, w)
			}
		}
	}
}
