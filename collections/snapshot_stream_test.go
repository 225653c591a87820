package collections_test

import (
	"bytes"
	"errors"
	"fmt"
	"iter"
	"maps"
	"math"
	"slices"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"pgregory.net/rapid"

	"github.com/tempestrt/tempest/collections"
	"github.com/tempestrt/tempest/proto/tempestpb"
)

// streamRig drives one replica "a" of a group {a, b, c}: its own updates
// (some failing, hence retracted), ops of b and c delivered with
// timestamps that make them go last, in the middle of an item's history
// (rollback and replay) or behind the stable point, heartbeats that make
// ops stable (folding, dropping emptied items), and the clock.
type streamRig struct {
	f    *fixture
	seq  map[string]uint64 // last seq sent per remote origin
	keys int
}

func newStreamRig(t *rapid.T) *streamRig {
	var tweaks []func(*collections.Config)
	if rapid.Bool().Draw(t, "noAuto") {
		tweaks = append(tweaks, noAuto)
	}
	// Members of the change window kept hot: none (-1), a few, or the
	// default (0: all of the rig's few keys), so that deltas read members
	// from the cold tables too.
	hot := rapid.SampledFrom([]int{-1, 1, 3, 0}).Draw(t, "hotChanged")
	tweaks = append(tweaks, func(c *collections.Config) { c.HotChanged = hot })
	f := newFixture(t, "a", nil, tweaks...)
	f.s.SetOrigins([]string{"a", "b", "c"})
	return &streamRig{f: f, seq: map[string]uint64{}, keys: rapid.IntRange(1, 60).Draw(t, "keys")}
}

func (r *streamRig) key(t *rapid.T) int { return rapid.IntRange(0, r.keys-1).Draw(t, "key") }

// preload puts n map entries and list elements in one update.
func (r *streamRig) preload(t *rapid.T, n int) {
	r.f.update(t, func() {
		for i := range n {
			r.f.m.Put("k"+strconv.Itoa(i%r.keys), i)
			if i%3 == 0 {
				r.f.set.Add(i % r.keys)
			}
			if i%5 == 0 {
				r.f.l.Append("e" + strconv.Itoa(i))
			}
		}
		r.f.c.Incr(int64(n))
	})
}

func (r *streamRig) remote(t *rapid.T) *tempestpb.Op {
	origin := rapid.SampledFrom([]string{"b", "c"}).Draw(t, "origin")
	r.seq[origin]++
	if rapid.IntRange(0, 9).Draw(t, "gap") == 0 {
		r.seq[origin]++ // a seq that never arrives: holds b's (or c's) horizon back
	}
	wall := uint64(r.f.clk.Now().UnixMilli()) + uint64(rapid.IntRange(0, 40).Draw(t, "ahead")) - 20
	k := r.key(t)
	var o *tempestpb.Op
	switch rapid.IntRange(0, 5).Draw(t, "remoteKind") {
	case 0:
		o = put(origin, r.seq[origin], wall, "k"+strconv.Itoa(k), strconv.Itoa(k))
	case 1:
		o = op(origin, r.seq[origin], wall, "m", "k"+strconv.Itoa(k), tempestpb.OpKind_OP_DELETE)
	case 2:
		o = op(origin, r.seq[origin], wall, "s", strconv.Itoa(k), tempestpb.OpKind_OP_SET_ADD)
	case 3:
		o = op(origin, r.seq[origin], wall, "s", strconv.Itoa(k), tempestpb.OpKind_OP_SET_REMOVE)
	case 4:
		o = op(origin, r.seq[origin], wall, "l", "", tempestpb.OpKind_OP_LIST_INSERT)
		o.Value, o.Index = []byte(`"r`+strconv.Itoa(k)+`"`), int64(k%4)
	default:
		o = op(origin, r.seq[origin], wall, "c", "", tempestpb.OpKind_OP_COUNTER_ADD)
		o.Delta = int64(k)
	}
	return o
}

// step makes one random change to the replica.
func (r *streamRig) step(t *rapid.T) {
	f := r.f
	switch a := rapid.IntRange(0, 99).Draw(t, "action"); {
	case a < 30:
		fail := rapid.IntRange(0, 5).Draw(t, "fail") == 0
		n := rapid.IntRange(1, 4).Draw(t, "mutations")
		_, err := f.s.Update(func() error {
			for range n {
				k := r.key(t)
				switch rapid.IntRange(0, 7).Draw(t, "mut") {
				case 0:
					f.m.Put("k"+strconv.Itoa(k), k)
				case 1:
					f.m.Delete("k" + strconv.Itoa(k))
				case 2:
					f.m.Do("k"+strconv.Itoa(k), "add", addArgs{N: k - 3})
				case 3:
					f.set.Add(k)
				case 4:
					f.set.Remove(k)
				case 5:
					f.l.Append("a" + strconv.Itoa(k))
				case 6:
					f.l.RemoveAt(k % 5)
				default:
					f.c.Incr(int64(k))
				}
			}
			if fail {
				return errHandler
			}
			return nil
		})
		if (err != nil) != fail {
			t.Fatalf("update: %v", err)
		}
	case a < 60:
		if _, err := f.s.Deliver(r.remote(t)); err != nil {
			t.Fatalf("deliver: %v", err)
		}
	case a < 72:
		origin := rapid.SampledFrom([]string{"b", "c"}).Draw(t, "hbOrigin")
		wall := uint64(f.clk.Now().UnixMilli()) + uint64(rapid.IntRange(0, 40).Draw(t, "hbAhead")) - 20
		f.s.ObserveHeartbeat(&tempestpb.Heartbeat{Origin: origin, Seq: r.seq[origin], WallMs: wall})
	case a < 80:
		f.s.Heartbeat()
	case a < 88:
		f.s.Compact()
	default:
		f.clk.Advance(time.Duration(rapid.IntRange(0, 30).Draw(t, "advance")) * time.Millisecond)
	}
}

// runStreamProperty: a snapshot stream begun at a random point, pulled in
// random small chunks while the replica keeps changing, restores (after a
// marshal round trip) to exactly the replica that Restore of Snapshot()
// taken at that point gives.
func runStreamProperty(t *rapid.T) error {
	r := newStreamRig(t)
	r.preload(t, rapid.IntRange(0, 200).Draw(t, "preload"))
	for range rapid.IntRange(0, 60).Draw(t, "before") {
		r.step(t)
	}
	want := roundTrip(t, r.f.s.Snapshot())
	// Reuse: each chunk is marshalled (roundTripMsg) before the next Next.
	st, err := r.f.s.BeginSnapshot(collections.SnapshotStreamOptions{Reuse: rapid.Bool().Draw(t, "reuse")})
	if err != nil {
		return err
	}
	header := roundTripMsg(t, st.Header())
	var chunks []*tempestpb.SnapshotChunk
	for i := 0; ; i++ {
		for range rapid.IntRange(0, 4).Draw(t, "between") {
			r.step(t)
		}
		chunk, last, err := st.Next(rapid.IntRange(1, 400).Draw(t, "maxBytes"), rapid.IntRange(1, 6).Draw(t, "maxItems"))
		if err != nil {
			return err
		}
		chunks = append(chunks, roundTripMsg(t, chunk))
		if last {
			break
		}
		if i > 100_000 {
			return errors.New("stream does not end")
		}
	}
	for range rapid.IntRange(0, 10).Draw(t, "after") {
		r.step(t) // the finished stream must not care
	}

	ref := newFixture(t, "a", nil, noAuto)
	ref.s.SetOrigins([]string{"a", "b", "c"})
	if err := ref.s.Restore(want); err != nil {
		return fmt.Errorf("restore of the snapshot: %w", err)
	}
	got := newFixture(t, "a", nil, noAuto)
	got.s.SetOrigins([]string{"a", "b", "c"})
	if err := got.s.RestoreStream(header, chunkSeq(chunks)); err != nil {
		return fmt.Errorf("restore of the stream (%d chunks): %w", len(chunks), err)
	}
	return sameReplica(ref.s, got.s)
}

// sameReplica compares two stores as a snapshot sees them (the canonical,
// sorted Snapshot covers values, histories, origins, counters and clock)
// and through their public reads.
func sameReplica(a, b *collections.Store) error {
	if sa, sb := a.Snapshot(), b.Snapshot(); !proto.Equal(sa, sb) {
		return fmt.Errorf("snapshots differ:\n%v\n%v", sa, sb)
	}
	switch {
	case a.Digest() != b.Digest():
		return errors.New("digests differ")
	case a.Applied() != b.Applied() || a.OwnSeq() != b.OwnSeq() || a.Pending() != b.Pending():
		return fmt.Errorf("applied %d/%d own seq %d/%d pending %d/%d", a.Applied(), b.Applied(), a.OwnSeq(), b.OwnSeq(), a.Pending(), b.Pending())
	case a.StablePoint() != b.StablePoint() || a.FoldedPoint() != b.FoldedPoint():
		return errors.New("stable or folded points differ")
	case !maps.Equal(a.VersionVector(), b.VersionVector()):
		return fmt.Errorf("version vectors %v / %v", a.VersionVector(), b.VersionVector())
	}
	return nil
}

func roundTripMsg[M proto.Message](t tb, m M) M {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	out := m.ProtoReflect().New().Interface().(M)
	if err := proto.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPropertySnapshotStream: see runStreamProperty. More cases:
// -rapid.checks=N.
func TestPropertySnapshotStream(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		if err := runStreamProperty(t); err != nil {
			t.Fatal(err)
		}
	})
}

// TestSnapshotStreamCatchesMutants shows that TestPropertySnapshotStream
// can fail: with a hook switched off (see mutant.go), some of a fixed set
// of seeded histories must restore a different replica, and that history
// must pass with the hook on.
func TestSnapshotStreamCatchesMutants(t *testing.T) {
	requireMutantsCaught(t, runStreamProperty, []mutant{
		{"insert unhooked", collections.MutantStreamInsertUnhooked},
		{"fold unhooked", collections.MutantStreamFoldUnhooked},
	})
}

// bigFixture is a store of n map entries, some sets elements, a list of
// n/10 elements and a counter, all stable.
func bigFixture(t tb, n int) *fixture {
	f := newFixture(t, "a", nil)
	f.update(t, func() {
		for i := range n {
			f.m.Put(strconv.Itoa(i), i)
			if i%4 == 0 {
				f.set.Add(i)
			}
			if i%10 == 0 {
				f.l.Append("element " + strconv.Itoa(i))
			}
		}
		f.c.Incr(1)
	})
	return f
}

// TestSnapshotStreamBounds: every chunk honours its item and byte budgets
// (a single oversized item aside) and every Next call visits a bounded
// number of items, whatever the store does in between; chunks are numbered
// in order and only the final one is last.
func TestSnapshotStreamBounds(t *testing.T) {
	f := bigFixture(t, 5000)
	f.s.SetOrigins([]string{"a", "b"}) // nothing folds any more: items keep tentative ops
	st, err := f.s.BeginSnapshot(collections.SnapshotStreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v := st.Stats().Visited; v != 0 {
		t.Fatalf("BeginSnapshot visited %d items", v)
	}
	budgets := []struct{ bytes, items int }{{1, 1}, {100, 3}, {2000, 50}, {64 << 10, 1000}, {300, 1000}, {0, 0}}
	var items uint64
	oversized := 0
	for i := 0; ; i++ {
		// Touch items in bulk, some not yet streamed: their pre-images queue up.
		f.update(t, func() {
			for k := range 40 {
				f.m.Put(strconv.Itoa((i*97+k*31)%7000), -i)
			}
			f.l.Append("x")
		})
		b := budgets[i%len(budgets)]
		before := st.Stats()
		chunk, last, err := st.Next(b.bytes, b.items)
		if err != nil {
			t.Fatal(err)
		}
		after := st.Stats()
		maxItems, maxBytes := b.items, b.bytes
		if maxItems == 0 {
			maxItems, maxBytes = collections.DefaultChunkItems, collections.DefaultChunkBytes
		}
		if n := len(chunk.GetItems()); n > maxItems {
			t.Fatalf("chunk %d: %d items, budget %d", i, n, maxItems)
		}
		if size := proto.Size(chunk); size > maxBytes {
			if len(chunk.GetItems()) != 1 {
				t.Fatalf("chunk %d: %d bytes in %d items, budget %d", i, size, len(chunk.GetItems()), maxBytes)
			}
			oversized++
		}
		if v := after.Visited - before.Visited; v > uint64(4*maxItems) {
			t.Fatalf("chunk %d: visited %d items, budget %d", i, v, 4*maxItems)
		}
		if chunk.GetIndex() != uint64(i) || chunk.GetLast() != last {
			t.Fatalf("chunk %d: index %d, last %v/%v", i, chunk.GetIndex(), chunk.GetLast(), last)
		}
		items += uint64(len(chunk.GetItems()))
		if last {
			if chunk.GetItemCount() != items {
				t.Fatalf("last chunk counts %d items, %d were sent", chunk.GetItemCount(), items)
			}
			if after.PreImages == 0 {
				t.Fatal("no pre-image was taken: the test does not exercise the hook")
			}
			break
		}
	}
	if oversized == 0 {
		t.Fatal("no chunk was a single oversized item: the test does not exercise that case")
	}
	if _, _, err := st.Next(0, 0); !errors.Is(err, collections.ErrSnapshot) {
		t.Fatalf("Next after the last chunk: %v", err)
	}
}

// TestBeginSnapshotCostIndependentOfItems: BeginSnapshot (and Close)
// allocate the same with 10 items as with 100 000, and visit none.
func TestBeginSnapshotCostIndependentOfItems(t *testing.T) {
	allocs := func(n int) float64 {
		f := bigFixture(t, n)
		return testing.AllocsPerRun(20, func() {
			st, err := f.s.BeginSnapshot(collections.SnapshotStreamOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if st.Stats().Visited != 0 {
				t.Fatal("BeginSnapshot visited items")
			}
			st.Close()
		})
	}
	small, big := allocs(10), allocs(100_000)
	t.Logf("BeginSnapshot+Close allocations: %v with 10 items, %v with 100 000", small, big)
	if big > small+2 {
		t.Fatalf("BeginSnapshot allocates %v with 100 000 items, %v with 10", big, small)
	}
}

func TestSnapshotStreamMisuse(t *testing.T) {
	f := bigFixture(t, 10)
	st, err := f.s.BeginSnapshot(collections.SnapshotStreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.BeginSnapshot(collections.SnapshotStreamOptions{}); !errors.Is(err, collections.ErrSnapshot) {
		t.Fatalf("second stream: %v", err)
	}
	fresh := newFixture(t, "a", nil)
	if _, err := fresh.s.BeginSnapshot(collections.SnapshotStreamOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := fresh.s.Restore(roundTrip(t, f.s.Snapshot())); !errors.Is(err, collections.ErrSnapshot) {
		t.Fatalf("Restore with a stream open: %v", err)
	}
	if err := fresh.s.RestoreStream(st.Header(), nil); !errors.Is(err, collections.ErrSnapshot) {
		t.Fatalf("RestoreStream with a stream open: %v", err)
	}
	_, _ = f.s.Update(func() error {
		if _, err := f.s.BeginSnapshot(collections.SnapshotStreamOptions{}); !errors.Is(err, collections.ErrInUpdate) {
			t.Fatalf("BeginSnapshot in Update: %v", err)
		}
		return nil
	})
	f.update(t, func() { f.m.Put("3", 33) }) // captured
	if st.Stats().PreImages != 1 {
		t.Fatalf("pre-images %d, want 1", st.Stats().PreImages)
	}
	st.Close()
	st.Close()
	if _, _, err := st.Next(0, 0); !errors.Is(err, collections.ErrSnapshot) {
		t.Fatalf("Next after Close: %v", err)
	}
	f.update(t, func() { f.m.Put("4", 44) }) // no stream: nothing captured
	if st.Stats().PreImages != 1 || st.Stats().Queued != 0 {
		t.Fatalf("closed stream still captures: %+v", st.Stats())
	}
	st2, err := f.s.BeginSnapshot(collections.SnapshotStreamOptions{})
	if err != nil {
		t.Fatalf("new stream after Close: %v", err)
	}
	st2.Close()
}

// streamOf takes a whole stream of f's store at once, round-tripped.
func streamOf(t tb, f *fixture, maxBytes, maxItems int) (*tempestpb.SnapshotHeader, []*tempestpb.SnapshotChunk) {
	t.Helper()
	st, err := f.s.BeginSnapshot(collections.SnapshotStreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var chunks []*tempestpb.SnapshotChunk
	for chunk, err := range st.All(maxBytes, maxItems) {
		if err != nil {
			t.Fatal(err)
		}
		chunks = append(chunks, roundTripMsg(t, chunk))
	}
	return roundTripMsg(t, st.Header()), chunks
}

func TestRestoreStreamRejects(t *testing.T) {
	src := newFixture(t, "a", nil, noAuto)
	src.s.SetOrigins([]string{"a", "b"})
	src.update(t, func() {
		for i := range 12 {
			src.m.Put(strconv.Itoa(i), i)
		}
		src.c.Incr(1)
	})
	good := func() (*tempestpb.SnapshotHeader, []*tempestpb.SnapshotChunk) { return streamOf(t, src, 0, 4) }
	h, cs := good()
	if len(cs) < 4 {
		t.Fatalf("%d chunks; the cases want at least 4", len(cs))
	}
	errRead := errors.New("read failed")
	cases := []struct {
		name   string
		mutate func(h *tempestpb.SnapshotHeader, cs []*tempestpb.SnapshotChunk) ([]*tempestpb.SnapshotChunk, error)
		want   error
	}{
		{"other service", func(h *tempestpb.SnapshotHeader, cs []*tempestpb.SnapshotChunk) ([]*tempestpb.SnapshotChunk, error) {
			h.Service = "x"
			return cs, nil
		}, collections.ErrSnapshot},
		{"missing chunk", func(_ *tempestpb.SnapshotHeader, cs []*tempestpb.SnapshotChunk) ([]*tempestpb.SnapshotChunk, error) {
			return slices.Delete(cs, 1, 2), nil
		}, collections.ErrSnapshot},
		{"repeated chunk", func(_ *tempestpb.SnapshotHeader, cs []*tempestpb.SnapshotChunk) ([]*tempestpb.SnapshotChunk, error) {
			return slices.Insert(cs, 1, cs[0]), nil
		}, collections.ErrSnapshot},
		{"chunks swapped", func(_ *tempestpb.SnapshotHeader, cs []*tempestpb.SnapshotChunk) ([]*tempestpb.SnapshotChunk, error) {
			cs[0], cs[1] = cs[1], cs[0]
			return cs, nil
		}, collections.ErrSnapshot},
		{"no last chunk", func(_ *tempestpb.SnapshotHeader, cs []*tempestpb.SnapshotChunk) ([]*tempestpb.SnapshotChunk, error) {
			return cs[:len(cs)-1], nil
		}, collections.ErrSnapshot},
		{"chunk after the last", func(_ *tempestpb.SnapshotHeader, cs []*tempestpb.SnapshotChunk) ([]*tempestpb.SnapshotChunk, error) {
			return append(cs, &tempestpb.SnapshotChunk{Index: uint64(len(cs))}), nil
		}, collections.ErrSnapshot},
		{"item count wrong", func(_ *tempestpb.SnapshotHeader, cs []*tempestpb.SnapshotChunk) ([]*tempestpb.SnapshotChunk, error) {
			cs[len(cs)-1].ItemCount++
			return cs, nil
		}, collections.ErrSnapshot},
		{"item in two chunks", func(_ *tempestpb.SnapshotHeader, cs []*tempestpb.SnapshotChunk) ([]*tempestpb.SnapshotChunk, error) {
			cs[1].Items = append(cs[1].Items, cs[0].Items[0])
			cs[len(cs)-1].ItemCount++
			return cs, nil
		}, collections.ErrSnapshot},
		{"unknown collection", func(_ *tempestpb.SnapshotHeader, cs []*tempestpb.SnapshotChunk) ([]*tempestpb.SnapshotChunk, error) {
			cs[2].Items[0].Collection = "nope"
			return cs, nil
		}, collections.ErrUnknownCollection},
		{"pending op not delivered", func(h *tempestpb.SnapshotHeader, cs []*tempestpb.SnapshotChunk) ([]*tempestpb.SnapshotChunk, error) {
			h.Origins[0].Contiguous = 0
			return cs, nil
		}, collections.ErrSnapshot},
		{"read error", func(_ *tempestpb.SnapshotHeader, cs []*tempestpb.SnapshotChunk) ([]*tempestpb.SnapshotChunk, error) {
			return cs[:2], errRead
		}, errRead},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, cs := good()
			cs, readErr := tc.mutate(h, cs)
			seq := func(yield func(*tempestpb.SnapshotChunk, error) bool) {
				for _, c := range cs {
					if !yield(c, nil) {
						return
					}
				}
				if readErr != nil {
					yield(nil, readErr)
				}
			}
			dst := newFixture(t, "a", nil)
			dst.s.SetOrigins([]string{"a", "b"})
			before := dst.s.Snapshot()
			err := dst.s.RestoreStream(h, seq)
			if !errors.Is(err, tc.want) || !errors.Is(err, collections.ErrSnapshot) {
				t.Fatalf("RestoreStream = %v, want %v", err, tc.want)
			}
			if !proto.Equal(before, dst.s.Snapshot()) {
				t.Fatal("failed restore changed the store")
			}
			gh, gcs := good()
			if err := dst.s.RestoreStream(gh, chunkSeq(gcs)); err != nil { // still fresh
				t.Fatalf("valid restore after a failed one: %v", err)
			}
		})
	}
	// A store no longer fresh by the time of Finish is left alone.
	dst := newFixture(t, "a", nil)
	b, err := dst.s.BeginRestore(h)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if err := b.Add(c); err != nil {
			t.Fatal(err)
		}
	}
	dst.update(t, func() { dst.m.Put("late", 1) })
	if err := b.Finish(); !errors.Is(err, collections.ErrSnapshot) {
		t.Fatalf("Finish on a store no longer fresh: %v", err)
	}
}

// TestSnapshotStreamChunksMarshalConcurrently: chunks may be marshalled on
// another goroutine while the store keeps changing (run with -race).
func TestSnapshotStreamChunksMarshalConcurrently(t *testing.T) {
	f := bigFixture(t, 3000)
	f.s.SetOrigins([]string{"a", "b"})
	want := roundTrip(t, f.s.Snapshot())
	st, err := f.s.BeginSnapshot(collections.SnapshotStreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	type encoded struct {
		b   []byte
		err error
	}
	in, out := make(chan *tempestpb.SnapshotChunk, 4), make(chan encoded, 1024)
	go func() {
		for c := range in {
			b, err := proto.Marshal(c)
			out <- encoded{b, err}
		}
		close(out)
	}()
	go func() {
		defer close(in)
		for i := 0; ; i++ {
			f.update(t, func() {
				f.m.Put(strconv.Itoa(i*7%4000), i)
				f.l.Append("y")
				f.l.Set(i%50, "z")
			})
			chunk, last, err := st.Next(4096, 64)
			if err != nil {
				t.Error(err)
				return
			}
			in <- chunk
			if last {
				return
			}
		}
	}()
	var chunks []*tempestpb.SnapshotChunk
	for e := range out {
		if e.err != nil {
			t.Fatal(e.err)
		}
		c := &tempestpb.SnapshotChunk{}
		if err := proto.Unmarshal(e.b, c); err != nil {
			t.Fatal(err)
		}
		chunks = append(chunks, c)
	}
	ref, got := newFixture(t, "a", nil), newFixture(t, "a", nil)
	for _, g := range []*fixture{ref, got} {
		g.s.SetOrigins([]string{"a", "b"})
	}
	if err := ref.s.Restore(want); err != nil {
		t.Fatal(err)
	}
	if err := got.s.RestoreStream(roundTripMsg(t, st.Header()), chunkSeq(chunks)); err != nil {
		t.Fatal(err)
	}
	if err := sameReplica(ref.s, got.s); err != nil {
		t.Fatal(err)
	}
}

// chunkSeq yields chunks without error.
func chunkSeq(cs []*tempestpb.SnapshotChunk) iter.Seq2[*tempestpb.SnapshotChunk, error] {
	return func(yield func(*tempestpb.SnapshotChunk, error) bool) {
		for _, c := range cs {
			if !yield(c, nil) {
				return
			}
		}
	}
}

// TestSnapshotStreamHugeBudgets: budgets as large as int allows take the
// whole stream in one chunk (the visit budget must not overflow).
func TestSnapshotStreamHugeBudgets(t *testing.T) {
	f := bigFixture(t, 100)
	want := len(f.s.Snapshot().GetItems())
	st, err := f.s.BeginSnapshot(collections.SnapshotStreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	chunk, last, err := st.Next(math.MaxInt, math.MaxInt)
	if err != nil || !last || len(chunk.GetItems()) != want || chunk.GetItemCount() != uint64(want) {
		t.Fatalf("one chunk of %d items, last %v, count %d, err %v; want %d items", len(chunk.GetItems()), last, chunk.GetItemCount(), err, want)
	}
	if !st.Done() {
		t.Fatal("stream not done after its last chunk")
	}
}

// TestReusedChunksRestoreTheReplica: with Reuse, a stream over cold items
// whose chunks are each marshalled before the next Next restores the
// replica; in particular a cold item left over from a full chunk (first of
// the next one) keeps its state though the pool it came from is reused.
func TestReusedChunksRestoreTheReplica(t *testing.T) {
	f := bigFixture(t, 3000)
	f.s.Tidy(1 << 20)
	if f.s.ColdItems() < 2000 {
		t.Fatalf("%d cold items: the test needs most of the map cold", f.s.ColdItems())
	}
	want := roundTrip(t, f.s.Snapshot())
	st, err := f.s.BeginSnapshot(collections.SnapshotStreamOptions{Reuse: true})
	if err != nil {
		t.Fatal(err)
	}
	header := roundTripMsg(t, st.Header())
	// Byte budgets that cut chunks after a varying number of items, and
	// item budgets that change which pool slots the leftover takes.
	budgets := []struct{ bytes, items int }{{200, 40}, {90, 3}, {1000, 40}, {60, 7}, {5000, 1}, {400, 100}}
	var chunks []*tempestpb.SnapshotChunk
	for i := 0; ; i++ {
		if i%5 == 0 {
			f.update(t, func() { f.m.Put(strconv.Itoa((i*37)%3000), -i) }) // a pre-image now and then
		}
		b := budgets[i%len(budgets)]
		chunk, last, err := st.Next(b.bytes, b.items)
		if err != nil {
			t.Fatal(err)
		}
		chunks = append(chunks, roundTripMsg(t, chunk))
		if last {
			break
		}
	}
	ref := newFixture(t, "a", nil, noAuto)
	if err := ref.s.Restore(want); err != nil {
		t.Fatal(err)
	}
	got := newFixture(t, "a", nil, noAuto)
	if err := got.s.RestoreStream(header, chunkSeq(chunks)); err != nil {
		t.Fatalf("restore of the stream (%d chunks): %v", len(chunks), err)
	}
	if err := sameReplica(ref.s, got.s); err != nil {
		t.Fatal(err)
	}
}

// TestItemwiseRestoreMatchesChunks: a stream's items added one by one
// (AddItemEncoded, as a clone's stored state is read: one key per item,
// in key order, not the stream's), then a delta's likewise, restore the
// replica that the chunks restore, trusted or not; a part is read in
// chunks or item by item, never both.
func TestItemwiseRestoreMatchesChunks(t *testing.T) {
	f := bigFixture(t, 3000)
	f.s.Tidy(1 << 20)
	header, chunks := streamOf(t, f, 2000, 50)
	f.update(t, func() {
		for i := range 40 {
			f.m.Put(strconv.Itoa(i*13), -i)
		}
		f.m.Delete("7")
	})
	d := deltaOf(t, f.s, 16)
	for _, trusted := range []bool{false, true} {
		ref := newFixture(t, "a", nil, noAuto)
		rs, err := ref.s.BeginRestore(header)
		if err != nil {
			t.Fatal(err)
		}
		got := newFixture(t, "a", nil, noAuto)
		ri, err := got.s.BeginRestore(header)
		if err != nil {
			t.Fatal(err)
		}
		if trusted {
			rs.Trusted()
			ri.Trusted()
		}
		itemwise := func(cs []*tempestpb.SnapshotChunk) {
			var raws [][]byte
			for _, c := range cs {
				if err := rs.Add(c); err != nil {
					t.Fatal(err)
				}
				for _, is := range c.GetItems() {
					b, err := proto.Marshal(is)
					if err != nil {
						t.Fatal(err)
					}
					raws = append(raws, b)
				}
			}
			slices.SortFunc(raws, bytes.Compare) // not the stream's order
			for _, b := range raws {
				if err := ri.AddItemEncoded(b); err != nil {
					t.Fatal(err)
				}
			}
			if err := ri.EndItems(); err != nil {
				t.Fatal(err)
			}
		}
		itemwise(chunks)
		if err := rs.NextDelta(d.header); err != nil {
			t.Fatal(err)
		}
		if err := ri.NextDelta(d.header); err != nil {
			t.Fatal(err)
		}
		itemwise(d.chunks)
		if err := errors.Join(rs.Finish(), ri.Finish()); err != nil {
			t.Fatal(err)
		}
		if err := sameReplica(ref.s, got.s); err != nil {
			t.Fatalf("trusted=%v: %v", trusted, err)
		}
	}

	// Misuse.
	raw, _ := proto.Marshal(chunks[0].GetItems()[0])
	fx := newFixture(t, "a", nil, noAuto)
	rs, _ := fx.s.BeginRestore(header)
	if err := rs.AddItemEncoded(raw); err != nil {
		t.Fatal(err)
	}
	if _, err := rs.AddEncoded(mustMarshal(t, chunks[0])); !errors.Is(err, collections.ErrSnapshot) {
		t.Fatalf("a chunk after an item: %v, want ErrSnapshot", err)
	}
	fx = newFixture(t, "a", nil, noAuto)
	rs, _ = fx.s.BeginRestore(header)
	if err := rs.Add(chunks[0]); err != nil {
		t.Fatal(err)
	}
	if err := rs.AddItemEncoded(raw); !errors.Is(err, collections.ErrSnapshot) {
		t.Fatalf("an item after a chunk: %v, want ErrSnapshot", err)
	}
	fx = newFixture(t, "a", nil, noAuto)
	rs, _ = fx.s.BeginRestore(header)
	if err := rs.EndItems(); err != nil {
		t.Fatal(err)
	}
	if err := rs.EndItems(); !errors.Is(err, collections.ErrSnapshot) {
		t.Fatalf("a part ended twice: %v, want ErrSnapshot", err)
	}
	if err := fx.s.Restore(f.s.Snapshot()); err != nil { // EndItems changed nothing: still fresh
		t.Fatal(err)
	}
}

func mustMarshal(t tb, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
