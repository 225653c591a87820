package persistence

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestSeqSetMatchesModel checks seqSet against a map under random adds and
// removals, and that it stays normalised (sorted, disjoint, non-adjacent).
func TestSeqSetMatchesModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var s seqSet
	model := make(map[uint64]bool)
	for i := 0; i < 20000; i++ {
		x := uint64(rng.IntN(300))
		if rng.IntN(4) == 0 {
			hi := x + uint64(rng.IntN(8))
			s.remove(x, hi)
			for y := x; y <= hi; y++ {
				delete(model, y)
			}
		} else {
			s.add(x)
			model[x] = true
		}
		for j, r := range s {
			if r.lo > r.hi || (j > 0 && r.lo <= s[j-1].hi+1) {
				t.Fatalf("step %d: not normalised: %v", i, s)
			}
		}
		if y := uint64(rng.IntN(310)); s.contains(y) != model[y] {
			t.Fatalf("step %d: contains(%d) = %v, model %v (%v)", i, y, s.contains(y), model[y], s)
		}
	}
	// Extremes do not overflow.
	var m seqSet
	m.add(math.MaxUint64)
	m.add(math.MaxUint64 - 1)
	m.remove(math.MaxUint64, math.MaxUint64)
	if len(m) != 1 || m[0] != (seqRange{math.MaxUint64 - 1, math.MaxUint64 - 1}) {
		t.Fatalf("extremes: %v", m)
	}
}

// TestPosRunsMatchModel checks posRuns against a map: positions are handed
// out in increasing order, seqs arrive out of order.
func TestPosRunsMatchModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var r posRuns
	model := make(map[uint64]uint64)
	seqs := rng.Perm(2000)
	pos := uint64(0)
	for _, s := range seqs {
		seq := uint64(s) + 1
		if rng.IntN(3) == 0 {
			pos++ // another origin's record between
		}
		pos++
		r.add(seq, pos)
		model[seq] = pos
	}
	// In order, contiguous: one run.
	var one posRuns
	for i := uint64(1); i <= 100; i++ {
		if one.add(i, 10+i) != (i == 1) {
			t.Fatalf("seq %d: run count wrong", i)
		}
	}
	if len(one) != 1 {
		t.Fatalf("%d runs for a contiguous append, want 1", len(one))
	}
	for seq := uint64(0); seq <= 2001; seq++ {
		got, ok := r.lookup(seq)
		want, in := model[seq]
		if ok != in || got != want {
			t.Fatalf("lookup(%d) = %d %v, want %d %v", seq, got, ok, want, in)
		}
	}
	n := len(r)
	if dropped := r.dropBefore(pos / 2); dropped == 0 || len(r) != n-dropped {
		t.Fatalf("dropBefore dropped %d of %d", dropped, n)
	}
	for _, p := range r {
		if p.pos+p.n-1 < pos/2 {
			t.Fatalf("run %+v kept below the floor %d", p, pos/2)
		}
	}
}

// TestDuplicatePositionsExact checks that a duplicate's returned position
// is its earlier copy's, from memory while its run is kept and from one
// index read once evicted; and the prune point for a pruned one. It runs
// with a tiny run cap, across a reopen (the cache rebuilt from the log).
func TestDuplicatePositionsExact(t *testing.T) {
	defer func(n int) { maxPosRuns = n }(maxPosRuns)
	maxPosRuns = 8
	o := memOptions()
	db, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	c := db.Clone("cart/1")
	// Three origins, interleaved, each origin's seqs out of order: about
	// one run per record.
	rng := rand.New(rand.NewPCG(7, 8))
	var all []Record
	for _, origin := range []string{"a", "b", "c"} {
		for _, s := range rng.Perm(40) {
			all = append(all, rec(origin, uint64(s)+1))
		}
	}
	rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	where := make(map[RecordID]uint64)
	for _, r := range all {
		where[RecordID{r.Origin, r.Seq}] = mustAppend(t, c, r)
	}
	var fresh uint64 // seqs of origin "fresh", never duplicated
	check := func(c *CloneLog, db *DB, pruned uint64) {
		t.Helper()
		reads := db.Stats().PointReads
		evicted := 0
		for id, pos := range where {
			before := db.Stats().PointReads
			want := pos
			if pos <= pruned {
				want = pruned
			}
			if got := mustAppend(t, c, rec(id.Origin, id.Seq)); got != want {
				t.Fatalf("duplicate %v: position %d, want %d", id, got, want)
			}
			if d := db.Stats().PointReads - before; d > 1 {
				t.Fatalf("duplicate %v cost %d reads", id, d)
			} else if d == 1 {
				evicted++
			}
		}
		// Not last in its Append: no position needed, no read.
		before := db.Stats().PointReads
		for id := range where {
			fresh++
			mustAppend(t, c, rec(id.Origin, id.Seq), rec("fresh", fresh))
		}
		if d := db.Stats().PointReads - before; d != 0 {
			t.Fatalf("duplicates not last in their Append cost %d reads", d)
		}
		t.Logf("%d duplicates, %d answered from disk (evicted runs), %d reads", len(where), evicted, db.Stats().PointReads-reads)
		if evicted == 0 || evicted == len(where) {
			t.Fatalf("%d of %d duplicates read from disk: eviction not exercised", evicted, len(where))
		}
	}
	check(c, db, 0)

	if err := c.SaveSnapshot([]byte("s"), 60); err != nil {
		t.Fatal(err)
	}
	if err := c.Prune(60); err != nil {
		t.Fatal(err)
	}
	check(c, db, 60)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db2 := openT(t, o)
	c2 := db2.Clone("cart/1")
	fresh++
	mustAppend(t, c2, rec("fresh", fresh)) // loads the clone (reads its header)
	check(c2, db2, 60)
	if st := db2.Stats(); st.Records != uint64(len(where))+1 {
		t.Fatalf("after reopen stored %d records, want only the %d fresh ones", st.Records, len(where)+1)
	}
}
