package collections_test

import (
	"bytes"
	"cmp"
	"errors"
	"iter"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tempestrt/tempest/collections"
	"github.com/tempestrt/tempest/proto/tempestpb"
)

// memState is a StoredState in memory, as a clone's database holds one:
// each item's encoded state under (collection, key), iterated in that
// order, and a delta applied as the database applies it (absent entries
// first).
type memState struct {
	items map[[2]string][]byte
	reads int // Item calls
	fail  error
}

func (m *memState) Item(coll string, key []byte) ([]byte, bool, error) {
	m.reads++
	if m.fail != nil {
		return nil, false, m.fail
	}
	v, ok := m.items[[2]string{coll, string(key)}]
	return v, ok, nil
}

func (m *memState) Items() iter.Seq2[collections.StoredItem, error] {
	return func(yield func(collections.StoredItem, error) bool) {
		keys := make([][2]string, 0, len(m.items))
		for k := range m.items {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(a, b [2]string) int {
			if c := cmp.Compare(a[0], b[0]); c != 0 {
				return c
			}
			return cmp.Compare(a[1], b[1])
		})
		for _, k := range keys {
			if m.fail != nil {
				yield(collections.StoredItem{}, m.fail)
				return
			}
			if !yield(collections.StoredItem{Collection: k[0], Key: []byte(k[1]), Value: m.items[k]}, nil) {
				return
			}
		}
	}
}

// apply writes a stream's items to the state: absent ones deleted first.
func (m *memState) apply(t tb, p chainPart) {
	t.Helper()
	var sets []*tempestpb.ItemState
	for _, c := range p.chunks {
		for _, is := range c.GetItems() {
			if is.GetAbsent() {
				delete(m.items, [2]string{is.GetCollection(), string(is.GetItem())})
			} else {
				sets = append(sets, is)
			}
		}
	}
	for _, is := range sets {
		m.items[[2]string{is.GetCollection(), string(is.GetItem())}] = mustMarshal(t, is)
	}
}

// eagerOf restores the state into a fresh fixture the eager way: every
// item, then Finish.
func eagerOf(t tb, hdr *tempestpb.SnapshotHeader, st *memState, clk *clock) *fixture {
	t.Helper()
	f := newFixture(t, "a", clk, noAuto)
	f.s.SetOrigins([]string{"a", "b"})
	h := proto.CloneOf(hdr)
	h.Delta, h.FollowsApplied = false, 0
	rs, err := f.s.BeginRestore(h)
	if err != nil {
		t.Fatal(err)
	}
	rs.Trusted()
	for it, err := range st.Items() {
		if err != nil {
			t.Fatal(err)
		}
		if err := rs.AddItemEncoded(it.Value); err != nil {
			t.Fatal(err)
		}
	}
	if err := errors.Join(rs.EndItems(), rs.Finish()); err != nil {
		t.Fatal(err)
	}
	return f
}

// storedFixture builds a replica "a" of n map items (and a set, a list, a
// counter), with ops of origin "b" still pending on a few items, and
// writes its state as a clone would: a full stream, changes, a delta
// applied on top. It returns the state and the delta's header.
func storedFixture(t tb, n int) (*memState, *tempestpb.SnapshotHeader, *clock) {
	t.Helper()
	clk := newClock()
	f := newFixture(t, "a", clk, noAuto)
	f.s.SetOrigins([]string{"a", "b"})
	f.update(t, func() {
		for i := range n {
			f.m.Put(strconv.Itoa(i), i)
			if i%4 == 0 {
				f.set.Add(i)
			}
		}
		f.l.Append("x")
		f.c.Incr(3)
	})
	now := uint64(clk.Now().UnixMilli())
	clk.Advance(time.Second)
	f.s.ObserveHeartbeat(&tempestpb.Heartbeat{Origin: "b", Seq: 0, WallMs: now + 500})
	f.s.Compact()
	f.s.Tidy(1 << 30)
	st := &memState{items: map[[2]string][]byte{}}
	st.apply(t, partOf(t, mustBegin(t, f.s, false)))
	f.update(t, func() {
		for i := 0; i < n; i += 7 {
			f.m.Put(strconv.Itoa(i), -i)
		}
		f.m.Delete("1")
		f.set.Remove(4)
	})
	// Pending at the capture: ops of b, not yet stable.
	for i, k := range []string{"2", "3", "new-b"} {
		_, err := f.s.Deliver(put("b", uint64(i+1), uint64(clk.Now().UnixMilli())+10, k, strconv.Itoa(100+i)))
		if err != nil {
			t.Fatal(err)
		}
	}
	d := deltaOf(t, f.s, 0)
	st.apply(t, d)
	if len(d.header.GetEager()) < 5 { // 3 of b, the list, the counter
		t.Fatalf("the delta's header names %d eager items, want >= 5: %v", len(d.header.GetEager()), d.header.GetEager())
	}
	return st, roundTripMsg(t, d.header), clk
}

func mustBegin(t tb, s *collections.Store, delta bool) *collections.SnapshotStream {
	t.Helper()
	st, err := s.BeginSnapshot(collections.SnapshotStreamOptions{Delta: delta})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestLazyRestoreMatchesEager: a store restored lazily (the header and its
// eager items, the rest faulted in on use and loaded a few at a time)
// answers every read, Len and Digest as the same state restored eagerly
// does, while both take the same updates (its own and delivered), folds,
// tidies and a delta snapshot holding the same items; once loaded it is the
// same replica, with no mismatch against the header. Reads of unloaded
// items cost one lookup each; the load's reads none.
func TestLazyRestoreMatchesEager(t *testing.T) {
	const n = 2000
	st, hdr, clk := storedFixture(t, n)
	ref := eagerOf(t, hdr, st, clk)
	lz := newFixture(t, "a", clk, noAuto)
	lz.s.SetOrigins([]string{"a", "b"})
	load, err := lz.s.BeginLazyRestore(hdr, st)
	if err != nil {
		t.Fatal(err)
	}
	if !lz.s.Loading() || lz.s.ColdItems() > 0 || load.Stats().Eager < 5 {
		t.Fatalf("after BeginLazyRestore: loading %v, %d cold items, stats %+v: want only the eager items in memory", lz.s.Loading(), lz.s.ColdItems(), load.Stats())
	}
	check := func(when string) {
		t.Helper()
		if a, b := ref.m.Len(), lz.m.Len(); a != b {
			t.Fatalf("%s: Len %d, lazy %d", when, a, b)
		}
		if a, b := ref.set.Len(), lz.set.Len(); a != b {
			t.Fatalf("%s: set Len %d, lazy %d", when, a, b)
		}
		if a, b := ref.s.Digest(), lz.s.Digest(); a != b {
			t.Fatalf("%s: digests differ", when)
		}
		if a, b := ref.s.Items(), lz.s.Items(); a != b {
			t.Fatalf("%s: Items %d, lazy %d", when, a, b)
		}
	}
	check("restored")
	rng := rand.New(rand.NewPCG(7, 8))
	key := func() string {
		if rng.IntN(10) == 0 {
			return "fresh" + strconv.Itoa(rng.IntN(50))
		}
		return strconv.Itoa(rng.IntN(n + 10))
	}
	bSeq := uint64(3)
	reads0 := st.reads
	for step := 0; step < 3000; step++ {
		switch r := rng.IntN(12); {
		case r < 4: // reads
			k := key()
			v1, ok1 := ref.m.Get(k)
			v2, ok2 := lz.m.Get(k)
			if v1 != v2 || ok1 != ok2 {
				t.Fatalf("step %d: Get(%s) = %d %v, lazy %d %v", step, k, v1, ok1, v2, ok2)
			}
			e := rng.IntN(n)
			if ref.set.Contains(e) != lz.set.Contains(e) {
				t.Fatalf("step %d: set Contains(%d) differs", step, e)
			}
		case r < 7: // an update of one store, delivered to the other
			from, to := ref, lz
			if r == 6 {
				from, to = lz, ref
			}
			k := key()
			ops := from.update(t, func() {
				switch rng.IntN(4) {
				case 0:
					from.m.Delete(k)
				case 1:
					if err := from.m.Do(k, "add", addArgs{N: 1}); err != nil {
						t.Fatal(err)
					}
				case 2:
					from.set.Add(rng.IntN(n))
				default:
					from.m.Put(k, step)
				}
			})
			deliverAll(t, to.s, ops)
		case r == 7: // a remote op, pending on both
			bSeq++
			op := put("b", bSeq, uint64(clk.Now().UnixMilli())+5, key(), strconv.Itoa(step))
			deliverAll(t, ref.s, []*tempestpb.Op{op})
			deliverAll(t, lz.s, []*tempestpb.Op{op})
		case r == 8: // b's ops become stable; fold and tidy
			clk.Advance(50 * time.Millisecond)
			hb := &tempestpb.Heartbeat{Origin: "b", Seq: bSeq, WallMs: uint64(clk.Now().UnixMilli())}
			for _, s := range []*collections.Store{ref.s, lz.s} {
				s.ObserveHeartbeat(hb)
				s.Compact()
				s.Tidy(64)
			}
		default: // the background load
			if _, err := load.Step(rng.IntN(40)); err != nil {
				t.Fatal(err)
			}
		}
		check("step " + strconv.Itoa(step))
		if step == 1500 {
			// A delta taken while loading holds what the eager one holds.
			a, b := deltaOf(t, ref.s, 0), deltaOf(t, lz.s, 0)
			if x, y := itemSet(t, a), itemSet(t, b); !slices.EqualFunc(x, y, bytes.Equal) {
				t.Fatalf("deltas while loading: %d items, lazy %d items (or different ones)", len(x), len(y))
			}
		}
	}
	stats := load.Stats()
	if stats.Faulted == 0 || stats.Loaded == 0 || stats.Faults > st.reads-reads0 {
		t.Fatalf("stats %+v (%d reads): want items faulted in and loaded", stats, st.reads-reads0)
	}
	reads := st.reads
	for done := false; !done; {
		if done, err = load.Step(100); err != nil {
			t.Fatal(err)
		}
	}
	if st.reads != reads {
		t.Fatalf("the load made %d point reads: it scans", st.reads-reads)
	}
	stats = load.Stats()
	if !stats.Done || stats.Mismatch || lz.s.Loading() {
		t.Fatalf("after the load: stats %+v, loading %v", stats, lz.s.Loading())
	}
	check("loaded")
	if err := sameReplica(ref.s, lz.s); err != nil {
		t.Fatal(err)
	}
	t.Logf("lazy restore: %+v", stats)
}

// itemSet is a stream's items, each encoded, sorted.
func itemSet(t tb, p chainPart) [][]byte {
	var out [][]byte
	for _, c := range p.chunks {
		for _, is := range c.GetItems() {
			out = append(out, mustMarshal(t, is))
		}
	}
	slices.SortFunc(out, bytes.Compare)
	return out
}

// TestLazyRestoreLoadsAllForFullScans: what needs every item (Keys, a full
// snapshot stream, Snapshot) loads the rest first; a deleted item does
// not come back from the stored state, by fault or load.
func TestLazyRestoreLoadsAllForFullScans(t *testing.T) {
	st, hdr, clk := storedFixture(t, 500)
	ref := eagerOf(t, hdr, st, clk)
	for name, scan := range map[string]func(f *fixture){
		"keys":     func(f *fixture) { _ = slices.Collect(f.m.Keys()) },
		"snapshot": func(f *fixture) { _ = f.s.Snapshot() },
		"full stream": func(f *fixture) {
			s := mustBegin(t, f.s, false)
			s.Close()
		},
	} {
		lz := newFixture(t, "a", clk, noAuto)
		lz.s.SetOrigins([]string{"a", "b"})
		load, err := lz.s.BeginLazyRestore(hdr, st)
		if err != nil {
			t.Fatal(err)
		}
		deliverAll(t, lz.s, lz.update(t, func() { lz.m.Delete("10") })) // faulted in, then gone
		if _, ok := lz.m.Get("10"); ok {
			t.Fatalf("%s: a deleted item is back", name)
		}
		scan(lz)
		if lz.s.Loading() || !load.Stats().Done {
			t.Fatalf("%s: still loading after a full scan", name)
		}
		if _, ok := lz.m.Get("10"); ok {
			t.Fatalf("%s: a deleted item is back after the load", name)
		}
		if a, b := ref.m.Len()-1, lz.m.Len(); a != b {
			t.Fatalf("%s: Len %d, want %d", name, b, a)
		}
	}
}

// TestLazyFaultReadErrorPanics: a read of the stored state that fails
// while an item is faulted in panics with a *StateReadError (answering
// "absent" would lose the item); a load step returns the error.
func TestLazyFaultReadErrorPanics(t *testing.T) {
	st, hdr, clk := storedFixture(t, 100)
	lz := newFixture(t, "a", clk, noAuto)
	lz.s.SetOrigins([]string{"a", "b"})
	load, err := lz.s.BeginLazyRestore(hdr, st)
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("disk on fire")
	st.fail = boom
	func() {
		defer func() {
			e, ok := recover().(*collections.StateReadError)
			if !ok || !errors.Is(e, boom) {
				t.Fatalf("fault with a failing read: recovered %v, want a *StateReadError wrapping the cause", e)
			}
		}()
		lz.m.Get("50")
	}()
	if _, err := load.Step(10); !errors.Is(err, boom) {
		t.Fatalf("Step with a failing read: %v", err)
	}
	hdr.Lazy = false
	if _, err := newFixture(t, "a", clk).s.BeginLazyRestore(hdr, st); !errors.Is(err, collections.ErrSnapshot) {
		t.Fatalf("a header without the lazy index: %v, want ErrSnapshot", err)
	}
}
