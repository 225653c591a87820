package collections_test

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"testing"

	"pgregory.net/rapid"

	"github.com/tempestrt/tempest/collections"
	"github.com/tempestrt/tempest/proto/tempestpb"
)

// chainPart is one stored snapshot of a chain: a full one, or a delta.
type chainPart struct {
	header *tempestpb.SnapshotHeader
	chunks []*tempestpb.SnapshotChunk
}

// restoreChain restores a chain (a full snapshot, then deltas in order)
// into a fresh replica "a" of {a, b, c}, trusted (as from its own disk) or
// not (as from a peer).
func restoreChain(t tb, chain []chainPart, trusted bool) (*fixture, error) {
	got := newFixture(t, "a", nil, noAuto)
	got.s.SetOrigins([]string{"a", "b", "c"})
	rs, err := got.s.BeginRestore(chain[0].header)
	if err != nil {
		return nil, err
	}
	if trusted {
		rs.Trusted()
	}
	for i, p := range chain {
		if i > 0 {
			if err := rs.NextDelta(p.header); err != nil {
				return nil, fmt.Errorf("part %d: %w", i, err)
			}
		}
		for _, c := range p.chunks {
			if err := rs.Add(c); err != nil {
				return nil, fmt.Errorf("part %d: %w", i, err)
			}
		}
	}
	return got, rs.Finish()
}

// partOf pulls a stream to its end with the default budgets.
func partOf(t tb, st *collections.SnapshotStream) chainPart {
	t.Helper()
	p := chainPart{header: st.Header()}
	for c, err := range st.All(0, 0) {
		if err != nil {
			t.Fatal(err)
		}
		p.chunks = append(p.chunks, c)
	}
	return p
}

// deltaOf begins a delta stream of s (failing if it would be full) and
// pulls it to its end, at most maxItems items per chunk (0: the default).
func deltaOf(t tb, s *collections.Store, maxItems int) chainPart {
	t.Helper()
	st, err := s.BeginSnapshot(collections.SnapshotStreamOptions{Delta: true})
	if err != nil || !st.Delta() {
		t.Fatalf("want a delta stream: %v", err)
	}
	p := chainPart{header: st.Header()}
	for c, err := range st.All(0, maxItems) {
		if err != nil {
			t.Fatal(err)
		}
		p.chunks = append(p.chunks, c)
	}
	return p
}

// streamAll pulls a stream to its end in random small chunks (after a
// marshal round trip each), changing the replica between pulls.
func streamAll(t *rapid.T, r *streamRig, st *collections.SnapshotStream) (chainPart, error) {
	p := chainPart{header: roundTripMsg(t, st.Header())}
	for i := 0; ; i++ {
		for range rapid.IntRange(0, 4).Draw(t, "between") {
			r.step(t)
		}
		chunk, last, err := st.Next(rapid.IntRange(1, 400).Draw(t, "maxBytes"), rapid.IntRange(1, 6).Draw(t, "maxItems"))
		if err != nil {
			return p, err
		}
		p.chunks = append(p.chunks, roundTripMsg(t, chunk))
		if last {
			return p, nil
		}
		if i > 100_000 {
			return p, errors.New("stream does not end")
		}
	}
}

// runDeltaChainProperty: a replica keeps changing while snapshots are
// taken as a chain (the first full, then deltas: only the items changed
// since the previous capture, with absent entries for those gone), each
// streamed in small chunks with changes in between; now and then a stream
// is given up half way (the next one must then be full) or a detached
// full stream (a state transfer) runs in between (the chain must not
// notice). After every snapshot, the chain so far restores to exactly the
// replica that Restore of Snapshot() taken at its capture gives.
func runDeltaChainProperty(t *rapid.T) error {
	r := newStreamRig(t)
	r.preload(t, rapid.IntRange(0, 200).Draw(t, "preload"))
	if rapid.Bool().Draw(t, "nearCounterLimits") {
		collections.NearCounterLimits(r.f.s) // the 32-bit counters restart in the middle
	}
	var chain []chainPart
	for n := range rapid.IntRange(1, 6).Draw(t, "snapshots") {
		for range rapid.IntRange(0, 40).Draw(t, "before") {
			r.step(t)
		}
		kind := rapid.IntRange(0, 9).Draw(t, "kind")
		if kind == 1 { // detached
			st, err := r.f.s.BeginSnapshot(collections.SnapshotStreamOptions{Delta: true, Detached: true})
			if err != nil {
				return err
			}
			if st.Delta() {
				return errors.New("a detached stream is a delta")
			}
			if _, err := streamAll(t, r, st); err != nil {
				return err
			}
			continue
		}
		want := roundTrip(t, r.f.s.Snapshot())
		st, err := r.f.s.BeginSnapshot(collections.SnapshotStreamOptions{Delta: true})
		if err != nil {
			return err
		}
		if st.Delta() && len(chain) == 0 {
			return errors.New("the first stream of a store is a delta")
		}
		p := chainPart{header: roundTripMsg(t, st.Header())}
		if kind == 0 { // given up half way (if it has not ended by then)
			for range rapid.IntRange(0, 3).Draw(t, "pulls") {
				chunk, last, err := st.Next(100, 2)
				if err != nil {
					return err
				}
				p.chunks = append(p.chunks, roundTripMsg(t, chunk))
				if last {
					break
				}
				r.step(t)
			}
			if !st.Done() {
				st.Close()
				chain = nil // what a scheduler does: the next must be full
				continue
			}
		}
		if !st.Done() {
			rest, err := streamAll(t, r, st)
			if err != nil {
				return err
			}
			p.chunks = append(p.chunks, rest.chunks...)
		}
		if st.Delta() {
			chain = append(chain, p)
		} else {
			chain = []chainPart{p}
		}
		ref := newFixture(t, "a", nil, noAuto)
		ref.s.SetOrigins([]string{"a", "b", "c"})
		if err := ref.s.Restore(want); err != nil {
			return fmt.Errorf("restore of the snapshot: %w", err)
		}
		got, err := restoreChain(t, chain, rapid.Bool().Draw(t, "trusted"))
		if err != nil {
			return fmt.Errorf("snapshot %d: restore of a chain of %d: %w", n, len(chain), err)
		}
		if err := sameReplica(ref.s, got.s); err != nil {
			return fmt.Errorf("snapshot %d, a chain of %d: %w", n, len(chain), err)
		}
	}
	return nil
}

// TestPropertyDeltaChain: see runDeltaChainProperty. More cases:
// -rapid.checks=N.
func TestPropertyDeltaChain(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		if err := runDeltaChainProperty(t); err != nil {
			t.Fatal(err)
		}
	})
}

// TestDeltaChainCatchesMutants shows that TestPropertyDeltaChain can fail:
// with a change hook off, or with a delta that leaves out what went away,
// some seeded history must restore a different replica.
func TestDeltaChainCatchesMutants(t *testing.T) {
	requireMutantsCaught(t, runDeltaChainProperty, []mutant{
		{"insert unhooked", collections.MutantStreamInsertUnhooked},
		{"fold unhooked", collections.MutantStreamFoldUnhooked},
		{"no absent entries", collections.MutantDeltaNoAbsent},
		{"cold members unread", collections.MutantColdMembersUnread},
		{"promotion drops membership", collections.MutantPromoteDropsMember},
	})
}

// TestDeltaHoldsOnlyWhatChanged: after a full snapshot of 5000 map
// entries, a delta holds the entries changed since (and absent entries
// for those deleted), not the rest; a second delta with nothing changed
// holds nothing. The cost of a delta follows the changes, not the state.
func TestDeltaHoldsOnlyWhatChanged(t *testing.T) {
	f := bigFixture(t, 5000)
	full, err := f.s.BeginSnapshot(collections.SnapshotStreamOptions{Delta: true})
	if err != nil {
		t.Fatal(err)
	}
	if full.Delta() {
		t.Fatal("the first snapshot of a fresh store must be full")
	}
	base := partOf(t, full)
	f.update(t, func() {
		for i := range 30 {
			f.m.Put(strconv.Itoa(i*7), -i)
		}
		for i := range 5 {
			f.m.Delete(strconv.Itoa(4000 + i))
		}
	})
	f.s.Compact()
	d, err := f.s.BeginSnapshot(collections.SnapshotStreamOptions{Delta: true})
	if err != nil {
		t.Fatal(err)
	}
	if !d.Delta() || !d.Header().GetDelta() || d.Header().GetFollowsApplied() != base.header.GetApplied() {
		t.Fatalf("want a delta following applied %d, got delta=%v header %v", base.header.GetApplied(), d.Delta(), d.Header())
	}
	delta := partOf(t, d)
	if s := d.Stats(); s.Items != 35 || s.Absent != 5 || s.Visited != 35 {
		t.Fatalf("delta after 30 puts and 5 deletes of 5000 entries: %+v, want 35 items (5 absent), 35 visited", s)
	}
	empty, err := f.s.BeginSnapshot(collections.SnapshotStreamOptions{Delta: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, last, err := empty.Next(0, 0); err != nil || !last || empty.Stats().Items != 0 {
		t.Fatalf("delta with nothing changed: last=%v err=%v %+v", last, err, empty.Stats())
	}

	got := newFixture(t, "a", nil)
	rs, err := got.s.BeginRestore(base.header)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range base.chunks {
		if err := rs.Add(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := rs.NextDelta(delta.header); err != nil {
		t.Fatal(err)
	}
	for _, c := range delta.chunks {
		if err := rs.Add(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := rs.Finish(); err != nil {
		t.Fatal(err)
	}
	if err := sameReplica(f.s, got.s); err != nil {
		t.Fatal(err)
	}
}

// TestDeltaRestoreRejects: a delta restores only on top of the part it
// follows, after that part's last chunk; absent entries only in a delta.
func TestDeltaRestoreRejects(t *testing.T) {
	f := bigFixture(t, 50)
	hdr, chunks := streamOf(t, f, 0, 0)
	f.update(t, func() { f.m.Put("1", 100) })
	d := deltaOf(t, f.s, 0)
	dh, dchunks := d.header, d.chunks
	begin := func() *collections.StreamRestorer {
		g := newFixture(t, "a", nil)
		rs, err := g.s.BeginRestore(hdr)
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	fresh := newFixture(t, "a", nil)
	if _, err := fresh.s.BeginRestore(dh); !errors.Is(err, collections.ErrSnapshot) {
		t.Fatalf("a delta restored alone: %v, want ErrSnapshot", err)
	}
	if err := begin().NextDelta(dh); !errors.Is(err, collections.ErrSnapshot) {
		t.Fatalf("a delta before the full snapshot's chunks: %v, want ErrSnapshot", err)
	}
	rs := begin()
	for _, c := range chunks {
		if err := rs.Add(c); err != nil {
			t.Fatal(err)
		}
	}
	wrong := roundTripMsg(t, dh)
	wrong.FollowsApplied++
	if err := rs.NextDelta(wrong); !errors.Is(err, collections.ErrSnapshot) {
		t.Fatalf("a delta of another base: %v, want ErrSnapshot", err)
	}
	if err := rs.Finish(); !errors.Is(err, collections.ErrSnapshot) {
		t.Fatalf("Finish after a refused delta: %v, want the sticky ErrSnapshot", err)
	}
	absent := roundTripMsg(t, chunks[0])
	absent.Items = append(absent.Items, &tempestpb.ItemState{Collection: "m", Item: []byte("x"), Absent: true})
	rs = begin()
	if err := rs.Add(absent); !errors.Is(err, collections.ErrSnapshot) {
		t.Fatalf("an absent entry in a full snapshot: %v, want ErrSnapshot", err)
	}
	twice := roundTripMsg(t, dchunks[0])
	twice.Items = append(twice.Items, twice.Items[0])
	rs = begin()
	for _, c := range chunks {
		if err := rs.Add(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := rs.NextDelta(dh); err != nil {
		t.Fatal(err)
	}
	if err := rs.Add(twice); !errors.Is(err, collections.ErrSnapshot) {
		t.Fatalf("an item twice in a delta: %v, want ErrSnapshot", err)
	}
}

// TestSizeHintSizesTheTablesOnce: a chain whose delta grows the replica
// from 100 items to 20 100 restores, trusted, into tables sized once when
// given the last header's item counts (SizeHint): it allocates less than
// without the hint, where each table grows (and is rebuilt) as the delta's
// items arrive; and the replica is the same either way.
func TestSizeHintSizesTheTablesOnce(t *testing.T) {
	f := bigFixture(t, 100)
	full, err := f.s.BeginSnapshot(collections.SnapshotStreamOptions{Delta: true})
	if err != nil {
		t.Fatal(err)
	}
	base := partOf(t, full)
	f.update(t, func() {
		for i := range 20_000 {
			f.m.Put("new-"+strconv.Itoa(i), i)
		}
	})
	f.s.Compact()
	d, err := f.s.BeginSnapshot(collections.SnapshotStreamOptions{Delta: true})
	if err != nil {
		t.Fatal(err)
	}
	delta := partOf(t, d)
	restore := func(hint bool) (*fixture, uint64) {
		got := newFixture(t, "a", nil)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		rs, err := got.s.BeginRestore(base.header)
		if err != nil {
			t.Fatal(err)
		}
		rs.Trusted()
		if hint {
			rs.SizeHint(delta.header.GetCollectionItems())
		}
		for _, p := range []chainPart{base, delta} {
			if p.header.GetDelta() {
				if err := rs.NextDelta(p.header); err != nil {
					t.Fatal(err)
				}
			}
			for _, c := range p.chunks {
				if err := rs.Add(c); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := rs.Finish(); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		return got, after.TotalAlloc - before.TotalAlloc
	}
	plain, plainBytes := restore(false)
	hinted, hintedBytes := restore(true)
	for _, g := range []*fixture{plain, hinted} {
		if err := sameReplica(f.s, g.s); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("restore allocated %d bytes without the hint, %d with it", plainBytes, hintedBytes)
	// Without the hint the map's cold index grows by doubling from 8
	// entries to 32,768 (20,100 items at most 3/4 full), leaving its
	// smaller tables behind: 8 bytes x (8 + 16 + ... + 16,384) = 262,080
	// bytes that a restore sized once does not allocate. 3/4 of that is
	// the bar (other allocations of the test process may land in either
	// reading).
	const growth = 8 * (32_768 - 8)
	if hintedBytes+growth*3/4 > plainBytes {
		t.Fatalf("restore with the size hint allocated %d bytes, without %d: want at least %d less (the index sized once)", hintedBytes, plainBytes, growth*3/4)
	}
}
