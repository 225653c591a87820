package persistence

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// part is a snapshot chain part read back as strings.
type part struct {
	gen    uint64
	delta  bool
	chunks []string
}

func (p part) String() string { return fmt.Sprintf("{%d delta=%v %q}", p.gen, p.delta, p.chunks) }

// chainOf reads the clone's snapshot chain.
func chainOf(t *testing.T, c *CloneLog) (uint64, []part) {
	t.Helper()
	pos, ok, parts, err := c.SnapshotChain()
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		if len(parts) != 0 {
			t.Fatalf("no snapshot, but %d parts", len(parts))
		}
		return 0, nil
	}
	var out []part
	for _, sp := range parts {
		p := part{gen: sp.Gen, delta: sp.Delta}
		for b, err := range sp.Chunks {
			if err != nil {
				t.Fatalf("part %d: %v", sp.Gen, err)
			}
			p.chunks = append(p.chunks, string(b))
		}
		// ChunkViews yields the same bytes, each valid until the next step
		// (string copies them as they come).
		var views []string
		for b, err := range sp.ChunkViews {
			if err != nil {
				t.Fatalf("part %d, views: %v", sp.Gen, err)
			}
			views = append(views, string(b))
		}
		if !slices.Equal(views, p.chunks) {
			t.Fatalf("part %d: ChunkViews yields %q, Chunks %q", sp.Gen, views, p.chunks)
		}
		out = append(out, p)
	}
	return pos, out
}

// wantPart is the part writeSnap(…, name, chunks, …) stores at gen.
func wantPart(gen uint64, delta bool, name string, chunks int) part {
	p := part{gen: gen, delta: delta, chunks: []string{name + "/header"}}
	for i := 1; i <= chunks; i++ {
		p.chunks = append(p.chunks, fmt.Sprintf("%s/%d", name, i))
	}
	return p
}

func checkChain(t *testing.T, c *CloneLog, wantPos uint64, want ...part) {
	t.Helper()
	pos, got := chainOf(t, c)
	if pos != wantPos || !slices.EqualFunc(got, want, func(a, b part) bool {
		return a.gen == b.gen && a.delta == b.delta && slices.Equal(a.chunks, b.chunks)
	}) {
		t.Fatalf("chain at %d: %v, want at %d: %v", pos, got, wantPos, want)
	}
}

// writeSnap writes a chunked snapshot (a delta if delta) through w, one
// append after each chunk, and returns the position its begin reported.
// Without end, the snapshot is left unfinished (as a crash would).
func writeSnap(t *testing.T, w *Writer, delta bool, name string, chunks int, end bool, nextSeq *uint64) uint64 {
	t.Helper()
	data := make([][]byte, chunks)
	for i := range data {
		data[i] = []byte(fmt.Sprintf("%s/%d", name, i+1))
	}
	return writeSnapChunks(t, w, delta, []byte(name+"/header"), data, 1, end, nextSeq)
}

// writeSnapChunks writes a snapshot of the given header and chunks through
// w, with an append of the next record of origin "o" after every
// appendEvery-th chunk, and returns the position its begin reported.
func writeSnapChunks(t *testing.T, w *Writer, delta bool, header []byte, chunks [][]byte, appendEvery int, end bool, nextSeq *uint64) uint64 {
	t.Helper()
	var got completions
	begin := w.SnapshotBegin
	if delta {
		begin = w.SnapshotDeltaBegin
	}
	if err := begin(header, got.cb("begin")); err != nil {
		t.Fatal(err)
	}
	for i, c := range chunks {
		if err := w.SnapshotChunk(c, got.cb("chunk")); err != nil {
			t.Fatal(err)
		}
		if (i+1)%appendEvery != 0 {
			continue
		}
		*nextSeq++
		if err := w.Append([]Record{rec("o", *nextSeq)}, got.cb("append")); err != nil {
			t.Fatal(err)
		}
	}
	if end {
		if err := w.SnapshotEnd(got.cb("end")); err != nil {
			t.Fatal(err)
		}
	}
	w.Wait()
	for _, g := range got.got {
		if g.err != nil {
			t.Fatalf("%s %s: %v", header, g.what, g.err)
		}
	}
	return got.got[0].pos
}

// snapKeys counts the keys in the clone's snapshot range, of every
// generation, referenced or not.
func snapKeys(t *testing.T, db *DB, c *CloneLog) int {
	t.Helper()
	lo, _ := snapBounds(c.prefix)
	return countKeys(t, db, lo)
}

// TestSnapshotChainRoundTrip: a full snapshot and two deltas read back as a
// chain of three parts, in order, with their bytes; SnapshotChunks and
// LoadSnapshot refuse the chain; the log replays after the last delta and
// prunes up to it, no further. The next full snapshot is the whole chain
// again, and the old generations are physically gone.
func TestSnapshotChainRoundTrip(t *testing.T) {
	db := openT(t, memOptions())
	c := db.Clone("cart/1")
	w := c.NewWriter(100)
	seq := uint64(0)
	for range 3 {
		seq++
		mustAppend(t, c, rec("o", seq))
	}
	base := writeSnap(t, w, false, "base", 2, true, &seq)
	d1 := writeSnap(t, w, true, "d1", 1, true, &seq)
	d2 := writeSnap(t, w, true, "d2", 3, true, &seq)
	if base != 3 || d1 != base+2 || d2 != d1+1 {
		t.Fatalf("generations %d %d %d, want 3 5 6", base, d1, d2)
	}
	checkChain(t, c, d2, wantPart(base, false, "base", 2), wantPart(d1, true, "d1", 1), wantPart(d2, true, "d2", 3))
	if n := snapKeys(t, db, c); n != 3+2+4 {
		t.Fatalf("%d snapshot keys, want 9 (the whole chain)", n)
	}
	if _, _, _, err := c.SnapshotChunks(); !errors.Is(err, ErrIncompatible) {
		t.Fatalf("SnapshotChunks of a chain with deltas: %v, want ErrIncompatible", err)
	}
	if _, _, _, err := c.LoadSnapshot(); !errors.Is(err, ErrIncompatible) {
		t.Fatalf("LoadSnapshot of a chain with deltas: %v, want ErrIncompatible", err)
	}

	// The log after the chain: the records appended while d2 was written.
	after := replayAll(t, c, d2)
	if len(after) != 3 || after[0].pos != d2+1 || after[0].r.Seq != seq-2 {
		t.Fatalf("records after the chain at %d: %+v, want the last 3", d2, after)
	}
	if err := c.Prune(d2 + 1); !errors.Is(err, ErrNotCovered) {
		t.Fatalf("prune beyond the chain: %v, want ErrNotCovered", err)
	}
	if err := c.Prune(d2); err != nil {
		t.Fatalf("prune up to the chain's last delta: %v", err)
	}
	if err := c.Replay(d1, func(uint64, Record) error { return nil }); !errors.Is(err, ErrPruned) {
		t.Fatalf("replay after a pruned position: %v, want ErrPruned", err)
	}
	if got := replayAll(t, c, d2); len(got) != 3 {
		t.Fatalf("after the prune, %d records after the chain, want 3", len(got))
	}

	// Parts handed out before a full snapshot replaces the chain are stale.
	_, _, old, err := c.SnapshotChain()
	if err != nil {
		t.Fatal(err)
	}
	full := writeSnap(t, w, false, "full", 1, true, &seq)
	checkChain(t, c, full, wantPart(full, false, "full", 1))
	if n := snapKeys(t, db, c); n != 2 {
		t.Fatalf("%d snapshot keys after a full snapshot, want its 2 (the old chain deleted)", n)
	}
	for _, p := range old {
		for _, err := range p.Chunks {
			if !errors.Is(err, ErrStaleSnapshot) {
				t.Fatalf("chunk of replaced part %d: %v, want ErrStaleSnapshot", p.Gen, err)
			}
			break
		}
	}
	// A base alone reads through SnapshotChunks as before.
	if pos, chunks := chunksOf(t, c); pos != full || !slices.Equal(chunks, []string{"full/header", "full/1"}) {
		t.Fatalf("SnapshotChunks of a base alone: %d %q", pos, chunks)
	}

	// A delta on a single-value snapshot (SaveSnapshot) chains onto it, and
	// a delta with nothing logged since the chain's end leaves it as is.
	seq++
	mustAppend(t, c, rec("o", seq))
	last, err := c.LastPos()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SaveSnapshot([]byte("saved"), last); err != nil {
		t.Fatal(err)
	}
	d3 := writeSnap(t, w, true, "d3", 0, true, &seq) // nothing logged since: skipped
	if d3 != last {
		t.Fatalf("delta with nothing new at %d, want the stored %d", d3, last)
	}
	seq++
	mustAppend(t, c, rec("o", seq))
	d4 := writeSnap(t, w, true, "d4", 0, true, &seq)
	pos, got := chainOf(t, c)
	if pos != d4 || len(got) != 2 || got[0].gen != last || got[0].delta || !slices.Equal(got[0].chunks, []string{"saved"}) ||
		got[1].gen != d4 || !got[1].delta || !slices.Equal(got[1].chunks, []string{"d4/header"}) {
		t.Fatalf("delta on a saved snapshot: %d %v", pos, got)
	}

	if err := c.Drop(); err != nil {
		t.Fatal(err)
	}
	if n := snapKeys(t, db, c); n != 0 {
		t.Fatalf("%d snapshot keys after Drop", n)
	}
	if _, ok, parts, err := c.SnapshotChain(); ok || err != nil || parts != nil {
		t.Fatalf("chain after Drop: %v %v %v", ok, parts, err)
	}
}

// TestSnapshotDeltaWithoutBase: a delta needs a stored snapshot to build on;
// without one the begin fails with ErrNoSnapshot (and breaks the Writer),
// and nothing is stored.
func TestSnapshotDeltaWithoutBase(t *testing.T) {
	db := openT(t, memOptions())
	c := db.Clone("c")
	mustAppend(t, c, rec("o", 1))
	w := c.NewWriter(10)
	var got completions
	for _, err := range []error{
		w.SnapshotDeltaBegin([]byte("d/header"), got.cb("begin")),
		w.SnapshotChunk([]byte("d/1"), got.cb("chunk")),
		w.SnapshotEnd(got.cb("end")),
	} {
		if err != nil && !errors.Is(err, ErrWriterBroken) {
			t.Fatal(err)
		}
	}
	w.Wait()
	if len(got.got) == 0 || !errors.Is(got.got[0].err, ErrNoSnapshot) || !errors.Is(got.got[0].err, ErrWriterBroken) {
		t.Fatalf("delta begin without a snapshot: %+v, want ErrNoSnapshot", got.got)
	}
	for _, g := range got.got[1:] {
		if !errors.Is(g.err, ErrWriterBroken) {
			t.Fatalf("%s after the failed delta begin: %v, want ErrWriterBroken", g.what, g.err)
		}
	}
	if _, ok, _, err := c.SnapshotChain(); ok || err != nil {
		t.Fatalf("chain after a refused delta: %v %v", ok, err)
	}
	if n := snapKeys(t, db, c); n != 0 {
		t.Fatalf("refused delta left %d snapshot keys", n)
	}
}

// TestCrashMidDeltaKeepsTheChain crashes (pebble's crash FS, SyncAlways, so
// every acknowledged write survives) while a delta's chunks are durable and
// its end is not: the chain is the previous one, whole, and the next delta's
// begin removes the partial generation. Then the same for a full snapshot
// cut short while the chain has deltas: the chain survives whole.
func TestCrashMidDeltaKeepsTheChain(t *testing.T) {
	crash := func(t *testing.T, fs *vfs.MemFS) *DB {
		t.Helper()
		rng := rand.New(rand.NewPCG(1, 2))
		return openT(t, crashOptions(fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rng}), SyncAlways))
	}
	fs := vfs.NewCrashableMem()
	db := openT(t, crashOptions(fs, SyncAlways))
	c := db.Clone("cart/1")
	w := c.NewWriter(100)
	seq := uint64(2)
	mustAppend(t, c, rec("o", 1), rec("o", 2))
	base := writeSnap(t, w, false, "base", 2, true, &seq)
	d1 := writeSnap(t, w, true, "d1", 1, true, &seq)
	chain := []part{wantPart(base, false, "base", 2), wantPart(d1, true, "d1", 1)}
	partial := writeSnap(t, w, true, "d2", 3, false, &seq) // no end: the crash comes first
	if partial <= d1 {
		t.Fatalf("partial delta at %d, not after %d", partial, d1)
	}
	if n := snapKeys(t, db, c); n != 3+2+4 {
		t.Fatalf("%d snapshot keys before the crash, want 9 (chain and partial delta)", n)
	}

	db = crash(t, fs)
	c = db.Clone("cart/1")
	checkChain(t, c, d1, chain...)
	if after := replayAll(t, c, d1); uint64(len(after)) != seq-uint64(d1) {
		t.Fatalf("%d records after the chain, want %d (none lost to the partial delta)", len(after), seq-d1)
	}
	if n := snapKeys(t, db, c); n != 3+2+4 {
		t.Fatalf("%d snapshot keys after the crash, want 9 (the partial delta still there, unreferenced)", n)
	}
	w = c.NewWriter(100)
	d2 := writeSnap(t, w, true, "d2b", 1, true, &seq)
	chain = append(chain, wantPart(d2, true, "d2b", 1))
	checkChain(t, c, d2, chain...)
	if n := snapKeys(t, db, c); n != 3+2+2 {
		t.Fatalf("%d snapshot keys after the next delta, want 7 (the partial one removed)", n)
	}

	// A full snapshot cut short does not touch the chain of deltas.
	writeSnap(t, w, false, "full", 2, false, &seq)
	fs = db.opts.FS.(*vfs.MemFS)
	db = crash(t, fs)
	c = db.Clone("cart/1")
	checkChain(t, c, d2, chain...)
	w = c.NewWriter(100)
	d3 := writeSnap(t, w, true, "d3", 0, true, &seq)
	chain = append(chain, wantPart(d3, true, "d3", 0))
	checkChain(t, c, d3, chain...)
	if n := snapKeys(t, db, c); n != 3+2+2+1 {
		t.Fatalf("%d snapshot keys, want 8 (the partial full snapshot removed)", n)
	}
	seq++
	mustAppend(t, c, rec("o", seq))
	full := writeSnap(t, w, false, "full2", 1, true, &seq)
	checkChain(t, c, full, wantPart(full, false, "full2", 1))
	if n := snapKeys(t, db, c); n != 2 {
		t.Fatalf("%d snapshot keys after a full snapshot, want 2", n)
	}
}

// TestSnapshotReplacedWhileWritten: a SaveSnapshot between a chunked
// snapshot's begin and its end replaces the chain and deletes the chunks
// written so far; the chunked one's next chunk fails (ErrStaleSnapshot)
// instead of completing a snapshot without its first chunks, and the saved
// one stays the clone's.
func TestSnapshotReplacedWhileWritten(t *testing.T) {
	for _, delta := range []bool{false, true} {
		t.Run(fmt.Sprintf("delta=%v", delta), func(t *testing.T) {
			db := openT(t, memOptions())
			c := db.Clone("c")
			w := c.NewWriter(100)
			seq := uint64(1)
			mustAppend(t, c, rec("o", 1))
			base := writeSnap(t, w, false, "base", 0, true, &seq)
			seq++
			mustAppend(t, c, rec("o", seq))
			gen := writeSnap(t, w, delta, "s", 1, false, &seq)
			if err := c.SaveSnapshot([]byte("saved"), gen); err != nil {
				t.Fatal(err)
			}
			var got completions
			if err := w.SnapshotChunk([]byte("s/2"), got.cb("chunk")); err != nil {
				t.Fatal(err)
			}
			if err := w.SnapshotEnd(got.cb("end")); err != nil && !errors.Is(err, ErrWriterBroken) {
				t.Fatal(err)
			}
			w.Wait()
			if len(got.got) == 0 || !errors.Is(got.got[0].err, ErrStaleSnapshot) {
				t.Fatalf("chunk after a SaveSnapshot replaced the chain: %+v, want ErrStaleSnapshot", got.got)
			}
			checkChain(t, c, gen, part{gen: gen, chunks: []string{"saved"}})
			if gen <= base {
				t.Fatalf("snapshot at %d not after the base at %d", gen, base)
			}
			if n := snapKeys(t, db, c); n != 1 {
				t.Fatalf("%d snapshot keys, want the saved one", n)
			}
		})
	}
}

// TestSnapshotChainCorrupt: a header naming a chain whose base or last
// generation has no chunk is corrupt, and so is a delta part whose chunks
// are labelled with another generation.
func TestSnapshotChainCorrupt(t *testing.T) {
	db := openT(t, memOptions())
	c := db.Clone("c")
	w := c.NewWriter(100)
	seq := uint64(1)
	mustAppend(t, c, rec("o", 1))
	base := writeSnap(t, w, false, "base", 0, true, &seq)
	seq++
	mustAppend(t, c, rec("o", seq))
	d1 := writeSnap(t, w, true, "d1", 0, true, &seq)

	if err := db.pdb.Set(snapChunkKey(c.prefix, d1, 0), encodeSnapshot(base, []byte("x")), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	_, _, parts, err := c.SnapshotChain()
	if err != nil || len(parts) != 2 {
		t.Fatalf("chain: %v %v", parts, err)
	}
	var chunkErr error
	for _, err := range parts[1].Chunks {
		chunkErr = errors.Join(chunkErr, err)
	}
	if !errors.Is(chunkErr, ErrCorrupt) {
		t.Fatalf("mislabelled delta chunk: %v, want ErrCorrupt", chunkErr)
	}

	if err := db.pdb.Delete(snapChunkKey(c.prefix, d1, 0), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := c.SnapshotChain(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("chain whose last delta has no chunk: %v, want ErrCorrupt", err)
	}
	if err := db.pdb.Delete(snapChunkKey(c.prefix, base, 0), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := c.SnapshotChain(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("chain without its base: %v, want ErrCorrupt", err)
	}
	// A header whose base is beyond its end does not decode.
	bad := encodeHeader(header{snapPos: base, basePos: d1, hasSnap: true})
	if err := db.pdb.Set(headerKey(c.prefix), bad, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := c.SnapshotChain(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("header with its base beyond its end: %v, want ErrCorrupt", err)
	}
}

// TestUpgradeFormat2: a format-2 database (18-byte clone headers) opens, its
// marker is rewritten, its snapshot reads as a chain of its base alone, and
// deltas chain onto it.
func TestUpgradeFormat2(t *testing.T) {
	o := memOptions()
	db, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	c := db.Clone("cart/1")
	mustAppend(t, c, rec("o", 1), rec("o", 2), rec("o", 3))
	if err := c.SaveSnapshot([]byte("s@2"), 2); err != nil {
		t.Fatal(err)
	}
	if err := c.Prune(1); err != nil {
		t.Fatal(err)
	}
	// Rewrite it as format 2 would have stored it.
	v2 := encodeHeader(header{prunedThrough: 1, snapPos: 2, basePos: 2, hasSnap: true})[:headerLenV2]
	for _, err := range []error{
		db.pdb.Set(headerKey(c.prefix), v2, pebble.Sync),
		db.pdb.Set(formatKey, formatValueV2, pebble.Sync),
		db.Close(),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}

	db = openT(t, o)
	c = db.Clone("cart/1")
	v, closer, err := db.pdb.Get(formatKey)
	if err != nil || string(v) != string(formatValue) {
		t.Fatalf("marker after upgrade: %q %v", v, err)
	}
	_ = closer.Close()
	if data, pos, ok, err := c.LoadSnapshot(); err != nil || !ok || pos != 2 || string(data) != "s@2" {
		t.Fatalf("snapshot after upgrade: %q %d %v %v", data, pos, ok, err)
	}
	checkChain(t, c, 2, part{gen: 2, chunks: []string{"s@2"}})
	w := c.NewWriter(10)
	seq := uint64(3)
	d := writeSnap(t, w, true, "d", 0, true, &seq)
	checkChain(t, c, d, part{gen: 2, chunks: []string{"s@2"}}, wantPart(d, true, "d", 0))
	if err := c.Prune(d); err != nil {
		t.Fatal(err)
	}
	hv, closer, err := db.pdb.Get(headerKey(c.prefix))
	if err != nil {
		t.Fatal(err)
	}
	h, err := decodeHeader(hv)
	_ = closer.Close()
	if err != nil || len(hv) != headerLen || h != (header{prunedThrough: d, snapPos: d, basePos: 2, hasSnap: true}) {
		t.Fatalf("header after writes: %d bytes, %+v %v", len(hv), h, err)
	}
}
