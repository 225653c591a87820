package collections_test

import (
	"errors"
	"maps"
	"slices"
	"testing"

	"github.com/tempestrt/tempest/collections"
	"github.com/tempestrt/tempest/proto/tempestpb"
)

func TestMapPutGetDelete(t *testing.T) {
	f := newFixture(t, "a/1", nil)
	if _, ok := f.m.Get("x"); ok || f.m.Len() != 0 || f.m.Contains("x") {
		t.Fatal("empty map reports content")
	}
	ops := f.update(t, func() {
		f.m.Put("x", 1)
		f.m.Put("y", 2)
		if v, ok := f.m.Get("x"); !ok || v != 1 { // reads its own writes
			t.Fatalf("inside update: Get(x) = %v, %v", v, ok)
		}
		f.m.Put("x", 3)
		f.m.Delete("y")
		f.m.Delete("never")
	})
	if len(ops) != 5 {
		t.Fatalf("got %d ops, want 5", len(ops))
	}
	for i, o := range ops {
		if o.GetOrigin() != "a/1" || o.GetSeq() != uint64(i+1) || o.GetService() != "svc" || o.GetCollection() != "m" {
			t.Fatalf("op %d envelope %v", i, o)
		}
		if i > 0 && !collections.TimestampOf(ops[i-1]).Less(collections.TimestampOf(o)) {
			t.Fatalf("own timestamps not increasing at %d", i)
		}
	}
	if v, ok := f.m.Get("x"); !ok || v != 3 {
		t.Fatalf("Get(x) = %v, %v", v, ok)
	}
	if f.m.Contains("y") || f.m.Len() != 1 {
		t.Fatalf("after delete: contains y %v len %d", f.m.Contains("y"), f.m.Len())
	}
	if got := collect(f.m); !maps.Equal(got, map[string]int{"x": 3}) {
		t.Fatalf("All = %v", got)
	}
}

func TestMapIterationSortedByEncodedKey(t *testing.T) {
	f := newFixture(t, "a/1", nil)
	f.update(t, func() {
		for _, k := range []string{"pear", "apple", "fig", "banana"} {
			f.m.Put(k, len(k))
		}
	})
	keys := slices.Collect(f.m.Keys())
	if want := []string{"apple", "banana", "fig", "pear"}; !slices.Equal(keys, want) {
		t.Fatalf("Keys = %v, want %v", keys, want)
	}
	var all []string
	for k := range f.m.All() {
		all = append(all, k)
	}
	if !slices.Equal(all, keys) {
		t.Fatalf("All order %v", all)
	}
	// The body may mutate: delete while iterating.
	f.update(t, func() {
		for k := range f.m.Keys() {
			if k != "fig" {
				f.m.Delete(k)
			}
		}
	})
	if got := slices.Collect(f.m.Keys()); !slices.Equal(got, []string{"fig"}) {
		t.Fatalf("after deleting while iterating: %v", got)
	}
	// Early break.
	n := 0
	for range f.m.All() {
		n++
		break
	}
	if n != 1 {
		t.Fatal("break ignored")
	}
}

func TestMapGetReturnsCopy(t *testing.T) {
	f := newFixture(t, "a/1", nil)
	mm := collections.NewMap[string, map[string]int](f.s, "nested")
	f.update(t, func() { mm.Put("k", map[string]int{"a": 1}) })
	v, _ := mm.Get("k")
	v["a"] = 99
	if again, _ := mm.Get("k"); again["a"] != 1 {
		t.Fatal("modifying a read value changed the replica")
	}
}

func TestMapUserOp(t *testing.T) {
	f := newFixture(t, "a/1", nil)
	f.update(t, func() {
		f.m.Do("n", "add", addArgs{N: 5})
		f.m.Do("n", "add", addArgs{N: 2})
	})
	if v, _ := f.m.Get("n"); v != 7 {
		t.Fatalf("n = %d, want 7", v)
	}
	f.update(t, func() { f.m.Do("n", "add", addArgs{N: -7}) }) // keep=false deletes
	if f.m.Contains("n") {
		t.Fatal("user op returning keep=false did not delete")
	}
	var doErr error
	if _, err := f.s.Update(func() error { doErr = f.m.Do("n", "nope", nil); return nil }); !errors.Is(err, collections.ErrUnknownOp) || !errors.Is(doErr, collections.ErrUnknownOp) {
		t.Fatalf("unknown user op: Do returned %v, Update %v", doErr, err)
	}
	mustPanicWith(t, collections.ErrDuplicateOp, func() {
		collections.RegisterOp(f.m, "add", func(cur int, _ bool, a addArgs) (int, bool) { return cur, true })
	})
}

func TestMapUserOpPanicRetractsUpdate(t *testing.T) {
	f := newFixture(t, "a/1", nil)
	f.update(t, func() { f.m.Put("keep", 1) })
	before, seq, applied := f.s.Digest(), f.s.OwnSeq(), f.s.Applied()
	var doErr error
	_, err := f.s.Update(func() error {
		f.m.Put("other", 2)
		doErr = f.m.Do("keep", "boom", boomArgs{Boom: true})
		return doErr
	})
	if !errors.Is(doErr, collections.ErrUserOpPanic) || err != doErr {
		t.Fatalf("user op panic: Do returned %v, Update %v", doErr, err)
	}
	if f.s.Digest() != before || f.s.OwnSeq() != seq || f.s.Applied() != applied || f.m.Contains("other") {
		t.Fatal("update whose user op panicked left a trace")
	}
}

func TestMapUserOpPanicOnReplayIsNoOpEverywhere(t *testing.T) {
	// An op whose function panics only in some states must have the same
	// (no-op) effect on every replica, whatever the arrival order.
	mk := func(r string) *fixture {
		f := newFixture(t, r, nil)
		collections.RegisterOp(f.m, "halve", func(cur int, exists bool, _ struct{}) (int, bool) {
			if cur%2 != 0 {
				panic("odd")
			}
			return cur / 2, true
		})
		return f
	}
	a, b := mk("a"), mk("b")
	ops := []*tempestpb.Op{put("x", 1, 100, "k", "3"), {Service: "svc", Collection: "m", Item: []byte("k"), Kind: tempestpb.OpKind_OP_USER, UserOp: "halve", Value: []byte("{}"), Origin: "y", Seq: 1, WallMs: 200}}
	deliverAll(t, a.s, ops)
	deliverAll(t, b.s, []*tempestpb.Op{ops[1], ops[0]})
	va, _ := a.m.Get("k")
	vb, _ := b.m.Get("k")
	if va != 3 || vb != 3 || a.s.Digest() != b.s.Digest() {
		t.Fatalf("a=%d b=%d", va, vb)
	}
	if a.s.Stats().UserOpPanics == 0 || b.s.Stats().UserOpPanics == 0 {
		t.Fatal("panics not counted")
	}
}

func TestMapStable(t *testing.T) {
	f := newFixture(t, "a/1", nil, noAuto)
	f.s.SetOrigins([]string{"a/1", "b/1"})
	f.update(t, func() { f.m.Put("x", 1) })
	if f.m.Stable("x") {
		t.Fatal("x stable although b/1 is unknown")
	}
	if !f.m.Stable("untouched") {
		t.Fatal("an untouched key has no tentative ops")
	}
	f.s.ObserveHeartbeat(&tempestpb.Heartbeat{Origin: "b/1", WallMs: f.s.Now().WallMs + 10})
	f.s.Heartbeat()
	if f.s.Compact() != 1 || !f.m.Stable("x") {
		t.Fatal("x not stable after heartbeats from every origin")
	}
	if v, _ := f.m.Get("x"); v != 1 {
		t.Fatal("value lost by compaction")
	}
}

type userID string

type point struct{ X, Y int }

func TestKeyCodecs(t *testing.T) {
	f := newFixture(t, "a/1", nil)
	byInt := collections.NewMap[int, string](f.s, "ints")
	byName := collections.NewMap[userID, bool](f.s, "named")
	byUint := collections.NewMap[uint8, int](f.s, "u8")
	byBool := collections.NewSet[bool](f.s, "bools")
	byPoint := collections.NewSet[point](f.s, "points")
	ops := f.update(t, func() {
		byInt.Put(-12, "neg")
		byInt.Put(9, "nine")
		byInt.Put(10, "ten")
		byName.Put("ann", true)
		byUint.Put(255, 1)
		byBool.Add(true)
		byPoint.Add(point{1, 2})
	})
	wantItems := []string{"-12", "9", "10", "ann", "255", "true", `{"X":1,"Y":2}`}
	for i, o := range ops {
		if string(o.GetItem()) != wantItems[i] {
			t.Errorf("op %d item %q, want %q", i, o.GetItem(), wantItems[i])
		}
	}
	if got := slices.Collect(byInt.Keys()); !slices.Equal(got, []int{-12, 10, 9}) { // encoded-byte order
		t.Errorf("int keys %v", got)
	}
	if v, ok := byName.Get("ann"); !ok || !v {
		t.Error("named string key")
	}
	if !byPoint.Contains(point{1, 2}) || byPoint.Contains(point{2, 1}) {
		t.Error("struct set element")
	}
	// Non-canonical encodings of a key are rejected: "009" would be an item
	// no local key names.
	for _, bad := range []string{"009", "+9", " 9", "9.0", "x"} {
		o := &tempestpb.Op{Service: "svc", Collection: "ints", Item: []byte(bad), Kind: tempestpb.OpKind_OP_PUT, Value: []byte(`"v"`), Origin: "z", Seq: 1, WallMs: 1}
		if _, err := f.s.Deliver(o); !errors.Is(err, collections.ErrBadOp) {
			t.Errorf("key %q: err %v", bad, err)
		}
	}
	if _, err := f.s.Deliver(&tempestpb.Op{Service: "svc", Collection: "u8", Item: []byte("256"), Kind: tempestpb.OpKind_OP_PUT, Value: []byte("1"), Origin: "z", Seq: 1, WallMs: 1}); !errors.Is(err, collections.ErrBadOp) {
		t.Errorf("uint8 overflow key accepted: %v", err)
	}
}

type upperCodec struct{}

func (upperCodec) Encode(s string) ([]byte, error) { return []byte("<" + s + ">"), nil }
func (upperCodec) Decode(b []byte) (string, error) {
	if len(b) < 2 || b[0] != '<' || b[len(b)-1] != '>' {
		return "", errors.New("not bracketed")
	}
	return string(b[1 : len(b)-1]), nil
}

func TestCustomCodecs(t *testing.T) {
	f := newFixture(t, "a/1", nil)
	m := collections.NewMap[string, string](f.s, "custom", collections.WithKeyCodec[string](upperCodec{}), collections.WithValueCodec[string](upperCodec{}))
	ops := f.update(t, func() { m.Put("k", "v") })
	if string(ops[0].GetItem()) != "<k>" || string(ops[0].GetValue()) != "<v>" {
		t.Fatalf("op %v", ops[0])
	}
	if v, _ := m.Get("k"); v != "v" {
		t.Fatal(v)
	}
	bad := &tempestpb.Op{Service: "svc", Collection: "custom", Item: []byte("<k>"), Kind: tempestpb.OpKind_OP_PUT, Value: []byte("v"), Origin: "z", Seq: 1, WallMs: 1}
	if _, err := f.s.Deliver(bad); !errors.Is(err, collections.ErrBadOp) {
		t.Fatalf("undecodable value accepted: %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("codec of the wrong type accepted")
		}
	}()
	collections.NewMap[int, string](f.s, "wrong", collections.WithKeyCodec[string](upperCodec{}))
}

func TestEncodeFailureReturnsErrCodec(t *testing.T) {
	f := newFixture(t, "a/1", nil)
	fm := collections.NewMap[string, float64](f.s, "floats")
	nan := 0.0
	nan /= nan
	var putErr error
	_, err := f.s.Update(func() error {
		if putErr = fm.Put("x", nan); putErr != nil {
			return putErr
		}
		t.Error("Put of NaN returned nil")
		return nil
	})
	if !errors.Is(putErr, collections.ErrCodec) || err != putErr {
		t.Fatalf("Put returned %v, Update %v", putErr, err)
	}
	if fm.Len() != 0 || f.s.OwnSeq() != 0 {
		t.Fatal("failed encode left a trace")
	}
}
