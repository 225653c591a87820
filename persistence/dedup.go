package persistence

import (
	"math"
	"slices"
)

// In-memory duplicate detection.
//
// Append must tell whether (origin, seq) is already stored. Reading the
// index key from pebble for every record that might be a duplicate (every
// late, out-of-order or re-delivered record: most of a peer's ops) made the
// write path cost a point read into the sstables, whose price grows with the
// database (more levels, bigger blocks): 46% of a 200k-cart node's CPU. So
// the committer answers from memory, per clone and per origin:
//
//   - live: the seqs of the records in the clone's log (those after the prune
//     point), as a seqSet of ranges. Exact, never capped: a range per gap in
//     what arrived, and an origin whose records all arrived is one range.
//   - originState.pruned: the seqs that were stored and pruned (persisted,
//     capped at maxPrunedRanges runs; see originState).
//   - runs: where the live records are, as posRuns (seq run -> position
//     run), so that a duplicate can report its earlier copy's position
//     without a read. Capped at maxPosRuns per clone, evicting the oldest
//     positions; a duplicate whose run was evicted costs one index Get, and
//     only if it is the last record of its Append (the only one whose
//     position is returned).
//
// live ∪ pruned is exactly "stored" (modulo the documented forgetting of
// very old pruned runs), so the disk is read only for the position of an
// evicted run. Memory: a clone holds at most maxPosRuns runs (24 bytes each)
// plus a few ranges per origin.
//
// The sets are built when the committer loads a clone (loadClone): the
// origin states are one range scan, live and runs one scan of the log after
// the prune point. That costs time proportional to the log the clone keeps
// (LogRetain plus the ops since the last snapshot), not to its state, and
// happens once per DB open or after a failed group commit.

// maxPosRuns caps the position runs one clone keeps in memory. A variable so
// that tests can make eviction happen.
var maxPosRuns = 4096

// seqSet is a set of sequence numbers as sorted, disjoint, non-adjacent
// closed ranges.
type seqSet []seqRange

// find returns the index of the first range whose hi is >= x (len(s) if
// none).
func (s seqSet) find(x uint64) int {
	i, _ := slices.BinarySearchFunc(s, x, func(r seqRange, x uint64) int {
		if r.hi < x {
			return -1
		}
		return 1
	})
	return i
}

func (s seqSet) contains(x uint64) bool {
	i := s.find(x)
	return i < len(s) && s[i].lo <= x
}

// add inserts x, merging it with the ranges it touches.
func (s *seqSet) add(x uint64) {
	r := *s
	i := r.find(x)
	if i < len(r) && r[i].lo <= x {
		return // present
	}
	joinPrev := i > 0 && r[i-1].hi+1 == x
	joinNext := i < len(r) && x < math.MaxUint64 && r[i].lo == x+1
	switch {
	case joinPrev && joinNext:
		r[i-1].hi = r[i].hi
		*s = slices.Delete(r, i, i+1)
	case joinPrev:
		r[i-1].hi = x
	case joinNext:
		r[i].lo = x
	default:
		*s = slices.Insert(r, i, seqRange{x, x})
	}
}

// remove deletes [lo, hi] from the set.
func (s *seqSet) remove(lo, hi uint64) {
	r := *s
	i := r.find(lo)
	var out []seqRange
	j := i
	for ; j < len(r) && r[j].lo <= hi; j++ {
		if r[j].lo < lo {
			out = append(out, seqRange{r[j].lo, lo - 1})
		}
		if r[j].hi > hi {
			out = append(out, seqRange{hi + 1, r[j].hi})
		}
	}
	*s = slices.Replace(r, i, j, out...)
}

// posRun says that seqs [seq, seq+n) of an origin are stored at positions
// [pos, pos+n). An origin's records appended by one Append without other
// origins' records between them form one run.
type posRun struct{ seq, pos, n uint64 }

// posRuns is one origin's position runs, sorted by seq, disjoint.
type posRuns []posRun

// lookup returns the position of seq, if a run holds it.
func (r posRuns) lookup(seq uint64) (uint64, bool) {
	i, _ := slices.BinarySearchFunc(r, seq, func(p posRun, seq uint64) int {
		if p.seq+p.n <= seq {
			return -1
		}
		return 1
	})
	if i < len(r) && r[i].seq <= seq {
		return r[i].pos + (seq - r[i].seq), true
	}
	return 0, false
}

// add records seq at pos, where pos is above every position recorded (the
// committer's new head). It reports whether a new run was started.
func (r *posRuns) add(seq, pos uint64) bool {
	s := *r
	i, _ := slices.BinarySearchFunc(s, seq, func(p posRun, seq uint64) int {
		if p.seq < seq {
			return -1
		}
		return 1
	})
	// s[i-1] is the last run starting below seq: extend it if seq and pos
	// both follow it.
	if i > 0 && s[i-1].seq+s[i-1].n == seq && s[i-1].pos+s[i-1].n == pos {
		s[i-1].n++
		return false
	}
	*r = slices.Insert(s, i, posRun{seq, pos, 1})
	return true
}

// dropBefore removes the runs whose last position is below floor and
// returns how many it removed.
func (r *posRuns) dropBefore(floor uint64) int {
	n := len(*r)
	*r = slices.DeleteFunc(*r, func(p posRun) bool { return p.pos+p.n-1 < floor })
	return n - len(*r)
}

// evictRuns brings the clone's position runs down to about half of
// maxPosRuns by dropping the runs with the oldest positions: recent records
// are the likely duplicates (retransmissions, catch-up of what a peer just
// missed).
func (cc *cloneCache) evictRuns() {
	if cc.nRuns <= maxPosRuns {
		return
	}
	last := make([]uint64, 0, cc.nRuns)
	for _, oc := range cc.origins {
		for _, p := range oc.runs {
			last = append(last, p.pos+p.n-1)
		}
	}
	slices.Sort(last)
	floor := last[len(last)-maxPosRuns/2]
	for _, oc := range cc.origins {
		cc.nRuns -= oc.runs.dropBefore(floor)
	}
}
