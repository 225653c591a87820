package persistence

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// stateItems builds items of collection coll: key -> value ("" = absent).
func stateItems(coll string, kv ...string) []StateItem {
	var out []StateItem
	for i := 0; i+1 < len(kv); i += 2 {
		it := StateItem{Collection: coll, Key: []byte(kv[i])}
		if kv[i+1] != "" {
			it.Value = []byte(kv[i+1])
		}
		out = append(out, it)
	}
	return out
}

// writeState writes a state (a delta if delta) through w: its begin, the
// items in batches of per, an append of the next record of origin "o" after
// every batch, and its end unless !end (a crash comes first). It returns
// the position its begin reported.
func writeState(t *testing.T, w *Writer, delta bool, header string, items []StateItem, per int, end bool, nextSeq *uint64) uint64 {
	t.Helper()
	var got completions
	if err := w.StateBegin([]byte(header), delta, got.cb("begin")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(items); i += per {
		if err := w.StateItems(items[i:min(i+per, len(items))], got.cb("items")); err != nil {
			t.Fatal(err)
		}
		*nextSeq++
		if err := w.Append([]Record{rec("o", *nextSeq)}, got.cb("append")); err != nil {
			t.Fatal(err)
		}
	}
	if end {
		if err := w.StateEnd(got.cb("end")); err != nil {
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

// stateOf reads the clone's stored state: its position, header and items
// ("coll/key" -> value), checking that Items yields them in key order and
// that Get finds each of them.
func stateOf(t *testing.T, c *CloneLog) (pos uint64, header string, items map[string]string) {
	t.Helper()
	st, ok, err := c.OpenState()
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		return 0, "", nil
	}
	defer st.Close()
	items = map[string]string{}
	var order [][2]string
	for it, err := range st.Items() {
		if err != nil {
			t.Fatal(err)
		}
		order = append(order, [2]string{it.Collection, string(it.Key)})
		items[it.Collection+"/"+string(it.Key)] = string(it.Value)
	}
	// Key order: collections by length, then bytes (the name is
	// length-prefixed), then item keys by bytes.
	if !slices.IsSortedFunc(order, func(a, b [2]string) int {
		if c := cmp.Compare(len(a[0]), len(b[0])); c != 0 {
			return c
		}
		if c := cmp.Compare(a[0], b[0]); c != 0 {
			return c
		}
		return cmp.Compare(a[1], b[1])
	}) {
		t.Fatalf("Items out of key order: %q", order)
	}
	for _, k := range order {
		v, ok, err := st.Get(k[0], []byte(k[1]))
		if err != nil || !ok || string(v) != items[k[0]+"/"+k[1]] {
			t.Fatalf("Get(%s, %q) = %q %v %v, Items said %q", k[0], k[1], v, ok, err, items[k[0]+"/"+k[1]])
		}
	}
	return st.Pos(), string(st.Header()), items
}

func checkState(t *testing.T, c *CloneLog, wantPos uint64, wantHeader string, want map[string]string) {
	t.Helper()
	pos, hdr, got := stateOf(t, c)
	if pos != wantPos || hdr != wantHeader || !maps.Equal(got, want) {
		t.Fatalf("state at %d %q: %v, want at %d %q: %v", pos, hdr, got, wantPos, wantHeader, want)
	}
}

// stateKeys counts the keys in the clone's state range, every epoch.
func stateKeys(t *testing.T, db *DB, c *CloneLog) int {
	t.Helper()
	lo, _ := stateBounds(c.prefix)
	return countKeys(t, db, lo)
}

// TestStateRoundTrip: a full state, then deltas (changed items, absent
// ones, an item absent and present in one delta) read back item by item
// and in key order, with the header of the last; the log replays after it
// and prunes up to it, no further; chain readers refuse it. A full state
// replaces a chain and an older epoch, physically.
func TestStateRoundTrip(t *testing.T) {
	db := openT(t, memOptions())
	c := db.Clone("cart/1")
	w := c.NewWriter(100)
	seq := uint64(2)
	mustAppend(t, c, rec("o", 1), rec("o", 2))
	chain := writeSnap(t, w, false, "chain", 2, true, &seq)
	checkChain(t, c, chain, wantPart(chain, false, "chain", 2))
	if _, ok, err := c.OpenState(); ok || err != nil {
		t.Fatalf("OpenState on a chain: %v %v, want false, nil", ok, err)
	}

	full := stateItems("carts", "u1", "a", "u2", "b", "u3", "c")
	full = append(full, stateItems("counts", "", "zero-length key", "x", "1")...)
	p1 := writeState(t, w, false, "h1", full, 2, true, &seq)
	want := map[string]string{"carts/u1": "a", "carts/u2": "b", "carts/u3": "c", "counts/": "zero-length key", "counts/x": "1"}
	checkState(t, c, p1, "h1", want)
	if n := snapKeys(t, db, c); n != 0 {
		t.Fatalf("%d chain keys left after a full state, want 0", n)
	}
	if _, _, _, err := c.SnapshotChain(); !errors.Is(err, ErrIncompatible) {
		t.Fatalf("SnapshotChain on a state: %v, want ErrIncompatible", err)
	}
	if _, _, _, err := c.LoadSnapshot(); !errors.Is(err, ErrIncompatible) {
		t.Fatalf("LoadSnapshot on a state: %v, want ErrIncompatible", err)
	}

	delta := stateItems("carts", "u1", "a2", "u2", "", "u4", "d", "u3", "")
	delta = append(delta, stateItems("carts", "u3", "c2")...) // gone and back in one delta
	delta = append(delta, stateItems("counts", "y", "", "x", "")...)
	p2 := writeState(t, w, true, "h2", delta, 1, true, &seq)
	if p2 <= p1 {
		t.Fatalf("delta at %d, not after %d", p2, p1)
	}
	want = map[string]string{"carts/u1": "a2", "carts/u3": "c2", "carts/u4": "d", "counts/": "zero-length key"}
	checkState(t, c, p2, "h2", want)
	if after := replayAll(t, c, p2); uint64(len(after)) != seq-p2 {
		t.Fatalf("%d records after the state, want %d", len(after), seq-p2)
	}
	if err := c.Prune(p2 + 1); !errors.Is(err, ErrNotCovered) {
		t.Fatalf("prune beyond the state: %v, want ErrNotCovered", err)
	}
	if err := c.Prune(p2); err != nil {
		t.Fatal(err)
	}
	checkState(t, c, p2, "h2", want)

	// The next full state replaces it: the old epoch's keys are gone.
	p3 := writeState(t, w, false, "h3", stateItems("carts", "z", "1"), 10, true, &seq)
	checkState(t, c, p3, "h3", map[string]string{"carts/z": "1"})
	if n := stateKeys(t, db, c); n != 1 {
		t.Fatalf("%d state keys after a full state of 1 item, want 1", n)
	}

	// Nothing logged since: the stored state stays, the new one's items
	// are not written.
	p4 := writeState(t, w, true, "h4", nil, 1, true, &seq) // covers the append after p3's items
	checkState(t, c, p4, "h4", map[string]string{"carts/z": "1"})
	var got completions
	if err := w.StateBegin([]byte("h5"), true, got.cb("begin")); err != nil {
		t.Fatal(err)
	}
	if err := w.StateItems(stateItems("carts", "z", "3"), got.cb("items")); err != nil {
		t.Fatal(err)
	}
	if err := w.StateEnd(got.cb("end")); err != nil {
		t.Fatal(err)
	}
	w.Wait()
	for _, g := range got.got {
		if g.err != nil || g.pos != p4 {
			t.Fatalf("%s: %d %v, want the stored state's %d", g.what, g.pos, g.err, p4)
		}
	}
	checkState(t, c, p4, "h4", map[string]string{"carts/z": "1"})

	// Drop removes it all.
	if err := c.Drop(); err != nil {
		t.Fatal(err)
	}
	if n := stateKeys(t, db, c); n != 0 {
		t.Fatalf("%d state keys after Drop", n)
	}
	if _, ok, err := c.OpenState(); ok || err != nil {
		t.Fatalf("OpenState after Drop: %v %v", ok, err)
	}
}

// TestStateDeltaNeedsState: a delta state with no stored snapshot, or on a
// chain, has nothing to build on (ErrNoSnapshot, the Writer breaks); a
// chain delta on a state likewise.
func TestStateDeltaNeedsState(t *testing.T) {
	db := openT(t, memOptions())
	c := db.Clone("c")
	mustAppend(t, c, rec("o", 1))
	w := c.NewWriter(10)
	var got completions
	if err := w.StateBegin([]byte("h"), true, got.cb("begin")); err != nil {
		t.Fatal(err)
	}
	w.Wait()
	if err := got.got[0].err; !errors.Is(err, ErrNoSnapshot) || !errors.Is(err, ErrWriterBroken) {
		t.Fatalf("delta state without a snapshot: %v", err)
	}

	seq := uint64(1)
	w = c.NewWriter(10)
	writeSnap(t, w, false, "chain", 1, true, &seq)
	got = completions{}
	if err := w.StateBegin([]byte("h"), true, got.cb("begin")); err != nil {
		t.Fatal(err)
	}
	w.Wait()
	if err := got.got[0].err; !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("delta state on a chain: %v", err)
	}

	w = c.NewWriter(10)
	writeState(t, w, false, "s", stateItems("c", "k", "v"), 1, true, &seq)
	got = completions{}
	if err := w.SnapshotDeltaBegin([]byte("d"), got.cb("begin")); err != nil {
		t.Fatal(err)
	}
	w.Wait()
	if err := got.got[0].err; !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("chain delta on a state: %v", err)
	}
	if err := (&Writer{c: c, limit: 1}).StateItems(stateItems("", "k", "v"), nil); !errors.Is(err, ErrInvalidID) {
		t.Fatalf("empty collection name: %v, want ErrInvalidID", err)
	}
}

// TestStateViewIsConsistent: an open State reads the state as it was when
// opened, while a delta and a full state are written after it.
func TestStateViewIsConsistent(t *testing.T) {
	db := openT(t, memOptions())
	c := db.Clone("c")
	w := c.NewWriter(10)
	seq := uint64(0)
	mustAppend(t, c, rec("o", 1))
	seq = 1
	p1 := writeState(t, w, false, "h1", stateItems("m", "a", "1", "b", "2"), 1, true, &seq)
	st, ok, err := c.OpenState()
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	writeState(t, w, true, "h2", stateItems("m", "a", "1b", "b", "", "c", "3"), 1, true, &seq)
	writeState(t, w, false, "h3", stateItems("m", "x", "9"), 1, true, &seq)
	if st.Pos() != p1 || string(st.Header()) != "h1" {
		t.Fatalf("view at %d %q, want %d h1", st.Pos(), st.Header(), p1)
	}
	for k, want := range map[string]string{"a": "1", "b": "2", "c": "", "x": ""} {
		v, ok, err := st.Get("m", []byte(k))
		if err != nil || ok != (want != "") || string(v) != want {
			t.Fatalf("view Get(%s) = %q %v %v, want %q", k, v, ok, err, want)
		}
	}
	n := 0
	for it, err := range st.Items() {
		if err != nil {
			t.Fatal(err)
		}
		n++
		if it.Collection != "m" || (string(it.Key) != "a" && string(it.Key) != "b") {
			t.Fatalf("view item %s/%s", it.Collection, it.Key)
		}
	}
	if n != 2 {
		t.Fatalf("view has %d items, want 2", n)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Get("m", []byte("a")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
	checkState(t, c, seq-1, "h3", map[string]string{"m/x": "9"})
}

// TestCrashMidStateKeepsThePrevious: a crash in the middle of a delta (its
// items held by the committer) or of a full state (its items written under
// a new epoch) leaves the previous state whole, and the log after it; the
// next full state removes what the crash left.
func TestCrashMidStateKeepsThePrevious(t *testing.T) {
	crash := func(t *testing.T, fs *vfs.MemFS) *DB {
		t.Helper()
		rng := rand.New(rand.NewPCG(1, 2))
		return openT(t, crashOptions(fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rng}), SyncAlways))
	}
	fs := vfs.NewCrashableMem()
	db := openT(t, crashOptions(fs, SyncAlways))
	c := db.Clone("cart/1")
	w := c.NewWriter(100)
	seq := uint64(1)
	mustAppend(t, c, rec("o", 1))
	var base []StateItem
	want := map[string]string{}
	for i := range 100 {
		k, v := fmt.Sprintf("u%03d", i), fmt.Sprintf("v%d", i)
		base = append(base, stateItems("carts", k, v)...)
		want["carts/"+k] = v
	}
	p1 := writeState(t, w, false, "base", base, 7, true, &seq)
	writeState(t, w, true, "partial-delta", stateItems("carts", "u001", "changed", "u002", ""), 1, false, &seq)
	if n := stateKeys(t, db, c); n != 100 {
		t.Fatalf("%d state keys with a delta unfinished, want 100 (nothing of it written)", n)
	}

	db = crash(t, fs)
	c = db.Clone("cart/1")
	checkState(t, c, p1, "base", want)
	if after := replayAll(t, c, p1); uint64(len(after)) != seq-p1 {
		t.Fatalf("%d records after the state, want %d", len(after), seq-p1)
	}

	w = c.NewWriter(100)
	writeState(t, w, false, "partial-full", stateItems("carts", "n1", "1", "n2", "2", "n3", "3"), 1, false, &seq)
	if n := stateKeys(t, db, c); n != 103 {
		t.Fatalf("%d state keys with a full state unfinished, want 103", n)
	}
	db = crash(t, fs)
	c = db.Clone("cart/1")
	checkState(t, c, p1, "base", want)

	// A delta applies to the stored epoch; the unfinished full one's keys
	// stay unreferenced until the next full begin removes them.
	w = c.NewWriter(100)
	p2 := writeState(t, w, true, "d", stateItems("carts", "u001", "changed", "u002", ""), 1, true, &seq)
	want["carts/u001"] = "changed"
	delete(want, "carts/u002")
	checkState(t, c, p2, "d", want)
	seq++
	mustAppend(t, c, rec("o", seq))
	p3 := writeState(t, w, false, "full", stateItems("carts", "only", "1"), 1, true, &seq)
	checkState(t, c, p3, "full", map[string]string{"carts/only": "1"})
	if n := stateKeys(t, db, c); n != 1 {
		t.Fatalf("%d state keys after a full state of 1 item, want 1 (the crashed one's removed)", n)
	}
}

// TestStateReplacedWhileWritten: a chain snapshot that becomes the clone's
// between a state's begin and end (SaveSnapshot, a full chunked one)
// deletes the stored state; the state's end then fails (ErrStaleSnapshot)
// instead of completing a delta without its base or a full state without
// its first items. And a full state ending while a chain delta is written
// fails that delta's end.
func TestStateReplacedWhileWritten(t *testing.T) {
	for _, delta := range []bool{false, true} {
		t.Run(fmt.Sprintf("delta=%v", delta), func(t *testing.T) {
			db := openT(t, memOptions())
			c := db.Clone("c")
			w := c.NewWriter(100)
			seq := uint64(1)
			mustAppend(t, c, rec("o", 1))
			writeState(t, w, false, "s", stateItems("m", "a", "1"), 1, true, &seq)
			var got completions
			if err := w.StateBegin([]byte("h"), delta, got.cb("begin")); err != nil {
				t.Fatal(err)
			}
			if err := w.StateItems(stateItems("m", "b", "2"), got.cb("items")); err != nil {
				t.Fatal(err)
			}
			w.Wait()
			if err := c.SaveSnapshot([]byte("saved"), seq); err != nil {
				t.Fatal(err)
			}
			if err := w.StateEnd(got.cb("end")); err != nil && !errors.Is(err, ErrWriterBroken) {
				t.Fatal(err)
			}
			w.Wait()
			if err := got.got[len(got.got)-1].err; !errors.Is(err, ErrStaleSnapshot) {
				t.Fatalf("end after a SaveSnapshot: %v, want ErrStaleSnapshot", err)
			}
			if _, ok, err := c.OpenState(); ok || err != nil {
				t.Fatalf("OpenState: %v %v, want no state", ok, err)
			}
			if n := stateKeys(t, db, c); n != 0 {
				t.Fatalf("%d state keys after the chain replaced it", n)
			}
			if data, pos, ok, err := c.LoadSnapshot(); err != nil || !ok || pos != seq || string(data) != "saved" {
				t.Fatalf("saved snapshot: %q %d %v %v", data, pos, ok, err)
			}
		})
	}
	t.Run("chain delta", func(t *testing.T) {
		db := openT(t, memOptions())
		c := db.Clone("c")
		seq := uint64(1)
		mustAppend(t, c, rec("o", 1))
		w := c.NewWriter(100)
		writeSnap(t, w, false, "chain", 1, true, &seq)
		var got completions
		if err := w.SnapshotDeltaBegin([]byte("d"), got.cb("begin")); err != nil {
			t.Fatal(err)
		}
		w.Wait()
		w2 := c.NewWriter(100) // another writer of the clone, as a test may
		p := writeState(t, w2, false, "s", stateItems("m", "a", "1"), 1, true, &seq)
		if err := w.SnapshotEnd(got.cb("end")); err != nil {
			t.Fatal(err)
		}
		w.Wait()
		if err := got.got[len(got.got)-1].err; !errors.Is(err, ErrStaleSnapshot) {
			t.Fatalf("chain delta end after a full state: %v, want ErrStaleSnapshot", err)
		}
		checkState(t, c, p, "s", map[string]string{"m/a": "1"})
	})
}

// TestUpgradeFormat3: a format-3 database (marker, 26-byte headers) opens
// as format 4, its chain intact; the clone can move to a state.
func TestUpgradeFormat3(t *testing.T) {
	o := memOptions()
	db, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	c := db.Clone("cart/1")
	mustAppend(t, c, rec("o", 1), rec("o", 2))
	if err := c.SaveSnapshot([]byte("s@2"), 2); err != nil {
		t.Fatal(err)
	}
	v3 := encodeHeader(header{snapPos: 2, basePos: 2, hasSnap: true})[:headerLenV3]
	for _, err := range []error{
		db.pdb.Set(headerKey(c.prefix), v3, pebble.Sync),
		db.pdb.Set(formatKey, formatValueV3, pebble.Sync),
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
	checkChain(t, c, 2, part{gen: 2, chunks: []string{"s@2"}})
	seq := uint64(2)
	p := writeState(t, c.NewWriter(10), false, "s", stateItems("m", "k", "v"), 1, true, &seq)
	checkState(t, c, p, "s", map[string]string{"m/k": "v"})
}

// stateHeader reads the clone's header from the database.
func stateHeader(t *testing.T, db *DB, c *CloneLog) header {
	t.Helper()
	h, err := db.readHeader(db.pdb, c.prefix)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// waitApplied waits until the clone's delta state is applied: the header
// says so and nothing is staged.
func waitApplied(t *testing.T, db *DB, c *CloneLog) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		h := stateHeader(t, db, c)
		if h.basePos == h.snapPos && snapKeys(t, db, c) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("delta not applied after 10 s: header %+v, %d staged keys", h, snapKeys(t, db, c))
		}
		time.Sleep(time.Millisecond)
	}
}

// bigDelta returns a delta of n items over a state of keys k000..k099:
// changes, new items, removals, and an item gone and back.
func bigDelta(n int, want map[string]string) []StateItem {
	var d []StateItem
	for i := range n {
		k := fmt.Sprintf("k%03d", i)
		switch i % 5 {
		case 0:
			d = append(d, stateItems("m", k, "")...)
			delete(want, "m/"+k)
		default:
			v := fmt.Sprintf("d%d", i)
			d = append(d, stateItems("m", k, v)...)
			want["m/"+k] = v
		}
	}
	d = append(d, stateItems("m", "k001", "", "k001", "back")...)
	want["m/k001"] = "back"
	return d
}

// hundredItems gives clone "c" of db a record and a full state of items
// k000..k099 of collection m, all "v", and returns the clone, its writer,
// the last seq of origin "o" and the state.
func hundredItems(t *testing.T, db *DB) (*CloneLog, *Writer, uint64, map[string]string) {
	t.Helper()
	c := db.Clone("c")
	w := c.NewWriter(1000)
	seq := uint64(1)
	mustAppend(t, c, rec("o", 1))
	var base []StateItem
	want := map[string]string{}
	for i := range 100 {
		k := fmt.Sprintf("k%03d", i)
		base = append(base, stateItems("m", k, "v")...)
		want["m/"+k] = "v"
	}
	writeState(t, w, false, "full", base, 50, true, &seq)
	waitApplied(t, db, c)
	return c, w, seq, want
}

// TestStateDeltaIsAppliedInSteps: an ended delta state is applied to the
// stored epoch a few items per group commit, in the groups that follow
// (idle ones too); a reader at any point in between reads the whole new
// state (the staged delta overlaid), and at the end nothing is staged.
func TestStateDeltaIsAppliedInSteps(t *testing.T) {
	o := memOptions()
	o.StateApplyPerGroup = 3
	db := openT(t, o)
	c, w, seq, want := hundredItems(t, db)
	p := writeState(t, w, true, "delta", bigDelta(300, want), 64, true, &seq)
	partial := false
	for i := 0; ; i++ {
		h := stateHeader(t, db, c)
		checkState(t, c, p, "delta", want) // mid-apply or not, the same state
		if h.basePos < h.snapPos {
			partial = true
		} else if snapKeys(t, db, c) == 0 {
			break
		}
		if i > 10000 {
			t.Fatalf("not applied: header %+v", h)
		}
	}
	if !partial {
		t.Log("the apply finished before the first read (the test read no partial state)")
	}
	waitApplied(t, db, c)
	checkState(t, c, p, "delta", want)
	if n := stateKeys(t, db, c); n != len(want) {
		t.Fatalf("%d state keys, want %d", n, len(want))
	}
}

// TestCrashMidStateApply: a crash after a delta state's end, its items
// staged and not all applied, loses nothing: the reopened state is the
// whole new state, and the first write of the clone resumes the apply.
func TestCrashMidStateApply(t *testing.T) {
	fs := vfs.NewCrashableMem()
	o := crashOptions(fs, SyncAlways)
	o.StateApplyPerGroup = 1
	db := openT(t, o)
	_, w, seq, want := hundredItems(t, db)
	// The crash image is taken as the delta's end is reported, one item
	// a group applied at most since: staged and hardly applied.
	d := bigDelta(400, want)
	var got completions
	if err := w.StateBegin([]byte("delta"), true, got.cb("begin")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(d); i += 64 {
		if err := w.StateItems(d[i:min(i+64, len(d))], got.cb("items")); err != nil {
			t.Fatal(err)
		}
	}
	image := make(chan *vfs.MemFS, 1)
	if err := w.StateEnd(func(pos uint64, err error) {
		got.cb("end")(pos, err)
		image <- fs.CrashClone(vfs.CrashCloneCfg{})
	}); err != nil {
		t.Fatal(err)
	}
	w.Wait()
	p := got.got[0].pos
	crashed := <-image

	db2 := openT(t, crashOptions(crashed, SyncAlways))
	c2 := db2.Clone("c")
	if h := stateHeader(t, db2, c2); h.snapPos != p || h.basePos >= h.snapPos {
		t.Fatalf("after the crash: header %+v, want the delta's state at %d, staged and not applied", h, p)
	}
	checkState(t, c2, p, "delta", want)
	seq++
	mustAppend(t, c2, rec("o", seq)) // the clone's first write: the apply resumes
	waitApplied(t, db2, c2)
	checkState(t, c2, p, "delta", want)
	if n := stateKeys(t, db2, c2); n != len(want) {
		t.Fatalf("%d state keys, want %d", n, len(want))
	}
}

// TestDeltaBegunWhileApplying: a delta begun while the previous one is
// still being applied (part of it applied) finishes that apply first, in
// its begin's group, and builds on the whole state.
func TestDeltaBegunWhileApplying(t *testing.T) {
	o := memOptions()
	o.StateApplyPerGroup = 1
	db := openT(t, o)
	c := db.Clone("c")
	w := c.NewWriter(1000)
	seq := uint64(1)
	mustAppend(t, c, rec("o", 1))
	want := map[string]string{}
	writeState(t, w, false, "full", stateItems("m", "x", "1"), 50, true, &seq)
	// The committer stops before its first group after some (not all) of
	// the first delta is applied, one item a group; the second delta
	// comes then.
	parked, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hook := func() {
		if a := db.cache["c"].apply; a != nil && a.done > 0 {
			once.Do(func() { close(parked); <-release })
		}
	}
	db.testHookCommit.Store(&hook)
	writeState(t, w, true, "d1", bigDelta(300, want), 64, true, &seq)
	<-parked
	var p uint64
	done := make(chan struct{})
	go func() {
		defer close(done)
		p = writeState(t, w, true, "d2", stateItems("m", "k002", "two", "k003", ""), 64, true, &seq)
	}()
	waitQueued(db, 1)
	close(release)
	<-done
	want["m/k002"] = "two"
	delete(want, "m/k003")
	want["m/x"] = "1"
	checkState(t, c, p, "d2", want)
	waitApplied(t, db, c)
	checkState(t, c, p, "d2", want)
}
