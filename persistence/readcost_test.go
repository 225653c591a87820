package persistence

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// replicaHistory is what buildReplica left behind: the in-memory file system
// of a closed database holding one clone, and how far each origin got.
type replicaHistory struct {
	fs     vfs.FS
	maxSeq map[string]uint64
	head   uint64
}

const (
	costClone   = "cart/1"
	costRetain  = 1000 // records kept behind the snapshot, like LogRetain
	costOrigins = 4
)

func costOrigin(i int) string { return fmt.Sprintf("cart/%d", i+1) }

// buildReplica writes a clone with a history of n records from costOrigins
// origins (their records interleaved, as peers' ops are), then a snapshot of
// a size proportional to the state (50 bytes a record: 10 MB for 200k) at
// the head, prunes all but costRetain records, flushes the memtable so the
// history sits in sstables, and closes the database.
func buildReplica(t *testing.T, n int) replicaHistory {
	t.Helper()
	fs := vfs.NewMem()
	o := memOptions()
	o.FS = fs
	db, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	c := db.Clone(costClone)
	h := replicaHistory{fs: fs, maxSeq: make(map[string]uint64)}
	batch := make([]Record, 0, 256)
	for i := 0; i < n; i++ {
		origin := costOrigin(i % costOrigins)
		h.maxSeq[origin]++
		batch = append(batch, Record{Origin: origin, Seq: h.maxSeq[origin], Data: make([]byte, 64)})
		if len(batch) == cap(batch) || i == n-1 {
			if h.head, err = c.Append(context.Background(), batch...); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := c.SaveSnapshot(make([]byte, 50*n), h.head); err != nil {
		t.Fatal(err)
	}
	if err := c.Prune(h.head - costRetain); err != nil {
		t.Fatal(err)
	}
	if err := db.pdb.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return h
}

// readCost is what a workload cost in reads.
type readCost struct {
	pointReads float64 // Stats.PointReads per op
	blocks     float64 // sstable blocks looked up (block cache hits + misses) per op
}

// runWorkload reopens the replica (so the clone's cache is built inside the
// measured window, as after a restart) and runs ops Appends the way a clone
// sees its peers' ops: each Append carries a few records, origins
// interleaved, each origin's seqs shuffled within windows of 16 (late and
// early arrivals), and about one record in eight a duplicate (a recent one
// re-delivered, or an old one the snapshot covers). The seed makes the
// workload identical for every replica, relative to its history.
//
// Automatic compactions are off during the run: they read blocks through the
// same cache, at times that depend on the scheduler, and this test counts
// the reads made on behalf of the ops (pebble's compaction work is in
// PebbleMetrics).
func runWorkload(t *testing.T, h replicaHistory, ops int) readCost {
	t.Helper()
	testPebbleOptions = func(p *pebble.Options) { p.DisableAutomaticCompactions = true }
	defer func() { testPebbleOptions = nil }()
	o := memOptions()
	o.FS = h.fs
	db := openT(t, o)
	c := db.Clone(costClone)
	rng := rand.New(rand.NewPCG(1, 2))

	// Each origin's next seqs, shuffled in windows.
	pending := make([][]uint64, costOrigins)
	for i := range pending {
		base := h.maxSeq[costOrigin(i)]
		for w := 0; w < ops; w += 16 {
			win := make([]uint64, 16)
			for j := range win {
				win[j] = base + uint64(w+j) + 1
			}
			rng.Shuffle(len(win), func(a, b int) { win[a], win[b] = win[b], win[a] })
			pending[i] = append(pending[i], win...)
		}
	}
	sent := make([][]uint64, costOrigins)

	before := db.Stats().PointReads
	mb := db.pdb.Metrics()
	blocksBefore := mb.BlockCache.Hits + mb.BlockCache.Misses
	for op := 0; op < ops; op++ {
		recs := make([]Record, 0, 4)
		for len(recs) < 4 {
			i := rng.IntN(costOrigins)
			origin := costOrigin(i)
			var seq uint64
			switch r := rng.IntN(16); {
			case r == 0 && len(sent[i]) > 0: // a recent record, re-delivered
				seq = sent[i][len(sent[i])-1-rng.IntN(min(len(sent[i]), 64))]
			case r == 1: // an old record the snapshot covers
				seq = 1 + uint64(rng.IntN(int(h.maxSeq[origin]-costRetain/costOrigins)))
			default:
				seq, pending[i] = pending[i][0], pending[i][1:]
				sent[i] = append(sent[i], seq)
			}
			recs = append(recs, Record{Origin: origin, Seq: seq, Data: make([]byte, 64)})
		}
		if _, err := c.Append(context.Background(), recs...); err != nil {
			t.Fatal(err)
		}
	}
	ma := db.pdb.Metrics()
	return readCost{
		pointReads: float64(db.Stats().PointReads-before) / float64(ops),
		blocks:     float64(ma.BlockCache.Hits+ma.BlockCache.Misses-blocksBefore) / float64(ops),
	}
}

// TestWritePathReadsDoNotGrowWithState is the issue "State size: costs that
// do not grow with the data": the same number of Appends, of the same shape,
// against a small replica and a large one (a clone with a history of 200k
// records, snapshotted and pruned) must cost about the same number of pebble
// reads per op. Reads are counted (Stats.PointReads, pebble's block cache
// lookups), not timed. Before the fix every record at or below its origin's
// highest seq (late, out of order, duplicate) cost a Get of its index key,
// which on the large replica went through several sstables' index and data
// blocks.
func TestWritePathReadsDoNotGrowWithState(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 200k-record history")
	}
	const ops = 4000
	small := runWorkload(t, buildReplica(t, 4_000), ops)
	large := runWorkload(t, buildReplica(t, 200_000), ops)
	t.Logf("per op: small replica %.3f point reads, %.3f blocks; large replica %.3f point reads, %.3f blocks",
		small.pointReads, small.blocks, large.pointReads, large.blocks)
	// Bounded factor, with a little slack for the constant cost of loading
	// the clone after the reopen (a handful of reads, spread over the ops).
	const factor, slack = 2, 0.05
	if large.pointReads > factor*small.pointReads+slack {
		t.Errorf("point reads per op: large replica %.3f, small %.3f: more than %dx", large.pointReads, small.pointReads, factor)
	}
	if large.blocks > factor*small.blocks+slack {
		t.Errorf("sstable blocks per op: large replica %.3f, small %.3f: more than %dx", large.blocks, small.blocks, factor)
	}
	// And the write path itself reads nothing per record.
	if large.pointReads > slack {
		t.Errorf("point reads per op on the large replica: %.3f, want ~0 (duplicates must be detected from memory)", large.pointReads)
	}
}
