package persistence

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"strings"
	"testing"
)

func TestKeyRoundTripAndOrder(t *testing.T) {
	keys := []parsedKey{
		{clone: "cart/2", kind: kindHeader},
		{clone: "cart/2", kind: kindLog, pos: 1},
		{clone: "cart/2", kind: kindLog, pos: 256},
		{clone: "cart/2", kind: kindLog, pos: math.MaxUint64},
		{clone: "cart/2", kind: kindIndex, origin: "cart/1", seq: 7},
		{clone: "cart/2", kind: kindOrigin, origin: "cart/1"},
		{clone: "cart/2", kind: kindSnap}, // format 1 only (upgraded at Open)
		{clone: "cart/2", kind: kindMeta, meta: "epoch"},
		{clone: "cart/2", kind: kindState},
	}
	var prev []byte
	for _, want := range keys {
		k := encodeKey(want)
		got, err := decodeKey(k)
		if err != nil {
			t.Fatalf("decode %+v: %v", want, err)
		}
		if got != want {
			t.Fatalf("round trip: got %+v, want %+v", got, want)
		}
		if prev != nil && bytes.Compare(prev, k) >= 0 {
			t.Fatalf("keys out of order: %q >= %q", prev, k)
		}
		prev = k
		p := clonePrefix("cart/2")
		if !bytes.HasPrefix(k, p) || bytes.Compare(k, cloneEnd(p)) >= 0 {
			t.Fatalf("key %q outside the clone's range", k)
		}
	}
	// Snapshot chunks: after every clone's keys (so they share no sstable
	// block with the keys point reads look up), ordered by generation then
	// chunk, inside the clone's snapshot range, and round-tripping.
	p := clonePrefix("cart/2")
	lo, hi := snapBounds(p)
	last := cloneEnd(clonePrefix("zzzz"))
	var prevSnap []byte
	for _, gc := range [][2]uint64{{0, 0}, {1, 0}, {1, 1}, {1, math.MaxUint32}, {256, 0}, {math.MaxUint64, math.MaxUint32}} {
		want := parsedKey{clone: "cart/2", kind: kindSnapChunk, pos: gc[0], chunk: uint32(gc[1])}
		k := encodeKey(want)
		if got, err := decodeKey(k); err != nil || got != want {
			t.Fatalf("snapshot key round trip: %+v %v, want %+v", got, err, want)
		}
		if bytes.Compare(k, last) <= 0 || bytes.Compare(k, lo) < 0 || bytes.Compare(k, hi) >= 0 {
			t.Fatalf("snapshot key %q outside [%q, %q) or not after the clone ranges", k, lo, hi)
		}
		if prevSnap != nil && bytes.Compare(prevSnap, k) >= 0 {
			t.Fatalf("snapshot keys out of order: %q >= %q", prevSnap, k)
		}
		prevSnap = k
	}
	if k := snapChunkKey(clonePrefix("cart/22"), 0, 0); bytes.Compare(k, lo) >= 0 && bytes.Compare(k, hi) < 0 {
		t.Fatal("clone cart/22's snapshot falls in cart/2's snapshot range")
	}
	// State items: after every snapshot chunk, ordered by epoch, then
	// collection, then item key, inside the clone's state range and its
	// epoch's, and round-tripping.
	slo, shi := stateBounds(p)
	lastChunk := snapChunkKey(clonePrefix("zzzz"), math.MaxUint64, math.MaxUint32)
	var prevState []byte
	for _, k := range []parsedKey{
		{clone: "cart/2", kind: kindStateItem, chunk: 0, coll: "a"},
		{clone: "cart/2", kind: kindStateItem, chunk: 1, coll: "a", item: ""},
		{clone: "cart/2", kind: kindStateItem, chunk: 1, coll: "a", item: "\x00"},
		{clone: "cart/2", kind: kindStateItem, chunk: 1, coll: "a", item: "\xff\xff"},
		{clone: "cart/2", kind: kindStateItem, chunk: 1, coll: "b", item: ""},
		{clone: "cart/2", kind: kindStateItem, chunk: 1, coll: "ba", item: ""},
		{clone: "cart/2", kind: kindStateItem, chunk: 2, coll: "a", item: ""},
		{clone: "cart/2", kind: kindStateItem, chunk: math.MaxUint32, coll: strings.Repeat("\xff", MaxIDLen), item: "\xff\xff\xff"},
	} {
		b := encodeKey(k)
		if got, err := decodeKey(b); err != nil || got != k {
			t.Fatalf("state key round trip: %+v %v, want %+v", got, err, k)
		}
		if bytes.Compare(b, lastChunk) <= 0 || bytes.Compare(b, slo) < 0 || bytes.Compare(b, shi) >= 0 {
			t.Fatalf("state key %q outside [%q, %q) or not after the snapshot ranges", b, slo, shi)
		}
		if elo, ehi := stateEpochBounds(p, k.chunk, 0); bytes.Compare(b, elo) < 0 || bytes.Compare(b, ehi) >= 0 {
			t.Fatalf("state key %q outside its epoch's range", b)
		}
		if k.chunk < math.MaxUint32 {
			if elo, ehi := stateEpochBounds(p, k.chunk, k.chunk+1); bytes.Compare(b, elo) < 0 || bytes.Compare(b, ehi) >= 0 {
				t.Fatalf("state key %q outside [epoch, epoch+1)", b)
			}
		}
		if prevState != nil && bytes.Compare(prevState, b) >= 0 {
			t.Fatalf("state keys out of order: %q >= %q", prevState, b)
		}
		prevState = b
	}
	if k := stateItemKey(nil, statePrefix(clonePrefix("cart/22")), 0, stateItemSuffix("a", nil)); bytes.Compare(k, slo) >= 0 && bytes.Compare(k, shi) < 0 {
		t.Fatal("clone cart/22's state falls in cart/2's state range")
	}
	// Positions sort numerically.
	if bytes.Compare(logKey(clonePrefix("a"), 255), logKey(clonePrefix("a"), 256)) >= 0 {
		t.Fatal("log keys do not sort by position")
	}
	// "a" and "ab" are disjoint ranges thanks to the length prefix.
	a, ab := clonePrefix("a"), clonePrefix("ab")
	if k := logKey(ab, 1); bytes.Compare(k, a) >= 0 && bytes.Compare(k, cloneEnd(a)) < 0 {
		t.Fatal("clone ab's key falls in clone a's range")
	}
}

func TestDecodersRejectCorrupt(t *testing.T) {
	goodRec := encodeRecord("o", 5, []byte("payload"))
	flipped := bytes.Clone(goodRec)
	flipped[len(flipped)-1] ^= 1
	goodSnap := encodeSnapshot(9, []byte("state"))
	badSnap := bytes.Clone(goodSnap)
	badSnap[6] ^= 0x80
	zeroSeq := encodeRecord("o", 0, nil)

	cases := []struct {
		name string
		fn   func() error
	}{
		{"key empty", func() error { _, err := decodeKey(nil); return err }},
		{"key foreign tag", func() error { _, err := decodeKey(formatKey); return err }},
		{"key id length beyond key", func() error { _, err := decodeKey([]byte{tagClone, 0, 9, 'a'}); return err }},
		{"key zero id", func() error { _, err := decodeKey([]byte{tagClone, 0, 0, kindLog}); return err }},
		{"key unknown kind", func() error { _, err := decodeKey([]byte{tagClone, 0, 1, 'a', 0x7f}); return err }},
		{"key short log", func() error { _, err := decodeKey(append(kindKey(clonePrefix("a"), kindLog, 0), 1, 2)); return err }},
		{"key header trailing", func() error { _, err := decodeKey(append(headerKey(clonePrefix("a")), 0)); return err }},
		{"key index truncated", func() error { k := indexKey(clonePrefix("a"), "o", 1); _, err := decodeKey(k[:len(k)-1]); return err }},
		{"key empty meta", func() error { _, err := decodeKey(kindKey(clonePrefix("a"), kindMeta, 0)); return err }},
		{"key short snapshot", func() error { k := snapChunkKey(clonePrefix("a"), 1, 0); _, err := decodeKey(k[:len(k)-1]); return err }},
		{"key snapshot pseudo-kind in clone range", func() error { _, err := decodeKey(kindKey(clonePrefix("a"), kindSnapChunk, 0)); return err }},
		{"record short", func() error { _, err := decodeRecord(goodRec[:10]); return err }},
		{"record bit flip", func() error { _, err := decodeRecord(flipped); return err }},
		{"record version", func() error { v := bytes.Clone(goodRec); v[0] = 9; _, err := decodeRecord(v); return err }},
		{"record seq 0", func() error { _, err := decodeRecord(zeroSeq); return err }},
		{"pos short", func() error { _, err := decodePos([]byte{1}); return err }},
		{"pos zero", func() error { _, err := decodePos(make([]byte, 8)); return err }},
		{"header short", func() error { _, err := decodeHeader([]byte{1, 2}); return err }},
		{"header pruned beyond snapshot", func() error {
			_, err := decodeHeader(encodeHeader(header{prunedThrough: 9, snapPos: 3, hasSnap: true}))
			return err
		}},
		{"header positions without snapshot", func() error { _, err := decodeHeader(encodeHeader(header{snapPos: 3})); return err }},
		{"header flags", func() error { v := encodeHeader(header{}); v[17] = 7; _, err := decodeHeader(v); return err }},
		{"header base beyond snapshot", func() error {
			_, err := decodeHeader(encodeHeader(header{snapPos: 3, basePos: 4, hasSnap: true}))
			return err
		}},
		{"header base without snapshot", func() error { _, err := decodeHeader(encodeHeader(header{basePos: 2})); return err }},
		{"header between the two lengths", func() error {
			_, err := decodeHeader(encodeHeader(header{snapPos: 3, basePos: 3, hasSnap: true})[:headerLenV2+4])
			return err
		}},
		{"snapshot short", func() error { _, _, err := decodeSnapshot(goodSnap[:5]); return err }},
		{"snapshot bit flip", func() error { _, _, err := decodeSnapshot(badSnap); return err }},
		{"origin state short", func() error { _, err := decodeOriginState([]byte{1}); return err }},
		{"origin state range count", func() error {
			v := encodeOriginState(originState{maxSeq: 9, pruned: []seqRange{{1, 2}}})
			_, err := decodeOriginState(v[:len(v)-1])
			return err
		}},
		{"origin state range beyond max", func() error {
			_, err := decodeOriginState(encodeOriginState(originState{maxSeq: 3, pruned: []seqRange{{1, 5}}}))
			return err
		}},
		{"origin state adjacent ranges", func() error {
			_, err := decodeOriginState(encodeOriginState(originState{maxSeq: 9, pruned: []seqRange{{1, 2}, {3, 4}}}))
			return err
		}},
		{"origin state inverted range", func() error {
			_, err := decodeOriginState(encodeOriginState(originState{maxSeq: 9, pruned: []seqRange{{5, 4}}}))
			return err
		}},
	}
	for _, tc := range cases {
		err := tc.fn()
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: got %v, want ErrCorrupt", tc.name, err)
		}
	}

	r, err := decodeRecord(goodRec)
	if err != nil || r.Origin != "o" || r.Seq != 5 || string(r.Data) != "payload" {
		t.Fatalf("good record: %+v, %v", r, err)
	}
	pos, data, err := decodeSnapshot(goodSnap)
	if err != nil || pos != 9 || string(data) != "state" {
		t.Fatalf("good snapshot: %d %q %v", pos, data, err)
	}
}

func TestPrunedRanges(t *testing.T) {
	var s originState
	s.maxSeq = 1000
	s.addPruned([]uint64{1, 2, 3, 7, 8})
	want := []seqRange{{1, 3}, {7, 8}}
	if !equalRanges(s.pruned, want) {
		t.Fatalf("got %v, want %v", s.pruned, want)
	}
	s.addPruned([]uint64{4, 5, 6, 10})
	if want := []seqRange{{1, 8}, {10, 10}}; !equalRanges(s.pruned, want) {
		t.Fatalf("got %v, want %v", s.pruned, want)
	}
	for seq, in := range map[uint64]bool{0: false, 1: true, 8: true, 9: false, 10: true, 11: false} {
		if got := s.prunedContains(seq); got != in {
			t.Errorf("contains(%d) = %v, want %v", seq, got, in)
		}
	}
	if !s.prunedOverlaps(9, 10) || s.prunedOverlaps(11, 20) || !s.prunedOverlaps(0, math.MaxUint64) {
		t.Fatal("overlaps wrong")
	}
	// The cap forgets the lowest runs, never invents coverage.
	var many []uint64
	for i := uint64(0); i < 2*maxPrunedRanges; i++ {
		many = append(many, 100+2*i)
	}
	s.addPruned(many)
	if len(s.pruned) != maxPrunedRanges {
		t.Fatalf("%d ranges, want cap %d", len(s.pruned), maxPrunedRanges)
	}
	if s.prunedContains(1) || !s.prunedContains(many[len(many)-1]) || s.prunedContains(101) {
		t.Fatalf("cap kept the wrong runs: %v", s.pruned)
	}
	if _, err := decodeOriginState(encodeOriginState(s)); err != nil {
		t.Fatalf("capped state does not decode: %v", err)
	}
	// Maximal seq does not overflow the adjacency check.
	var m originState
	m.maxSeq = math.MaxUint64
	m.addPruned([]uint64{math.MaxUint64 - 1, math.MaxUint64})
	m.addPruned([]uint64{math.MaxUint64})
	if want := []seqRange{{math.MaxUint64 - 1, math.MaxUint64}}; !equalRanges(m.pruned, want) {
		t.Fatalf("got %v, want %v", m.pruned, want)
	}
}

func equalRanges(a, b []seqRange) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Fuzz targets: every decoder of stored bytes must never panic, must reject
// with ErrCorrupt, and must accept only canonical encodings (re-encoding what
// it accepted gives the same bytes).

func checkCorrupt(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("error %v does not wrap ErrCorrupt", err)
	}
}

func FuzzDecodeKey(f *testing.F) {
	p := clonePrefix("cart/2")
	for _, k := range [][]byte{headerKey(p), logKey(p, 42), indexKey(p, "cart/1", 9), originKey(p, "o"), legacySnapKey(p), snapChunkKey(p, 7, 0), metaKey(p, "m"), formatKey, {},
		stateHeaderKey(p), stateItemKey(nil, statePrefix(p), 3, stateItemSuffix("carts", []byte("u1"))), stateItemKey(nil, statePrefix(p), 3, stateItemSuffix("c", nil))} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := decodeKey(b)
		if err != nil {
			checkCorrupt(t, err)
			return
		}
		if got := encodeKey(k); !bytes.Equal(got, b) {
			t.Fatalf("non-canonical key accepted: %q re-encodes as %q", b, got)
		}
	})
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(encodeRecord("cart/1", 1, []byte("op")))
	f.Add(encodeRecord("x", math.MaxUint64, nil))
	f.Add([]byte{1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		check := func(b []byte) {
			r, err := decodeRecord(b)
			if err != nil {
				checkCorrupt(t, err)
				return
			}
			if got := encodeRecord(r.Origin, r.Seq, r.Data); !bytes.Equal(got, b) {
				t.Fatalf("non-canonical record accepted")
			}
		}
		check(b)
		// Random bytes almost never carry a valid checksum; fix it so the
		// structural checks behind it get fuzzed too.
		if len(b) >= 5 {
			fixed := bytes.Clone(b)
			binary.BigEndian.PutUint32(fixed[1:5], crc32.Checksum(fixed[5:], castagnoli))
			check(fixed)
		}
	})
}

func FuzzDecodeStaged(f *testing.F) {
	f.Add(encodeStaged([]encStateItem{{suffix: stateItemSuffix("m", []byte("k")), val: encodeStateItem(nil, []byte("v"))}, {suffix: stateItemSuffix("m", nil)}}))
	f.Add([]byte{})
	f.Add([]byte{3, 0, 1, 'm', 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		items, err := decodeStaged(b)
		if err != nil {
			checkCorrupt(t, err)
			return
		}
		// What it accepts re-encodes to what decodes the same.
		again, err := decodeStaged(encodeStaged(items))
		if err != nil || len(again) != len(items) {
			t.Fatalf("re-encoded staged delta: %d items, %v; want %d", len(again), err, len(items))
		}
		for i := range items {
			if !bytes.Equal(items[i].suffix, again[i].suffix) || !bytes.Equal(items[i].val, again[i].val) || (items[i].val == nil) != (again[i].val == nil) {
				t.Fatalf("item %d changed in a round trip", i)
			}
		}
	})
}

func FuzzDecodeStateItem(f *testing.F) {
	f.Add(encodeStateItem(nil, []byte("state")))
	f.Add(encodeStateItem(nil, nil))
	f.Add([]byte{1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		check := func(b []byte) {
			data, err := decodeStateItem(b)
			if err != nil {
				checkCorrupt(t, err)
				return
			}
			if got := encodeStateItem(nil, data); !bytes.Equal(got, b) {
				t.Fatalf("non-canonical state item accepted")
			}
		}
		check(b)
		if len(b) >= 5 { // with a valid checksum, to reach the rest
			fixed := bytes.Clone(b)
			binary.BigEndian.PutUint32(fixed[1:5], crc32.Checksum(fixed[5:], castagnoli))
			check(fixed)
		}
	})
}

func FuzzDecodeSnapshot(f *testing.F) {
	f.Add(encodeSnapshot(7, []byte("state")))
	f.Add(encodeSnapshot(0, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		pos, data, err := decodeSnapshot(b)
		if err != nil {
			checkCorrupt(t, err)
			return
		}
		if got := encodeSnapshot(pos, data); !bytes.Equal(got, b) {
			t.Fatalf("non-canonical snapshot accepted")
		}
	})
}

// TestHeaderFormats: a header round-trips with its chain base or state
// epoch; a format-3 header (26 bytes, no epoch) decodes as a chain, a
// format-2 header (18 bytes, no base) as a chain of its base alone; a state
// with a short header or without an epoch is refused.
func TestHeaderFormats(t *testing.T) {
	for _, h := range []header{
		{},
		{epoch: 4}, // a state was dropped: its epoch is remembered
		{prunedThrough: 3, snapPos: 9, basePos: 9, hasSnap: true},
		{prunedThrough: 3, snapPos: 9, basePos: 4, hasSnap: true, epoch: 2},
		{snapPos: math.MaxUint64, basePos: 0, hasSnap: true},
		{prunedThrough: 3, snapPos: 9, basePos: 9, hasSnap: true, state: true, epoch: 1},
		{prunedThrough: 3, snapPos: 9, basePos: 5, hasSnap: true, state: true, epoch: 1}, // a delta staged at 9
		{snapPos: math.MaxUint64, basePos: math.MaxUint64, hasSnap: true, state: true, epoch: math.MaxUint32},
	} {
		v := encodeHeader(h)
		if len(v) != headerLen {
			t.Fatalf("header of %d bytes, want %d", len(v), headerLen)
		}
		if got, err := decodeHeader(v); err != nil || got != h {
			t.Fatalf("header round trip: %+v %v, want %+v", got, err, h)
		}
	}
	// As format 2 wrote it: version | pruned | snap | flags.
	old := []byte{valueVersion}
	old = binary.BigEndian.AppendUint64(old, 3)
	old = binary.BigEndian.AppendUint64(old, 9)
	old = append(old, 1)
	if len(old) != headerLenV2 {
		t.Fatalf("format-2 header of %d bytes, want %d", len(old), headerLenV2)
	}
	want := header{prunedThrough: 3, snapPos: 9, basePos: 9, hasSnap: true}
	if got, err := decodeHeader(old); err != nil || got != want {
		t.Fatalf("format-2 header: %+v %v, want %+v", got, err, want)
	}
	noSnap := append([]byte{valueVersion}, make([]byte, headerLenV2-1)...)
	if got, err := decodeHeader(noSnap); err != nil || got != (header{}) {
		t.Fatalf("format-2 header without a snapshot: %+v %v", got, err)
	}
	v3 := encodeHeader(header{prunedThrough: 3, snapPos: 9, basePos: 4, hasSnap: true})[:headerLenV3]
	if got, err := decodeHeader(v3); err != nil || got != (header{prunedThrough: 3, snapPos: 9, basePos: 4, hasSnap: true}) {
		t.Fatalf("format-3 header: %+v %v", got, err)
	}
	for name, v := range map[string][]byte{
		"state in a format-3 header": encodeHeader(header{snapPos: 9, basePos: 9, hasSnap: true, state: true, epoch: 1})[:headerLenV3],
		"state without an epoch":     encodeHeader(header{snapPos: 9, basePos: 9, hasSnap: true, state: true}),
	} {
		if _, err := decodeHeader(v); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s: %v, want ErrCorrupt", name, err)
		}
	}
}

func FuzzDecodeHeader(f *testing.F) {
	f.Add(encodeHeader(header{}))
	f.Add(encodeHeader(header{prunedThrough: 3, snapPos: 9, basePos: 9, hasSnap: true}))
	f.Add(encodeHeader(header{prunedThrough: 3, snapPos: 9, basePos: 5, hasSnap: true}))
	f.Add(encodeHeader(header{prunedThrough: 3, snapPos: 9, basePos: 9, hasSnap: true})[:headerLenV2]) // format 2
	f.Add(encodeHeader(header{})[:headerLenV2])                                                        // format 2
	f.Add(encodeHeader(header{prunedThrough: 3, snapPos: 9, basePos: 5, hasSnap: true})[:headerLenV3]) // format 3
	f.Add(encodeHeader(header{prunedThrough: 3, snapPos: 9, basePos: 9, hasSnap: true, state: true, epoch: 7}))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeHeader(b)
		if err != nil {
			checkCorrupt(t, err)
			return
		}
		got := encodeHeader(h)
		switch len(b) {
		case headerLenV2:
			// Format 2: canonical once the base (= the snapshot) is
			// appended.
			if h.basePos != h.snapPos || h.state || h.epoch != 0 || !bytes.Equal(got[:headerLenV2], b) {
				t.Fatalf("format-2 header decoded as %+v", h)
			}
			return
		case headerLenV3:
			// Format 3: canonical once the epoch (0) is appended.
			if h.state || h.epoch != 0 || !bytes.Equal(got[:headerLenV3], b) {
				t.Fatalf("format-3 header decoded as %+v", h)
			}
			return
		}
		if !bytes.Equal(got, b) {
			t.Fatalf("non-canonical header accepted")
		}
	})
}

func FuzzDecodeOriginState(f *testing.F) {
	f.Add(encodeOriginState(originState{maxSeq: 5}))
	f.Add(encodeOriginState(originState{maxSeq: 50, pruned: []seqRange{{1, 9}, {20, 30}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeOriginState(b)
		if err != nil {
			checkCorrupt(t, err)
			return
		}
		if got := encodeOriginState(s); !bytes.Equal(got, b) {
			t.Fatalf("non-canonical origin state accepted")
		}
		for _, r := range s.pruned {
			if !s.prunedContains(r.lo) || !s.prunedContains(r.hi) {
				t.Fatalf("decoded range %v not contained", r)
			}
		}
	})
}

func FuzzDecodePos(f *testing.F) {
	f.Add(encodePos(1))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		pos, err := decodePos(b)
		if err != nil {
			checkCorrupt(t, err)
			return
		}
		if got := encodePos(pos); !bytes.Equal(got, b) {
			t.Fatalf("non-canonical position accepted")
		}
	})
}
