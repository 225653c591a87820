package persistence

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

// TestPebbleMetricsMove checks that PebbleMetrics reports pebble's own
// numbers: after writes and a flush the disk holds sstables, flushes and
// compactions are counted, reads hit the block cache, and the bloom filters
// (on every level, pebble.go) spare data block reads for absent keys.
func TestPebbleMetricsMove(t *testing.T) {
	db := openT(t, memOptions())
	m0, err := db.PebbleMetrics()
	if err != nil {
		t.Fatal(err)
	}
	if m0.Flushes != 0 || m0.Compactions != 0 || m0.WriteStalls != 0 || m0.BlockCacheHitRate != 0 {
		t.Fatalf("fresh database: %+v", m0)
	}
	c := db.Clone("cart/1")
	for i := uint64(1); i <= 2000; i += 100 {
		recs := make([]Record, 0, 100)
		for s := i; s < i+100; s++ {
			recs = append(recs, rec("o", s))
		}
		mustAppend(t, c, recs...)
	}
	m1, _ := db.PebbleMetrics()
	if m1.MemtableBytes == 0 {
		t.Fatalf("memtable empty after writes: %+v", m1)
	}
	if err := db.pdb.Flush(); err != nil {
		t.Fatal(err)
	}
	// Reads: a catch-up Range (index scan + a Get per record) and MaxSeq of
	// absent origins, whose keys fall inside the sstable's key range (after
	// the index, before origin "o"): the bloom filter rules them out.
	if _, err := rangeAll(t, c, "o", 1, 2000); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		if m, err := c.MaxSeq(fmt.Sprintf("absent-%d", i)); m != 0 || err != nil {
			t.Fatalf("MaxSeq: %v %v", m, err)
		}
	}
	// Filters are consulted above L6 only (pebble.go), so look before the
	// compaction moves the table down.
	if m, _ := db.PebbleMetrics(); m.BloomFilterUsefulRate <= 0 || m.BloomFilterUsefulRate > 1 {
		t.Errorf("BloomFilterUsefulRate %v, want in (0, 1] after reads of absent keys in L0: are the filters on?", m.BloomFilterUsefulRate)
	}
	if err := db.pdb.Compact(t.Context(), []byte{0}, []byte{0xff}, true); err != nil {
		t.Fatal(err)
	}
	m, err := db.PebbleMetrics()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", m)
	switch {
	case m.DiskBytes == 0:
		t.Error("DiskBytes 0 after a flush")
	case m.Flushes < 1:
		t.Errorf("Flushes %d after a flush", m.Flushes)
	case m.Compactions < 1:
		t.Errorf("Compactions %d after a manual compaction", m.Compactions)
	case m.BlockCacheHitRate <= 0 || m.BlockCacheHitRate > 1:
		t.Errorf("BlockCacheHitRate %v, want in (0, 1] after reads", m.BlockCacheHitRate)
	case m.ReadAmp < 1 || m.L0Files != 0:
		t.Errorf("ReadAmp %d, L0 files %d after a full compaction", m.ReadAmp, m.L0Files)
	case m.PointReads < 2200 || m.PointReads != db.Stats().PointReads:
		t.Errorf("PointReads %d (Stats %d), want >= 2200", m.PointReads, db.Stats().PointReads)
	case m.WriteStalls != 0 || m.WriteStallDuration != 0:
		t.Errorf("write stalls %d (%v) in a tiny workload", m.WriteStalls, m.WriteStallDuration)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := db.PebbleMetrics(); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

// TestCompactionsLeaveSnapshotValuesAlone: snapshot chunks are kept out of
// the sstables (value separation, pebble.go), so the compactions that
// follow new writes move keys and references, not the chunks of the full
// snapshots they overlap. Three clones each hold a full snapshot (3 MiB in
// 2 KiB chunks); then clones 1 and 3 write small deltas and log records,
// whose keys bracket clone 2's snapshot, and everything is compacted. The
// bytes compacted must stay a small fraction of the snapshots' (without
// separation they are more than all of them: each is rewritten).
func TestCompactionsLeaveSnapshotValuesAlone(t *testing.T) {
	db := openT(t, memOptions())
	defer db.Close()
	const chunks, chunkBytes = 1536, 2048
	chunk := func(i int) []byte {
		return append(bytes.Repeat([]byte{byte(i)}, chunkBytes-8), fmt.Sprintf("%08d", i)...)
	}
	writers := make([]*Writer, 3)
	var seq uint64
	write := func(w *Writer, delta bool, n int) {
		t.Helper()
		data := make([][]byte, n)
		for i := range data {
			data[i] = chunk(i)
		}
		writeSnapChunks(t, w, delta, []byte("header"), data, 16, true, &seq)
	}
	for i := range writers {
		writers[i] = db.Clone(fmt.Sprintf("cart/%d", i+1)).NewWriter(1 << 16)
		write(writers[i], false, chunks)
	}
	compactAll := func() {
		t.Helper()
		if err := db.pdb.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := db.pdb.Compact(t.Context(), []byte{0}, []byte{0xff}, true); err != nil {
			t.Fatal(err)
		}
	}
	compactAll()
	m0, err := db.PebbleMetrics()
	if err != nil {
		t.Fatal(err)
	}
	if m0.BlobFiles == 0 || m0.BlobReferencedBytes < 3*chunks*(chunkBytes-8) {
		t.Fatalf("snapshot chunks are not in blob files: %+v", m0)
	}
	for range 4 {
		write(writers[0], true, 16)
		write(writers[2], true, 16)
		compactAll()
	}
	m1, _ := db.PebbleMetrics()
	compacted := m1.CompactedBytes - m0.CompactedBytes
	snapshots := uint64(3 * chunks * chunkBytes)
	t.Logf("compacted %d bytes over 4 rounds of deltas; the full snapshots hold %d", compacted, snapshots)
	if compacted > snapshots/10 {
		t.Fatalf("compactions after small deltas wrote %d bytes, %.0f%% of the full snapshots' %d: snapshot values are rewritten",
			compacted, 100*float64(compacted)/float64(snapshots), snapshots)
	}
	// And the chain reads back whole.
	for i := range writers {
		pos, ok, parts, err := db.Clone(fmt.Sprintf("cart/%d", i+1)).SnapshotChain()
		if err != nil || !ok || len(parts) == 0 {
			t.Fatalf("clone %d: chain at %d, %d parts, %v", i+1, pos, len(parts), err)
		}
		n := 0
		for data, err := range parts[0].Chunks {
			if err != nil {
				t.Fatal(err)
			}
			if n > 0 && !bytes.Equal(data, chunk(n-1)) {
				t.Fatalf("clone %d: chunk %d differs after the compactions", i+1, n-1)
			}
			n++
		}
		if n != chunks+1 {
			t.Fatalf("clone %d: full snapshot has %d chunks, want %d and its header", i+1, n, chunks)
		}
	}
}
