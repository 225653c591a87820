package collections_test

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/tempestrt/tempest/collections"
	"github.com/tempestrt/tempest/proto/tempestpb"
)

func TestConfigValidate(t *testing.T) {
	for _, cfg := range []collections.Config{
		{Replica: "a"},
		{Service: "svc"},
		{Service: "svc", Replica: "a", MaxPending: -1},
	} {
		if _, err := collections.NewStore(cfg); !errors.Is(err, collections.ErrConfig) {
			t.Errorf("%+v: err %v", cfg, err)
		}
	}
	if err := collections.DefaultConfig("svc", "a").Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestDeclarationErrors(t *testing.T) {
	f := newFixture(t, "a/1", nil)
	mustPanicWith(t, collections.ErrDuplicateCollection, func() { collections.NewCounter(f.s, "m") })
	defer func() {
		if recover() == nil {
			t.Fatal("empty name accepted")
		}
	}()
	collections.NewSet[string](f.s, "")
}

func TestMutationOutsideUpdatePanics(t *testing.T) {
	f := newFixture(t, "a/1", nil)
	for name, fn := range map[string]func(){
		"Put":      func() { f.m.Put("x", 1) },
		"Delete":   func() { f.m.Delete("x") },
		"Do":       func() { f.m.Do("x", "add", addArgs{1}) },
		"Append":   func() { f.l.Append("x") },
		"Insert":   func() { f.l.Insert(0, "x") },
		"RemoveAt": func() { f.l.RemoveAt(0) },
		"Set":      func() { f.l.Set(0, "x") },
		"Add":      func() { f.set.Add(1) },
		"Remove":   func() { f.set.Remove(1) },
		"Incr":     func() { f.c.Incr(1) },
	} {
		t.Run(name, func(t *testing.T) { mustPanicWith(t, collections.ErrReadOnly, fn) })
	}
	if f.s.Applied() != 0 || f.s.OwnSeq() != 0 {
		t.Fatal("read-only panics left ops")
	}
}

func TestMutationInsideUserOpPanics(t *testing.T) {
	f := newFixture(t, "a/1", nil)
	collections.RegisterOp(f.m, "sneaky", func(cur int, _ bool, _ struct{}) (int, bool) {
		f.c.Incr(1) // not allowed: user ops must be pure
		return cur, true
	})
	defer func() {
		r := recover()
		err, _ := r.(error)
		if !errors.Is(err, collections.ErrReadOnly) {
			t.Fatalf("panic %v, want ErrReadOnly inside", r)
		}
		if f.c.Value() != 0 || f.s.Pending() != 0 || f.s.OwnSeq() != 0 {
			t.Fatal("state changed")
		}
	}()
	_, _ = f.s.Update(func() error { f.m.Do("k", "sneaky", struct{}{}); return nil })
}

func TestUpdateErrorRetracts(t *testing.T) {
	f := newFixture(t, "a/1", nil, noAuto)
	f.s.SetOrigins([]string{"a/1", "b/1"}) // keep everything tentative
	f.update(t, func() {
		f.m.Put("x", 1)
		f.l.Append("one")
	})
	digest, seq, applied, pending := f.s.Digest(), f.s.OwnSeq(), f.s.Applied(), f.s.Pending()
	vv := f.s.VersionVector()
	wantErr := errors.New("handler says no")
	ops, err := f.s.Update(func() error {
		f.m.Put("x", 2)
		f.m.Put("new", 1)
		f.l.Append("two")
		f.l.RemoveAt(0)
		f.set.Add(1)
		f.c.Incr(5)
		f.m.Do("x", "add", addArgs{10})
		if v, _ := f.m.Get("x"); v != 12 {
			t.Errorf("inside: x = %d", v)
		}
		return wantErr
	})
	if err != wantErr || ops != nil {
		t.Fatalf("Update = %v, %v", ops, err)
	}
	if f.s.Digest() != digest || f.s.OwnSeq() != seq || f.s.Applied() != applied || f.s.Pending() != pending || !maps.Equal(f.s.VersionVector(), vv) {
		t.Fatal("failed update left a trace")
	}
	if v, _ := f.m.Get("x"); v != 1 || f.m.Contains("new") || f.set.Len() != 0 || f.c.Value() != 0 || f.l.Len() != 1 {
		t.Fatal("values not rolled back")
	}
	if f.s.Stats().Retracted != 7 {
		t.Fatalf("retracted %d", f.s.Stats().Retracted)
	}
	// The next update reuses the rewound seqs.
	ops = f.update(t, func() { f.c.Incr(1) })
	if ops[0].GetSeq() != seq+1 {
		t.Fatalf("seq %d after retraction, want %d", ops[0].GetSeq(), seq+1)
	}
}

func TestUpdatePanicRetractsAndRepanics(t *testing.T) {
	f := newFixture(t, "a/1", nil)
	digest := f.s.Digest()
	func() {
		defer func() {
			if r := recover(); r != "handler bug" {
				t.Fatalf("recovered %v", r)
			}
		}()
		_, _ = f.s.Update(func() error {
			f.m.Put("x", 1)
			f.c.Incr(3)
			panic("handler bug")
		})
	}()
	if f.s.Digest() != digest || f.s.OwnSeq() != 0 || f.s.Applied() != 0 || f.m.Contains("x") {
		t.Fatal("panicking update left a trace")
	}
	// The store is usable afterwards.
	f.update(t, func() { f.m.Put("y", 1) })
	if f.s.OwnSeq() != 1 {
		t.Fatal("seq not rewound")
	}
}

func TestUpdateRetractsOpsInsertedMidHistory(t *testing.T) {
	// A remote clock far ahead (beyond MaxDrift) puts remote ops after the
	// local op's timestamp: the local op lands mid-history and retraction
	// must replay.
	f := newFixture(t, "a", nil, noAuto)
	far := uint64(f.clk.Now().Add(time.Hour).UnixMilli())
	deliverAll(t, f.s, []*tempestpb.Op{put("z", 1, far, "k", "1")})
	_, err := f.s.Update(func() error {
		f.m.Do("k", "add", addArgs{5}) // ordered before z's put
		if v, _ := f.m.Get("k"); v != 1 {
			t.Errorf("inside: k = %d, want 1 (the later put wins)", v)
		}
		return errors.New("no")
	})
	if err == nil {
		t.Fatal("want error")
	}
	if got := f.s.ItemOrder("m", []byte("k")); !slices.Equal(got, []collections.OpID{{"z", 1}}) {
		t.Fatalf("history %v", got)
	}
}

func TestNestedUpdate(t *testing.T) {
	f := newFixture(t, "a/1", nil)
	_, err := f.s.Update(func() error {
		_, err := f.s.Update(func() error { return nil })
		if !errors.Is(err, collections.ErrInUpdate) {
			t.Errorf("nested: %v", err)
		}
		if _, err := f.s.Deliver(put("z", 1, 1, "k", "1")); !errors.Is(err, collections.ErrInUpdate) {
			t.Errorf("deliver in update: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestDeliverDuplicatesIgnored(t *testing.T) {
	f := newFixture(t, "a", nil)
	o := put("z", 1, 100, "k", "1")
	if ok, err := f.s.Deliver(o); !ok || err != nil {
		t.Fatal(ok, err)
	}
	d := f.s.Digest()
	for range 3 {
		if ok, err := f.s.Deliver(put("z", 1, 100, "k", "1")); ok || err != nil {
			t.Fatal("duplicate applied", ok, err)
		}
	}
	// A duplicate with different content (a buggy origin) is still ignored.
	if ok, _ := f.s.Deliver(put("z", 1, 999, "k", "2")); ok {
		t.Fatal("same origin+seq applied twice")
	}
	// Duplicates beyond a gap too.
	deliverAll(t, f.s, []*tempestpb.Op{put("z", 5, 500, "k", "5")})
	if ok, _ := f.s.Deliver(put("z", 5, 500, "k", "5")); ok {
		t.Fatal("duplicate beyond gap applied")
	}
	if f.s.Applied() != 2 || f.s.Stats().Duplicates != 5 {
		t.Fatalf("applied %d dups %d", f.s.Applied(), f.s.Stats().Duplicates)
	}
	if v, _ := f.m.Get("k"); v != 5 || d == f.s.Digest() {
		t.Fatal("value")
	}
}

func TestDeliverRejectsLeaveStateUntouched(t *testing.T) {
	f := newFixture(t, "a", nil)
	deliverAll(t, f.s, []*tempestpb.Op{put("z", 1, 100, "k", "1")})
	digest, applied, vv, pending := f.s.Digest(), f.s.Applied(), f.s.VersionVector(), f.s.Pending()
	user := func(name, args string) *tempestpb.Op {
		o := op("z", 2, 200, "m", "k", tempestpb.OpKind_OP_USER)
		o.UserOp, o.Value = name, []byte(args)
		return o
	}
	cases := []struct {
		name string
		op   *tempestpb.Op
		want error
	}{
		{"nil", nil, collections.ErrBadOp},
		{"other service", &tempestpb.Op{Service: "other", Collection: "m", Item: []byte("k"), Kind: tempestpb.OpKind_OP_PUT, Value: []byte("1"), Origin: "z", Seq: 2, WallMs: 1}, collections.ErrBadOp},
		{"no origin", put("", 2, 200, "k", "1"), collections.ErrBadOp},
		{"seq 0", put("z", 0, 200, "k", "1"), collections.ErrBadOp},
		{"seq too big", put("z", collections.MaxSeq+1, 200, "k", "1"), collections.ErrBadOp},
		{"unknown collection", op("z", 2, 200, "nope", "k", tempestpb.OpKind_OP_PUT), collections.ErrUnknownCollection},
		{"unknown user op", user("nope", "{}"), collections.ErrUnknownOp},
		{"bad user args", user("add", `{"n":"five"}`), collections.ErrBadOp},
		{"wrong kind for map", op("z", 2, 200, "m", "k", tempestpb.OpKind_OP_SET_ADD), collections.ErrBadOp},
		{"wrong kind for counter", op("z", 2, 200, "c", "", tempestpb.OpKind_OP_PUT), collections.ErrBadOp},
		{"unspecified kind", op("z", 2, 200, "c", "", tempestpb.OpKind_OP_KIND_UNSPECIFIED), collections.ErrBadOp},
		{"undecodable value", put("z", 2, 200, "k", "not json"), collections.ErrBadOp},
		{"counter with item", op("z", 2, 200, "c", "x", tempestpb.OpKind_OP_COUNTER_ADD), collections.ErrBadOp},
		{"set non-canonical", op("z", 2, 200, "s", "01", tempestpb.OpKind_OP_SET_ADD), collections.ErrBadOp},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ok, err := f.s.Deliver(tc.op)
			if ok || !errors.Is(err, tc.want) {
				t.Fatalf("Deliver = %v, %v; want %v", ok, err, tc.want)
			}
			if f.s.Digest() != digest || f.s.Applied() != applied || f.s.Pending() != pending || !maps.Equal(f.s.VersionVector(), vv) {
				t.Fatal("rejected op changed the store")
			}
		})
	}
	// The seq a rejected op carried is still free for the real op.
	if ok, err := f.s.Deliver(put("z", 2, 200, "k", "2")); !ok || err != nil {
		t.Fatal(ok, err)
	}
}

func TestOutOfOrderInsertAndReplay(t *testing.T) {
	// Ops from three origins on one key, delivered in every permutation:
	// same value, same history order, same digest.
	ops := []*tempestpb.Op{
		put("x", 1, 100, "k", "1"),
		{Service: "svc", Collection: "m", Item: []byte("k"), Kind: tempestpb.OpKind_OP_USER, UserOp: "add", Value: []byte(`{"n":10}`), Origin: "y", Seq: 1, WallMs: 150},
		put("z", 1, 120, "k", "2"),
		{Service: "svc", Collection: "m", Item: []byte("k"), Kind: tempestpb.OpKind_OP_USER, UserOp: "add", Value: []byte(`{"n":100}`), Origin: "x", Seq: 2, WallMs: 150}, // tie with y at 150: x first
		{Service: "svc", Collection: "m", Item: []byte("k"), Kind: tempestpb.OpKind_OP_DELETE, Origin: "z", Seq: 2, WallMs: 90},
	}
	wantOrder := []collections.OpID{{"z", 2}, {"x", 1}, {"z", 1}, {"x", 2}, {"y", 1}}
	var digest uint64
	n := 0
	for perm := range permutations(len(ops)) {
		f := newFixture(t, "r", nil)
		for _, i := range perm {
			deliverAll(t, f.s, []*tempestpb.Op{ops[i]})
		}
		if v, _ := f.m.Get("k"); v != 112 {
			t.Fatalf("perm %v: k = %d, want 112", perm, v)
		}
		if got := f.s.ItemOrder("m", []byte("k")); !slices.Equal(got, wantOrder) {
			t.Fatalf("perm %v: order %v", perm, got)
		}
		if n == 0 {
			digest = f.s.Digest()
		} else if f.s.Digest() != digest {
			t.Fatalf("perm %v: digest differs", perm)
		}
		n++
	}
	if n != 120 {
		t.Fatal(n)
	}
}

func permutations(n int) func(func([]int) bool) {
	return func(yield func([]int) bool) {
		p := make([]int, n)
		for i := range p {
			p[i] = i
		}
		var rec func(k int) bool
		rec = func(k int) bool {
			if k == n {
				return yield(slices.Clone(p))
			}
			for i := k; i < n; i++ {
				p[k], p[i] = p[i], p[k]
				if !rec(k + 1) {
					return false
				}
				p[k], p[i] = p[i], p[k]
			}
			return true
		}
		rec(0)
	}
}

func TestOwnTimestampsAfterObserved(t *testing.T) {
	f := newFixture(t, "a", nil)
	ahead := uint64(f.clk.Now().Add(5 * time.Second).UnixMilli()) // within MaxDrift
	deliverAll(t, f.s, []*tempestpb.Op{put("z", 1, ahead, "k", "1")})
	ops := f.update(t, func() { f.m.Put("k", 2) })
	if !(collections.Timestamp{WallMs: ahead}).Less(collections.TimestampOf(ops[0])) {
		t.Fatalf("own op %v not after observed %d", collections.TimestampOf(ops[0]), ahead)
	}
	if v, _ := f.m.Get("k"); v != 2 {
		t.Fatal("own later write must win")
	}
}

func TestStabilityAndCompaction(t *testing.T) {
	var stable []string
	f := newFixture(t, "a", nil, noAuto, func(c *collections.Config) {
		c.OnStable = func(coll string, item []byte, id collections.OpID) {
			stable = append(stable, fmt.Sprintf("%s/%s/%s", coll, item, id))
		}
	})
	f.s.SetOrigins([]string{"a", "b", "c"})
	if !f.s.StablePoint().IsZero() {
		t.Fatal("stable point with unknown origins")
	}
	deliverAll(t, f.s, []*tempestpb.Op{
		put("b", 1, 100, "k", "1"),
		put("c", 1, 110, "k", "2"),
		put("b", 3, 300, "k", "3"), // gap: b/2 missing
		put("c", 2, 200, "j", "4"),
	})
	f.s.ObserveHeartbeat(&tempestpb.Heartbeat{Origin: "a", Seq: 0, WallMs: 1000})
	// b's horizon stops at 100 (its contiguous prefix), c's is 200.
	if sp := f.s.StablePoint(); sp != (collections.Timestamp{WallMs: 100}) {
		t.Fatalf("stable point %v, want 100", sp)
	}
	if n := f.s.Compact(); n != 1 {
		t.Fatalf("folded %d, want 1 (b#1)", n)
	}
	// A heartbeat beyond the gap cannot count yet...
	f.s.ObserveHeartbeat(&tempestpb.Heartbeat{Origin: "b", Seq: 3, WallMs: 400})
	if sp := f.s.StablePoint(); sp.WallMs != 100 {
		t.Fatalf("heartbeat beyond gap used: %v", sp)
	}
	// ...until the gap closes.
	deliverAll(t, f.s, []*tempestpb.Op{put("b", 2, 250, "j", "5")})
	if sp := f.s.StablePoint(); sp.WallMs != 200 { // b: 400, c: 200
		t.Fatalf("stable point %v, want 200", sp)
	}
	if n := f.s.Compact(); n != 2 {
		t.Fatalf("folded %d, want 2 (c#1, c#2)", n)
	}
	want := []string{"m/k/b#1", "m/k/c#1", "m/j/c#2"}
	if !slices.Equal(stable, want) {
		t.Fatalf("OnStable %v, want %v", stable, want)
	}
	if f.s.Pending() != 2 || f.s.FoldedPoint().WallMs != 200 {
		t.Fatalf("pending %d folded %v", f.s.Pending(), f.s.FoldedPoint())
	}
	if v, _ := f.m.Get("k"); v != 3 {
		t.Fatal("compaction changed k")
	}
	if v, _ := f.m.Get("j"); v != 5 {
		t.Fatal("compaction changed j")
	}
	if !slices.Equal(f.s.ItemOrder("m", []byte("k")), []collections.OpID{{"b", 3}}) {
		t.Fatal(f.s.ItemOrder("m", []byte("k")))
	}
	vv := f.s.VersionVector()
	if vv["b"] != 3 || vv["c"] != 2 || vv["a"] != 0 {
		t.Fatalf("vv %v", vv)
	}
	hz := f.s.Horizons()
	if len(hz) != 3 || hz[1].GetOrigin() != "b" || hz[1].GetSeq() != 3 || hz[1].GetWallMs() != 400 {
		t.Fatalf("horizons %v", hz)
	}
}

func TestAutoCompaction(t *testing.T) {
	var n int
	f := newFixture(t, "a", nil, func(c *collections.Config) {
		c.OnStable = func(string, []byte, collections.OpID) { n++ }
	})
	// Alone, every own op is stable at once.
	f.update(t, func() { f.m.Put("x", 1); f.c.Incr(1) })
	if f.s.Pending() != 0 || n != 2 || !f.m.Stable("x") {
		t.Fatalf("pending %d, stable calls %d", f.s.Pending(), n)
	}
	f.s.SetOrigins([]string{"a", "b"})
	f.update(t, func() { f.m.Put("x", 2) })
	deliverAll(t, f.s, []*tempestpb.Op{put("b", 1, 1, "y", "1")}) // far in the past: stable at once (b's horizon = 1)
	if f.s.Pending() != 1 {
		t.Fatalf("pending %d", f.s.Pending())
	}
	hb := &tempestpb.Heartbeat{Origin: "b", Seq: 1, WallMs: f.s.Now().WallMs + 1}
	f.s.ObserveHeartbeat(hb)
	if f.s.Pending() != 0 || n != 4 {
		t.Fatalf("heartbeat did not trigger compaction: pending %d", f.s.Pending())
	}
}

func TestCompactionDropsEmptyItems(t *testing.T) {
	f := newFixture(t, "a", nil)
	f.update(t, func() {
		for i := range 100 {
			f.m.Put(fmt.Sprint(i), i)
			f.set.Add(i)
		}
	})
	f.update(t, func() {
		for i := range 100 {
			f.m.Delete(fmt.Sprint(i))
			f.set.Remove(i)
		}
	})
	if len(f.s.Snapshot().GetItems()) != 0 {
		t.Fatal("emptied items kept")
	}
	if f.s.Digest() != newFixture(t, "b", nil).s.Digest() {
		t.Fatal("empty store digests differ")
	}
}

func TestLateOpCounted(t *testing.T) {
	f := newFixture(t, "a", nil, noAuto)
	f.s.SetOrigins([]string{"a", "b"})
	deliverAll(t, f.s, []*tempestpb.Op{put("a", 1, 100, "k", "1"), put("b", 1, 200, "k", "2")})
	f.s.ObserveHeartbeat(&tempestpb.Heartbeat{Origin: "a", Seq: 1, WallMs: 300})
	f.s.ObserveHeartbeat(&tempestpb.Heartbeat{Origin: "b", Seq: 1, WallMs: 300}) // a lie: b#2 below comes at 250
	f.s.Compact()
	deliverAll(t, f.s, []*tempestpb.Op{put("b", 2, 150, "k", "3")}) // before the folded b#1
	st := f.s.Stats()
	if st.LateOps != 1 || st.LateMisplaced != 1 {
		t.Fatalf("late %d misplaced %d", st.LateOps, st.LateMisplaced)
	}
	if v, _ := f.m.Get("k"); v != 3 {
		t.Fatalf("late op applied after the base: k = %d", v)
	}
}

func TestMaxPendingWarning(t *testing.T) {
	f := newFixture(t, "a", nil, func(c *collections.Config) { c.MaxPending = 3 })
	f.s.SetOrigins([]string{"a", "b"})
	f.update(t, func() {
		for range 5 {
			f.c.Incr(1)
		}
	})
	if w := f.s.Stats().PendingWarnings; w != 1 {
		t.Fatalf("warnings %d", w)
	}
}

func TestOwnSeqRecoveredFromPeers(t *testing.T) {
	// A clone that lost its state must not reuse seqs its peers have seen.
	f := newFixture(t, "a", nil)
	f.s.ObserveHeartbeat(&tempestpb.Heartbeat{Origin: "a", Seq: 7, WallMs: 5})
	if f.s.OwnSeq() != 7 {
		t.Fatalf("own seq %d", f.s.OwnSeq())
	}
	g := newFixture(t, "a", nil)
	deliverAll(t, g.s, []*tempestpb.Op{put("a", 4, 5, "k", "1")})
	ops := g.update(t, func() { g.m.Put("k", 2) })
	if ops[0].GetSeq() != 5 {
		t.Fatalf("seq %d", ops[0].GetSeq())
	}
}

func TestHeartbeatPromise(t *testing.T) {
	f := newFixture(t, "a", nil)
	f.update(t, func() { f.m.Put("k", 1) })
	hb := f.s.Heartbeat()
	if hb.GetOrigin() != "a" || hb.GetSeq() != 1 {
		t.Fatal(hb)
	}
	ops := f.update(t, func() { f.m.Put("k", 2) })
	hbTS := collections.Timestamp{WallMs: hb.GetWallMs(), Logical: hb.GetLogical()}
	if !hbTS.Less(collections.TimestampOf(ops[0])) {
		t.Fatal("op after heartbeat not later")
	}
	// Inside Update the promise is the one from before the Update.
	_, _ = f.s.Update(func() error {
		f.m.Put("k", 3)
		in := f.s.Heartbeat()
		if in.GetSeq() != 2 {
			t.Errorf("heartbeat in update claims seq %d", in.GetSeq())
		}
		return errors.New("x")
	})
}

func TestClockDriftClamped(t *testing.T) {
	f := newFixture(t, "a", nil)
	far := uint64(f.clk.Now().Add(24 * time.Hour).UnixMilli())
	deliverAll(t, f.s, []*tempestpb.Op{put("z", 1, far, "k", "1")})
	now := f.s.Now()
	if now.WallMs >= far || f.s.Stats().ClockClamps != 1 {
		t.Fatalf("clock dragged to %v", now)
	}
	if limit := uint64(f.clk.Now().Add(collections.DefaultMaxDrift).UnixMilli()); now.WallMs != limit {
		t.Fatalf("clock %d, want clamp at %d", now.WallMs, limit)
	}
}

func TestCollectionDigestsAndDescribe(t *testing.T) {
	f := newFixture(t, "a", nil)
	f.update(t, func() { f.m.Put("k", 1); f.l.Append("x"); f.c.Incr(2); f.set.Add(4) })
	cd := f.s.CollectionDigests()
	var sum uint64
	for _, d := range cd {
		sum += d
	}
	if len(cd) != 4 || sum != f.s.Digest() {
		t.Fatal("collection digests do not add up")
	}
	for _, c := range []struct{ coll, item, want string }{{"m", "k", "1"}, {"l", "", `["x"]`}, {"c", "", "2"}, {"s", "4", "<present>"}, {"s", "5", "<absent>"}} {
		if got := f.s.Describe(c.coll, []byte(c.item)); got != c.want {
			t.Errorf("Describe(%s,%s) = %s", c.coll, c.item, got)
		}
	}
}
