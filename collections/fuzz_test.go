package collections_test

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tempestrt/tempest/collections"
	"github.com/tempestrt/tempest/proto/tempestpb"
)

func seedOps() []*tempestpb.Op {
	user := op("b", 2, 200, "m", "k", tempestpb.OpKind_OP_USER)
	user.UserOp, user.Value = "add", []byte(`{"n":3}`)
	boom := op("c", 1, 150, "m", "k", tempestpb.OpKind_OP_USER)
	boom.UserOp, boom.Value = "boom", []byte(`{"boom":true}`)
	app := op("b", 3, 120, "l", "", tempestpb.OpKind_OP_LIST_APPEND)
	app.Value = []byte(`"x"`)
	ins := op("c", 2, 110, "l", "", tempestpb.OpKind_OP_LIST_INSERT)
	ins.Value, ins.Index = []byte(`"y"`), -3
	rm := op("b", 4, 130, "l", "", tempestpb.OpKind_OP_LIST_REMOVE_AT)
	rm.Index = 1 << 40
	cnt := op("a", 1, 100, "c", "", tempestpb.OpKind_OP_COUNTER_ADD)
	cnt.Delta = -1 << 63
	return []*tempestpb.Op{
		put("b", 1, 100, "k", "1"), user, boom, app, ins, rm, cnt,
		op("b", 5, 90, "s", "7", tempestpb.OpKind_OP_SET_ADD),
		op("c", 9, 1<<60, "m", "k", tempestpb.OpKind_OP_DELETE),
	}
}

// FuzzDeliver: arbitrary bytes decoded as an Op and as an OpBatch are
// delivered; nothing may panic, and the resulting state must survive a
// snapshot/restore round trip unchanged.
func FuzzDeliver(f *testing.F) {
	ops := seedOps()
	for _, o := range ops {
		b, _ := proto.Marshal(o)
		f.Add(b)
	}
	b, _ := proto.Marshal(&tempestpb.OpBatch{Ops: ops})
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		fx := newFixture(t, "a", nil, noAuto)
		fx.s.SetOrigins([]string{"a", "b", "c"})
		if o := (&tempestpb.Op{}); proto.Unmarshal(data, o) == nil {
			_, _ = fx.s.Deliver(o)
		}
		if batch := (&tempestpb.OpBatch{}); proto.Unmarshal(data, batch) == nil {
			for _, o := range batch.GetOps() {
				_, _ = fx.s.Deliver(o)
				_, _ = fx.s.Deliver(o)
			}
		}
		fx.s.ObserveHeartbeat(&tempestpb.Heartbeat{Origin: "b", Seq: 3, WallMs: 125})
		fx.s.ObserveHeartbeat(&tempestpb.Heartbeat{Origin: "c", Seq: 2, WallMs: 125})
		fx.s.Heartbeat()
		fx.s.Compact()
		snap := roundTrip(t, fx.s.Snapshot())
		again := newFixture(t, "a", fx.clk, noAuto)
		if err := again.s.Restore(snap); err != nil {
			t.Fatalf("snapshot of a live store does not restore: %v", err)
		}
		if again.s.Digest() != fx.s.Digest() || again.s.Pending() != fx.s.Pending() {
			t.Fatal("restore changed the state")
		}
		fx.update(t, func() { fx.m.Put("k", 1); fx.l.Insert(1, "z"); fx.c.Incr(1) })
		_ = fx.s.Digest()
	})
}

// FuzzRestore: arbitrary bytes decoded as a StoreSnapshot are restored;
// nothing may panic, and a snapshot that restores must round-trip exactly
// and leave a usable store.
func FuzzRestore(f *testing.F) {
	src := newFixture(f, "a", nil, noAuto)
	src.s.SetOrigins([]string{"a", "b", "c"})
	for _, o := range seedOps() {
		_, _ = src.s.Deliver(o)
	}
	src.update(f, func() { src.m.Put("j", 2); src.set.Add(3) })
	src.s.ObserveHeartbeat(&tempestpb.Heartbeat{Origin: "b", Seq: 5, WallMs: 115})
	src.s.ObserveHeartbeat(&tempestpb.Heartbeat{Origin: "c", Seq: 9, WallMs: 115})
	src.s.Compact()
	b, _ := proto.Marshal(src.s.Snapshot())
	f.Add(b)
	b, _ = proto.Marshal(&tempestpb.StoreSnapshot{Service: "svc", Replica: "x", Origins: []*tempestpb.OriginState{{Origin: "a", Contiguous: 3, Beyond: []uint64{5, 9}}}})
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		snap := &tempestpb.StoreSnapshot{}
		if proto.Unmarshal(data, snap) != nil {
			return
		}
		fx := newFixture(t, "a", nil, noAuto)
		fx.s.SetOrigins([]string{"a", "b"})
		if err := fx.s.Restore(snap); err != nil {
			return
		}
		first := roundTrip(t, fx.s.Snapshot())
		again := newFixture(t, "a", fx.clk, noAuto)
		again.s.SetOrigins([]string{"a", "b"})
		if err := again.s.Restore(first); err != nil {
			t.Fatalf("own snapshot does not restore: %v", err)
		}
		if !proto.Equal(first, again.s.Snapshot()) || again.s.Digest() != fx.s.Digest() {
			t.Fatal("snapshot does not round-trip")
		}
		fx.s.Heartbeat()
		fx.s.Compact()
		_, _ = fx.s.Deliver(put("b", 1, 1, "k", "1"))
		fx.update(t, func() { fx.m.Put("k", 2); fx.l.RemoveAt(0); fx.set.Remove(3); fx.c.Incr(2) })
		_ = fx.s.Digest()
		for range fx.m.All() {
		}
		for range fx.l.All() {
		}
	})
}

// FuzzRestoreStream: arbitrary bytes decoded as a SnapshotHeader and up to
// three SnapshotChunks (a part that does not decode is left out) are
// restored with RestoreStream; nothing may panic, a failed restore leaves
// the store fresh, and a stream that restores must give a replica whose
// own stream restores to the same state.
func FuzzRestoreStream(f *testing.F) {
	src := newFixture(f, "a", nil, noAuto)
	src.s.SetOrigins([]string{"a", "b", "c"})
	for _, o := range seedOps() {
		_, _ = src.s.Deliver(o)
	}
	src.update(f, func() { src.m.Put("j", 2); src.set.Add(3); src.set.Add(4) })
	src.s.ObserveHeartbeat(&tempestpb.Heartbeat{Origin: "b", Seq: 5, WallMs: 115})
	src.s.ObserveHeartbeat(&tempestpb.Heartbeat{Origin: "c", Seq: 9, WallMs: 115})
	src.s.Compact()
	h, cs := streamOf(f, src, 0, 3)
	for len(cs) < 3 {
		cs = append(cs, nil)
	}
	enc := func(m proto.Message) []byte {
		if m == nil {
			return nil
		}
		b, _ := proto.Marshal(m)
		return b
	}
	f.Add(enc(h), enc(cs[0]), enc(cs[1]), enc(cs[2]))
	f.Add(enc(h), enc(&tempestpb.SnapshotChunk{Last: true}), []byte{}, []byte{})
	f.Add([]byte{}, []byte{}, []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, hdr, c0, c1, c2 []byte) {
		header := &tempestpb.SnapshotHeader{}
		if proto.Unmarshal(hdr, header) != nil {
			return
		}
		var chunks []*tempestpb.SnapshotChunk
		for _, b := range [][]byte{c0, c1, c2} {
			if c := (&tempestpb.SnapshotChunk{}); proto.Unmarshal(b, c) == nil {
				chunks = append(chunks, c)
			}
		}
		fx := newFixture(t, "a", nil, noAuto)
		fx.s.SetOrigins([]string{"a", "b"})
		fresh := fx.s.Snapshot()
		if err := fx.s.RestoreStream(header, chunkSeq(chunks)); err != nil {
			if !errors.Is(err, collections.ErrSnapshot) {
				t.Fatalf("error does not wrap ErrSnapshot: %v", err)
			}
			if !proto.Equal(fresh, fx.s.Snapshot()) {
				t.Fatal("failed restore changed the store")
			}
			return
		}
		h2, cs2 := streamOf(t, fx, 200, 2)
		again := newFixture(t, "a", fx.clk, noAuto)
		again.s.SetOrigins([]string{"a", "b"})
		if err := again.s.RestoreStream(h2, chunkSeq(cs2)); err != nil {
			t.Fatalf("own stream does not restore: %v", err)
		}
		if err := sameReplica(fx.s, again.s); err != nil {
			t.Fatal(err)
		}
		_, _ = fx.s.Deliver(put("b", 1, 1, "k", "1"))
		fx.update(t, func() { fx.m.Put("k", 2); fx.l.RemoveAt(0); fx.set.Remove(3); fx.c.Incr(2) })
		_ = fx.s.Digest()
	})
}

// FuzzRestoreDeltaChain: a valid full snapshot, then arbitrary bytes
// decoded as a delta's header and up to two of its chunks, restored with
// BeginRestore, NextDelta, Add and Finish, trusted or not: nothing may
// panic, a failed restore leaves the store fresh, and a chain that
// restores gives a replica whose own full stream restores to the same
// state.
func FuzzRestoreDeltaChain(f *testing.F) {
	src := newFixture(f, "a", nil, noAuto)
	src.s.SetOrigins([]string{"a", "b"})
	src.update(f, func() { src.m.Put("j", 2); src.m.Put("k", 3); src.set.Add(3); src.l.Append("x") })
	bh, bcs := streamOf(f, src, 0, 0) // full: the first stream of the store
	src.update(f, func() { src.m.Put("j", 5); src.m.Delete("k"); src.set.Add(4) })
	src.s.Compact()
	d := deltaOf(f, src.s, 2)
	dh, dcs := d.header, d.chunks
	for len(dcs) < 2 {
		dcs = append(dcs, nil)
	}
	enc := func(m proto.Message) []byte {
		if m == nil {
			return nil
		}
		b, _ := proto.Marshal(m)
		return b
	}
	f.Add(enc(dh), enc(dcs[0]), enc(dcs[1]), false)
	f.Add(enc(dh), enc(dcs[0]), enc(dcs[1]), true)
	f.Add(enc(dh), enc(&tempestpb.SnapshotChunk{Last: true}), []byte{}, true)
	f.Add([]byte{}, []byte{}, []byte{}, false)
	f.Fuzz(func(t *testing.T, hdr, c0, c1 []byte, trusted bool) {
		header := &tempestpb.SnapshotHeader{}
		if proto.Unmarshal(hdr, header) != nil {
			return
		}
		var chunks []*tempestpb.SnapshotChunk
		for _, b := range [][]byte{c0, c1} {
			if c := (&tempestpb.SnapshotChunk{}); proto.Unmarshal(b, c) == nil {
				chunks = append(chunks, c)
			}
		}
		fx := newFixture(t, "a", nil, noAuto)
		fx.s.SetOrigins([]string{"a", "b"})
		fresh := fx.s.Snapshot()
		err := func() error {
			rs, err := fx.s.BeginRestore(bh)
			if err != nil {
				t.Fatalf("the full snapshot does not restore: %v", err)
			}
			if trusted {
				rs.Trusted()
			}
			for _, c := range bcs {
				if err := rs.Add(c); err != nil {
					t.Fatalf("the full snapshot does not restore: %v", err)
				}
			}
			if err := rs.NextDelta(header); err != nil {
				return err
			}
			for _, c := range chunks {
				if err := rs.Add(c); err != nil {
					return err
				}
			}
			return rs.Finish()
		}()
		if err != nil {
			if !errors.Is(err, collections.ErrSnapshot) {
				t.Fatalf("error does not wrap ErrSnapshot: %v", err)
			}
			if !proto.Equal(fresh, fx.s.Snapshot()) {
				t.Fatal("failed restore changed the store")
			}
			return
		}
		// A trusted restore does not decode values, so a bad one gets in
		// and is carried on: restore the own stream trusted too.
		h2, cs2 := streamOf(t, fx, 200, 2)
		again := newFixture(t, "a", fx.clk, noAuto)
		again.s.SetOrigins([]string{"a", "b"})
		rs, err := again.s.BeginRestore(h2)
		if err != nil {
			t.Fatalf("own stream does not restore: %v", err)
		}
		if trusted {
			rs.Trusted()
		}
		for _, c := range cs2 {
			if err := rs.Add(c); err != nil {
				t.Fatalf("own stream does not restore: %v", err)
			}
		}
		if err := rs.Finish(); err != nil {
			t.Fatalf("own stream does not restore: %v", err)
		}
		if err := sameReplica(fx.s, again.s); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzAddEncoded: arbitrary bytes as two chunks of a full snapshot (or of
// a delta on top of a valid one), restored twice, trusted or not: once
// decoded with proto.Unmarshal and added with Add, once added in their
// wire form with AddEncoded (whose trusted fast path decodes quiet items
// itself). Both must accept or both refuse, count the same items, and
// restore the same replica: the fast path reads nothing differently from
// the message it stands in for.
func FuzzAddEncoded(f *testing.F) {
	src := newFixture(f, "a", nil, noAuto)
	src.s.SetOrigins([]string{"a", "b"})
	_, _ = src.s.Deliver(put("b", 1, 100, "i", "1"))
	src.update(f, func() { src.m.Put("j", 2); src.m.Put("k", 3); src.set.Add(3); src.l.Append("x"); src.c.Incr(4) })
	// Stable, then folded: quiet items, which a trusted AddEncoded decodes
	// itself; then one op of b left pending (decoded as a message).
	now := func() uint64 { return uint64(src.clk.Now().UnixMilli()) }
	src.clk.Advance(time.Second)
	src.s.ObserveHeartbeat(&tempestpb.Heartbeat{Origin: "b", Seq: 1, WallMs: now()})
	src.s.Compact()
	_, _ = src.s.Deliver(put("b", 2, now()+10, "p", "7"))
	bh, bcs := streamOf(f, src, 0, 4) // full: the first stream of the store
	src.update(f, func() { src.m.Put("j", 5); src.m.Delete("k"); src.set.Add(4); src.set.Remove(3) })
	src.clk.Advance(time.Second)
	src.s.ObserveHeartbeat(&tempestpb.Heartbeat{Origin: "b", Seq: 2, WallMs: now()})
	src.s.Compact()
	d := deltaOf(f, src.s, 3)
	dh, dcs := d.header, d.chunks
	var quiet, pending int
	for _, c := range bcs {
		for _, is := range c.GetItems() {
			if len(is.GetPending()) > 0 {
				pending++
			} else if is.GetCollection() == "m" {
				quiet++
			}
		}
	}
	if len(bcs) != 2 || len(dcs) != 2 || quiet < 2 || pending < 1 {
		f.Fatalf("the seeds: a full snapshot of %d chunks (%d quiet map items, %d with pending ops) and a delta of %d chunks: want 2 chunks each, and both kinds of item",
			len(bcs), quiet, pending, len(dcs))
	}
	enc := func(cs []*tempestpb.SnapshotChunk, i int) []byte {
		if i >= len(cs) {
			return nil
		}
		b, _ := proto.Marshal(cs[i])
		return b
	}
	for _, trusted := range []bool{false, true} {
		f.Add(enc(bcs, 0), enc(bcs, 1), false, trusted)
		f.Add(enc(dcs, 0), enc(dcs, 1), true, trusted)
	}
	f.Add(enc([]*tempestpb.SnapshotChunk{{Last: true}}, 0), []byte{}, true, true)
	f.Add([]byte{0x12, 0x03, 0x0a, 0x01, 0x6d}, []byte{}, false, true)
	f.Fuzz(func(t *testing.T, c0, c1 []byte, delta, trusted bool) {
		restore := func(encoded bool) (*fixture, int, error) {
			fx := newFixture(t, "a", nil, noAuto)
			fx.s.SetOrigins([]string{"a", "b"})
			rs, err := fx.s.BeginRestore(bh)
			if err != nil {
				t.Fatalf("the full snapshot does not restore: %v", err)
			}
			if trusted {
				rs.Trusted()
			}
			if delta {
				for _, c := range bcs {
					if err := rs.Add(c); err != nil {
						t.Fatalf("the full snapshot does not restore: %v", err)
					}
				}
				if err := rs.NextDelta(dh); err != nil {
					t.Fatalf("the delta's header does not follow: %v", err)
				}
			}
			items := 0
			for _, b := range [][]byte{c0, c1} {
				if encoded {
					n, err := rs.AddEncoded(b)
					if err != nil {
						return fx, items, err
					}
					items += n
					continue
				}
				c := &tempestpb.SnapshotChunk{}
				if err := proto.Unmarshal(b, c); err != nil {
					return fx, items, err
				}
				if err := rs.Add(c); err != nil {
					return fx, items, err
				}
				items += len(c.GetItems())
			}
			return fx, items, rs.Finish()
		}
		ref, refItems, refErr := restore(false)
		got, gotItems, gotErr := restore(true)
		switch {
		case (refErr == nil) != (gotErr == nil):
			t.Fatalf("Add: %v; AddEncoded: %v", refErr, gotErr)
		case gotErr != nil:
			if !errors.Is(gotErr, collections.ErrSnapshot) {
				t.Fatalf("error does not wrap ErrSnapshot: %v", gotErr)
			}
			return
		case refItems != gotItems:
			t.Fatalf("Add counted %d items, AddEncoded %d", refItems, gotItems)
		}
		if err := sameReplica(ref.s, got.s); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzAddItemEncoded: one item state's bytes, added item by item
// (AddItemEncoded, how a stored state is read), are accepted and refused
// exactly as a chunk holding the decoded item is by Add, and restore the
// same replica, trusted or not.
func FuzzAddItemEncoded(f *testing.F) {
	src := newFixture(f, "a", nil, noAuto)
	src.s.SetOrigins([]string{"a", "b"})
	src.update(f, func() { src.m.Put("j", 2); src.set.Add(3); src.l.Append("x"); src.c.Incr(4) })
	now := uint64(src.clk.Now().UnixMilli())
	src.clk.Advance(time.Second)
	src.s.ObserveHeartbeat(&tempestpb.Heartbeat{Origin: "b", Seq: 0, WallMs: now + 1000})
	src.s.Compact()
	_, _ = src.s.Deliver(put("b", 1, now+2000, "p", "7"))
	header, chunks := streamOf(f, src, 0, 0)
	for _, c := range chunks {
		for _, is := range c.GetItems() {
			b, _ := proto.Marshal(is)
			f.Add(b, false)
			f.Add(b, true)
		}
	}
	f.Add([]byte{0x0a, 0x01, 0x6d, 0x12, 0x00}, true)
	f.Fuzz(func(t *testing.T, raw []byte, trusted bool) {
		restore := func(itemwise bool) (*fixture, error) {
			fx := newFixture(t, "a", nil, noAuto)
			fx.s.SetOrigins([]string{"a", "b"})
			rs, err := fx.s.BeginRestore(header)
			if err != nil {
				t.Fatalf("the header does not restore: %v", err)
			}
			if trusted {
				rs.Trusted()
			}
			if itemwise {
				if err := errors.Join(rs.AddItemEncoded(raw), rs.EndItems()); err != nil {
					return fx, err
				}
				return fx, rs.Finish()
			}
			is := &tempestpb.ItemState{}
			if err := proto.Unmarshal(raw, is); err != nil {
				return fx, err
			}
			if err := rs.Add(&tempestpb.SnapshotChunk{Items: []*tempestpb.ItemState{is}, Last: true, ItemCount: 1}); err != nil {
				return fx, err
			}
			return fx, rs.Finish()
		}
		ref, refErr := restore(false)
		got, gotErr := restore(true)
		switch {
		case (refErr == nil) != (gotErr == nil):
			t.Fatalf("Add: %v; AddItemEncoded: %v", refErr, gotErr)
		case gotErr != nil:
			if !errors.Is(gotErr, collections.ErrSnapshot) {
				t.Fatalf("error does not wrap ErrSnapshot: %v", gotErr)
			}
			return
		}
		if err := sameReplica(ref.s, got.s); err != nil {
			t.Fatal(err)
		}
	})
}
