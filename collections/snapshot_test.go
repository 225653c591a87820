package collections_test

import (
	"errors"
	"maps"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/tempestrt/tempest/collections"
	"github.com/tempestrt/tempest/proto/tempestpb"
)

// roundTrip marshals and unmarshals a snapshot, as persistence does.
func roundTrip(t tb, snap *tempestpb.StoreSnapshot) *tempestpb.StoreSnapshot {
	t.Helper()
	b, err := proto.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	out := &tempestpb.StoreSnapshot{}
	if err := proto.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func sameState(t *testing.T, a, b *fixture) {
	t.Helper()
	if a.s.Digest() != b.s.Digest() {
		t.Fatal("digests differ")
	}
	if !maps.Equal(collect(a.m), collect(b.m)) || !slices.Equal(slices.Collect(a.l.Values()), slices.Collect(b.l.Values())) ||
		!slices.Equal(slices.Collect(a.set.All()), slices.Collect(b.set.All())) || a.c.Value() != b.c.Value() {
		t.Fatal("values differ")
	}
	if a.s.Pending() != b.s.Pending() || a.s.StablePoint() != b.s.StablePoint() || !maps.Equal(a.s.VersionVector(), b.s.VersionVector()) {
		t.Fatalf("pending %d/%d stable %v/%v vv %v/%v", a.s.Pending(), b.s.Pending(), a.s.StablePoint(), b.s.StablePoint(), a.s.VersionVector(), b.s.VersionVector())
	}
	for _, ref := range a.s.Tentative() {
		if !slices.Equal(a.s.ItemOrder(ref.Collection, ref.Item), b.s.ItemOrder(ref.Collection, ref.Item)) {
			t.Fatalf("history of %s/%s differs", ref.Collection, ref.Item)
		}
	}
}

func TestSnapshotRoundTripThenContinue(t *testing.T) {
	clk := newClock()
	a := newFixture(t, "a", clk)
	a.s.SetOrigins([]string{"a", "b"})
	a.update(t, func() {
		a.m.Put("x", 1)
		a.m.Do("n", "add", addArgs{3})
		a.l.Append("p")
		a.l.Append("q")
		a.set.Add(5)
		a.c.Incr(7)
	})
	deliverAll(t, a.s, []*tempestpb.Op{
		put("b", 1, 10, "y", "2"),                              // old: stable once b is known
		put("b", 3, uint64(clk.Now().UnixMilli())+1, "x", "9"), // gap at b#2
	})
	a.s.Heartbeat()
	if a.s.Pending() == 0 || a.s.FoldedPoint().IsZero() {
		t.Fatal("test wants both folded and tentative state")
	}

	snap := roundTrip(t, a.s.Snapshot())
	clk2 := &clock{t: clk.t}
	b := newFixture(t, "a", clk2)
	b.s.SetOrigins([]string{"a", "b"})
	if err := b.s.Restore(snap); err != nil {
		t.Fatal(err)
	}
	sameState(t, a, b)
	if b.s.OwnSeq() != a.s.OwnSeq() || b.s.Applied() != a.s.Applied() || b.s.FoldedPoint() != a.s.FoldedPoint() {
		t.Fatal("counters not restored")
	}
	if !proto.Equal(b.s.Snapshot(), a.s.Snapshot()) {
		t.Fatal("snapshot of the restored store differs")
	}

	// Continue both the same way: replayed ops are duplicates, the gap fills,
	// new updates get the next seq and later timestamps.
	for _, f := range []*fixture{a, b} {
		if ok, _ := f.s.Deliver(put("b", 1, 10, "y", "2")); ok {
			t.Fatal("op covered by the snapshot applied again")
		}
		deliverAll(t, f.s, []*tempestpb.Op{put("b", 2, 20, "z", "3")})
		ops := f.update(t, func() { f.c.Incr(1); f.l.Insert(0, "o") })
		if ops[0].GetSeq() != 7 {
			t.Fatalf("seq %d after restore", ops[0].GetSeq())
		}
	}
	sameState(t, a, b)
}

func TestRestoreStateTransferFromPeer(t *testing.T) {
	a := newFixture(t, "a", nil)
	a.s.SetOrigins([]string{"a", "b"})
	deliverAll(t, a.s, []*tempestpb.Op{put("b", 1, 10, "k", "1"), put("b", 2, 20, "k", "2")})
	a.update(t, func() { a.m.Put("j", 1) })
	// "b" lost its disk; it restores a's snapshot.
	b := newFixture(t, "b", nil)
	b.s.SetOrigins([]string{"a", "b"})
	if err := b.s.Restore(roundTrip(t, a.s.Snapshot())); err != nil {
		t.Fatal(err)
	}
	if b.s.OwnSeq() != 2 {
		t.Fatalf("own seq %d, want 2 (what a knew of b)", b.s.OwnSeq())
	}
	ops := b.update(t, func() { b.m.Put("k", 3) })
	if ops[0].GetSeq() != 3 {
		t.Fatal(ops[0].GetSeq())
	}
	if v, _ := b.m.Get("k"); v != 3 {
		t.Fatal(v)
	}
}

func TestRestoreRejects(t *testing.T) {
	src := newFixture(t, "a", nil, noAuto)
	src.s.SetOrigins([]string{"a", "b"})
	src.update(t, func() { src.m.Put("k", 1); src.c.Incr(1) })
	good := func() *tempestpb.StoreSnapshot { return roundTrip(t, src.s.Snapshot()) }

	cases := []struct {
		name   string
		mutate func(*tempestpb.StoreSnapshot)
		want   error
	}{
		{"other service", func(s *tempestpb.StoreSnapshot) { s.Service = "x" }, collections.ErrSnapshot},
		{"unknown collection", func(s *tempestpb.StoreSnapshot) { s.Items[0].Collection = "nope" }, collections.ErrUnknownCollection},
		{"pending op of another item", func(s *tempestpb.StoreSnapshot) { s.Items[0].Item = []byte("zz") }, collections.ErrSnapshot},
		{"bad pending op", func(s *tempestpb.StoreSnapshot) { s.Items[0].Pending[0].Kind = tempestpb.OpKind_OP_PUT }, collections.ErrBadOp},
		{"pending op not delivered", func(s *tempestpb.StoreSnapshot) { s.Origins[0].Contiguous = 0 }, collections.ErrSnapshot},
		{"duplicate origin", func(s *tempestpb.StoreSnapshot) { s.Origins = append(s.Origins, s.Origins[0]) }, collections.ErrSnapshot},
		{"duplicate item", func(s *tempestpb.StoreSnapshot) { s.Items = append(s.Items, s.Items[0]) }, collections.ErrSnapshot},
		{"beyond not increasing", func(s *tempestpb.StoreSnapshot) { s.Origins[0].Beyond = []uint64{9, 5} }, collections.ErrSnapshot},
		{"undecodable base", func(s *tempestpb.StoreSnapshot) {
			s.Items = append(s.Items, &tempestpb.ItemState{Collection: "m", Item: []byte("q"), Base: &tempestpb.ItemValue{Exists: true, Data: []byte("{")}})
		}, collections.ErrSnapshot},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			snap := good()
			tc.mutate(snap)
			dst := newFixture(t, "a", nil)
			before := dst.s.Digest()
			if err := dst.s.Restore(snap); !errors.Is(err, tc.want) || !errors.Is(err, collections.ErrSnapshot) {
				t.Fatalf("Restore = %v, want %v", err, tc.want)
			}
			if dst.s.Digest() != before || dst.s.Applied() != 0 || dst.s.OwnSeq() != 0 {
				t.Fatal("failed restore changed the store")
			}
			if err := dst.s.Restore(good()); err != nil { // still fresh
				t.Fatalf("valid restore after a failed one: %v", err)
			}
		})
	}
	if err := src.s.Restore(good()); !errors.Is(err, collections.ErrSnapshot) {
		t.Fatalf("restore into a used store: %v", err)
	}
	if err := newFixture(t, "a", nil).s.Restore(nil); !errors.Is(err, collections.ErrSnapshot) {
		t.Fatal(err)
	}
}
