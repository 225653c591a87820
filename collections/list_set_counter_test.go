package collections_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/tempestrt/tempest/collections"
	"github.com/tempestrt/tempest/proto/tempestpb"
)

func TestList(t *testing.T) {
	f := newFixture(t, "a/1", nil)
	if f.l.Len() != 0 || !f.l.Stable() {
		t.Fatal("empty list")
	}
	if _, ok := f.l.Get(0); ok {
		t.Fatal("Get on empty list")
	}
	f.update(t, func() {
		f.l.Append("b")
		f.l.Append("d")
		f.l.Insert(0, "a")
		f.l.Insert(2, "c")
		f.l.Insert(99, "e")  // clamped to the end
		f.l.Insert(-5, "_")  // clamped to the front
		f.l.RemoveAt(0)      // removes "_"
		f.l.RemoveAt(42)     // out of range: nothing
		f.l.Set(1, "B")      // b -> B
		f.l.Set(-1, "never") // out of range: nothing
	})
	want := []string{"a", "B", "c", "d", "e"}
	if got := slices.Collect(f.l.Values()); !slices.Equal(got, want) {
		t.Fatalf("list %v, want %v", got, want)
	}
	if v, ok := f.l.Get(4); !ok || v != "e" || f.l.Len() != 5 {
		t.Fatalf("Get(4) %q %v len %d", v, ok, f.l.Len())
	}
	for i, v := range f.l.All() {
		if want[i] != v {
			t.Fatalf("All %d = %q", i, v)
		}
	}
	// Mutating while iterating iterates the list as it was.
	f.update(t, func() {
		for range f.l.All() {
			f.l.RemoveAt(0)
		}
	})
	if f.l.Len() != 0 {
		t.Fatalf("len %d after removing every element", f.l.Len())
	}
}

func TestListRemoteOpMustNameNoItem(t *testing.T) {
	f := newFixture(t, "a/1", nil)
	o := op("z", 1, 1, "l", "x", tempestpb.OpKind_OP_LIST_APPEND)
	o.Value = []byte(`"v"`)
	if _, err := f.s.Deliver(o); err == nil {
		t.Fatal("list op with an item key accepted")
	}
}

func TestListLateInsertReplays(t *testing.T) {
	// The same list ops delivered in order, reversed and shuffled: the late
	// ops are inserted at their place and the list rolled back and
	// replayed, so every replica agrees with a plain model that applies
	// the ops in timestamp order.
	var ops []*tempestpb.Op
	for i := range 200 {
		o := op("x", uint64(i+1), uint64(1000+i), "nums", "", tempestpb.OpKind_OP_LIST_APPEND)
		o.Value = []byte(fmt.Sprint(i))
		switch {
		case i%7 == 3:
			o.Kind, o.Index = tempestpb.OpKind_OP_LIST_INSERT, int64(i%9)-2
		case i%11 == 5:
			o.Kind, o.Index, o.Value = tempestpb.OpKind_OP_LIST_REMOVE_AT, int64(i%13)-1, nil
		case i%5 == 1:
			o.Kind, o.Index = tempestpb.OpKind_OP_LIST_SET, int64(i%17)
		}
		ops = append(ops, o)
	}
	var model []int
	for i, o := range ops {
		n := int64(len(model))
		switch o.GetKind() {
		case tempestpb.OpKind_OP_LIST_APPEND:
			model = append(model, i)
		case tempestpb.OpKind_OP_LIST_INSERT:
			model = slices.Insert(model, int(min(max(o.GetIndex(), 0), n)), i)
		case tempestpb.OpKind_OP_LIST_REMOVE_AT:
			if o.GetIndex() >= 0 && o.GetIndex() < n {
				model = slices.Delete(model, int(o.GetIndex()), int(o.GetIndex())+1)
			}
		case tempestpb.OpKind_OP_LIST_SET:
			if o.GetIndex() >= 0 && o.GetIndex() < n {
				model[o.GetIndex()] = i
			}
		}
	}
	rev := slices.Clone(ops)
	slices.Reverse(rev)
	shuffled := slices.Clone(ops)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for name, order := range map[string][]*tempestpb.Op{"in order": ops, "reversed": rev, "shuffled": shuffled} {
		f := newFixture(t, "r", nil)
		l := collections.NewList[int](f.s, "nums")
		deliverAll(t, f.s, order)
		if got := slices.Collect(l.Values()); !slices.Equal(got, model) {
			t.Fatalf("%s: %v\nwant %v", name, got, model)
		}
		if name != "in order" && f.s.Stats().Replayed == 0 {
			t.Fatalf("%s: nothing replayed", name)
		}
		// Folding everything keeps the value.
		f.s.ObserveHeartbeat(&tempestpb.Heartbeat{Origin: "r", WallMs: 5000})
		f.s.ObserveHeartbeat(&tempestpb.Heartbeat{Origin: "x", Seq: 200, WallMs: 5000})
		f.s.SetOrigins([]string{"r", "x"})
		if f.s.Pending() != 0 || !slices.Equal(slices.Collect(l.Values()), model) {
			t.Fatalf("%s: after folding: pending %d", name, f.s.Pending())
		}
	}
}

func TestSet(t *testing.T) {
	f := newFixture(t, "a/1", nil)
	f.update(t, func() {
		f.set.Add(3)
		f.set.Add(1)
		f.set.Add(2)
		f.set.Add(3)
		f.set.Remove(2)
		f.set.Remove(42)
	})
	if got := slices.Collect(f.set.All()); !slices.Equal(got, []int{1, 3}) {
		t.Fatalf("set %v", got)
	}
	if !f.set.Contains(3) || f.set.Contains(2) || f.set.Len() != 2 {
		t.Fatal("Contains/Len")
	}
	// Later op wins, whatever the arrival order.
	a, b := newFixture(t, "a", nil), newFixture(t, "b", nil)
	add := op("x", 1, 100, "s", "7", tempestpb.OpKind_OP_SET_ADD)
	rm := op("y", 1, 100, "s", "7", tempestpb.OpKind_OP_SET_REMOVE) // same time: origin "y" > "x" wins
	deliverAll(t, a.s, []*tempestpb.Op{add, rm})
	deliverAll(t, b.s, []*tempestpb.Op{rm, add})
	if a.set.Contains(7) || b.set.Contains(7) {
		t.Fatal("tie not broken by origin")
	}
}

func TestCounter(t *testing.T) {
	f := newFixture(t, "a/1", nil)
	if f.c.Value() != 0 || !f.c.Stable() {
		t.Fatal("fresh counter")
	}
	f.update(t, func() {
		f.c.Incr(5)
		f.c.Incr(-2)
	})
	if f.c.Value() != 3 {
		t.Fatalf("counter %d", f.c.Value())
	}
	d := f.s.Digest()
	f.update(t, func() { f.c.Incr(-3) })
	if f.c.Value() != 0 || f.s.Digest() == d {
		t.Fatal("counter back to zero")
	}
	fresh := newFixture(t, "b/1", nil)
	if fresh.s.Digest() != f.s.Digest() {
		t.Fatal("a zero counter must digest like an untouched one")
	}
}
