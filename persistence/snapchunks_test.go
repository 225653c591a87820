package persistence

import (
	"errors"
	"slices"
	"testing"
)

// chunksOf reads the clone's snapshot chunks as strings.
func chunksOf(t *testing.T, c *CloneLog) (uint64, []string) {
	t.Helper()
	pos, ok, chunks, err := c.SnapshotChunks()
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		return 0, nil
	}
	var out []string
	for b, err := range chunks {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return pos, out
}

// writeChunked writes a full chunked snapshot through w with appends
// between its chunks, and returns the position its begin reported.
func writeChunked(t *testing.T, w *Writer, name string, chunks int, end bool, nextSeq *uint64) uint64 {
	t.Helper()
	return writeSnap(t, w, false, name, chunks, end, nextSeq)
}

// TestChunkedSnapshotCoversWhatPrecedesItsBegin: the chunks of a snapshot,
// written with appends between them, read back in order under the position
// of its begin; the appends made while it was written replay after it, and
// the prune it allows works.
func TestChunkedSnapshotCoversWhatPrecedesItsBegin(t *testing.T) {
	db := openT(t, memOptions())
	c := db.Clone("cart/1")
	w := c.NewWriter(100)
	seq := uint64(0)
	for range 5 {
		seq++
		mustAppend(t, c, rec("o", seq))
	}
	pos := writeChunked(t, w, "a", 3, true, &seq)
	if pos != 5 {
		t.Fatalf("snapshot begun after 5 records at position %d", pos)
	}
	gotPos, chunks := chunksOf(t, c)
	if want := []string{"a/header", "a/1", "a/2", "a/3"}; gotPos != 5 || !slices.Equal(chunks, want) {
		t.Fatalf("stored snapshot %d %q, want 5 %q", gotPos, chunks, want)
	}
	if after := replayAll(t, c, gotPos); len(after) != 3 || after[0].r.Seq != 6 {
		t.Fatalf("records after the snapshot: %+v, want seqs 6..8 (appended while it was written)", after)
	}
	if err := c.Prune(5); err != nil {
		t.Fatalf("prune covered by the chunked snapshot: %v", err)
	}
	if _, _, _, err := c.LoadSnapshot(); !errors.Is(err, ErrIncompatible) {
		t.Fatalf("LoadSnapshot of a chunked snapshot: %v, want ErrIncompatible (read it with SnapshotChunks)", err)
	}
}

// TestCrashMidChunkedSnapshotKeepsThePreviousOne: a snapshot cut short (its
// chunks durable, its end never written) is not the clone's snapshot after
// a reopen; the previous one is, whole; the next snapshot removes the
// leftovers; and a begin with nothing logged since the stored snapshot
// leaves that one in place.
func TestCrashMidChunkedSnapshotKeepsThePreviousOne(t *testing.T) {
	o := memOptions()
	db := openT(t, o)
	c := db.Clone("cart/1")
	w := c.NewWriter(100)
	seq := uint64(0)
	mustAppend(t, c, rec("o", 1), rec("o", 2))
	seq = 2
	first := writeChunked(t, w, "a", 2, true, &seq)
	seq++
	mustAppend(t, c, rec("o", seq))
	writeChunked(t, w, "b", 4, false, &seq) // no end: the crash comes first
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openT(t, o)
	c = db.Clone("cart/1")
	pos, chunks := chunksOf(t, c)
	if want := []string{"a/header", "a/1", "a/2"}; pos != first || !slices.Equal(chunks, want) {
		t.Fatalf("after a crash mid-snapshot: %d %q, want the previous snapshot %d %q", pos, chunks, first, want)
	}
	if after := replayAll(t, c, pos); len(after) != 7 {
		t.Fatalf("%d records after the previous snapshot, want 7 (none lost to the partial one)", len(after))
	}

	w = c.NewWriter(100)
	third := writeChunked(t, w, "c", 1, true, &seq)
	if pos, chunks := chunksOf(t, c); pos != third || !slices.Equal(chunks, []string{"c/header", "c/1"}) {
		t.Fatalf("next snapshot %d %q", pos, chunks)
	}
	lo, _ := snapBounds(c.prefix)
	if n := countKeys(t, db, lo); n != 2 {
		t.Fatalf("%d snapshot keys, want 2 (the leftovers of the partial one and the old one removed)", n)
	}

	// Two snapshots with no append between them: the second finds nothing
	// logged since the first, which stays.
	fourth := writeChunked(t, w, "d", 0, true, &seq)
	if fourth != third+1 {
		t.Fatalf("snapshot after one more record at %d, want %d", fourth, third+1)
	}
	var got completions
	for _, err := range []error{
		w.SnapshotBegin([]byte("e/header"), got.cb("begin")),
		w.SnapshotChunk([]byte("e/1"), got.cb("chunk")),
		w.SnapshotEnd(got.cb("end")),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	w.Wait()
	for _, g := range got.got {
		if g.err != nil || g.pos != fourth {
			t.Fatalf("%s of a snapshot with nothing new: %d %v, want %d", g.what, g.pos, g.err, fourth)
		}
	}
	if pos, chunks := chunksOf(t, c); pos != fourth || !slices.Equal(chunks, []string{"d/header"}) {
		t.Fatalf("after a snapshot with nothing new: %d %q, want the stored one", pos, chunks)
	}
}

// TestSnapshotChunkWithoutBeginBreaksTheWriter: a chunk or an end with no
// snapshot begun is a caller's bug: the Writer breaks (ErrNoSnapshot).
func TestSnapshotChunkWithoutBeginBreaksTheWriter(t *testing.T) {
	db := openT(t, memOptions())
	w := db.Clone("c").NewWriter(10)
	var got completions
	if err := w.SnapshotChunk([]byte("x"), got.cb("chunk")); err != nil {
		t.Fatal(err)
	}
	w.Wait()
	if len(got.got) != 1 || !errors.Is(got.got[0].err, ErrNoSnapshot) || !errors.Is(got.got[0].err, ErrWriterBroken) {
		t.Fatalf("chunk without begin: %+v", got.got)
	}
}
