package collections_test

import (
	"math"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/tempestrt/tempest/collections"
)

func TestTimestampOrderAndPack(t *testing.T) {
	ts := func(t *rapid.T, label string) collections.Timestamp {
		return collections.Timestamp{
			WallMs:  rapid.OneOf(rapid.Uint64Range(0, 3), rapid.Uint64Range(1<<47, 1<<47+3), rapid.Uint64Range(1<<48-2, 1<<48+2), rapid.Uint64()).Draw(t, label+".wall"),
			Logical: rapid.OneOf(rapid.Uint32Range(0, 3), rapid.Uint32Range(0xfffe, 0x10001), rapid.Uint32()).Draw(t, label+".logical"),
		}
	}
	rapid.Check(t, func(t *rapid.T) {
		a, b := ts(t, "a"), ts(t, "b")
		if a.Compare(b) != -b.Compare(a) || (a.Compare(b) == 0) != (a == b) || a.Less(b) != (a.Compare(b) < 0) {
			t.Fatalf("compare inconsistent: %v %v", a, b)
		}
		if a.Compare(b) <= 0 && a.Pack() > b.Pack() {
			t.Fatalf("Pack not monotone: %v -> %x, %v -> %x", a, a.Pack(), b, b.Pack())
		}
	})
	if (collections.Timestamp{WallMs: 5, Logical: 3}).Pack() != 5<<16|3 {
		t.Fatal("pack layout")
	}
	if (collections.Timestamp{WallMs: 1 << 50}).Pack() != math.MaxUint64 {
		t.Fatal("pack saturation")
	}
	if !(collections.Timestamp{}).IsZero() || (collections.Timestamp{}).String() != "0" {
		t.Fatal("zero")
	}
	if s := (collections.Timestamp{WallMs: 1_700_000_000_123, Logical: 4}).String(); s != "2023-11-14T22:13:20.123Z+4" {
		t.Fatal(s)
	}
}

func TestHLC(t *testing.T) {
	clk := newClock()
	h := collections.NewHLC(clk.Now)
	prev := h.Now()
	if prev.WallMs != uint64(clk.Now().UnixMilli()) || prev.Logical != 0 {
		t.Fatalf("first reading %v", prev)
	}
	check := func(what string) {
		t.Helper()
		n := h.Now()
		if !prev.Less(n) {
			t.Fatalf("%s: %v not after %v", what, n, prev)
		}
		prev = n
	}
	check("same ms")
	clk.Advance(-time.Second)
	check("clock went back")
	clk.Advance(2 * time.Second)
	check("clock moved on")
	if prev.Logical != 0 || prev.WallMs != uint64(clk.Now().UnixMilli()) {
		t.Fatalf("physical time not picked up: %v", prev)
	}

	// Observe: later readings are after what was observed (within MaxDrift).
	remote := collections.Timestamp{WallMs: prev.WallMs + 3000, Logical: 9}
	if h.Observe(remote) {
		t.Fatal("3 s ahead clamped")
	}
	if n := h.Now(); !remote.Less(n) {
		t.Fatalf("reading %v not after observed %v", n, remote)
	}
	// Far ahead: clamped to physical + MaxDrift.
	if !h.Observe(collections.Timestamp{WallMs: prev.WallMs + 3_600_000}) || h.Clamped() != 1 {
		t.Fatal("1 h ahead not clamped")
	}
	limit := uint64(clk.Now().Add(collections.DefaultMaxDrift).UnixMilli())
	if n := h.Now(); n.WallMs != limit {
		t.Fatalf("clamped clock at %v, want wall %d", n, limit)
	}
	// Without a cap it follows (up to the sanity bound).
	h2 := collections.NewHLC(clk.Now)
	h2.MaxDrift = 0
	h2.Observe(collections.Timestamp{WallMs: uint64(clk.Now().Add(time.Hour).UnixMilli())})
	if n := h2.Now(); n.WallMs != uint64(clk.Now().Add(time.Hour).UnixMilli()) {
		t.Fatal("uncapped clock did not follow")
	}
	h2.Observe(collections.Timestamp{WallMs: math.MaxUint64, Logical: math.MaxUint32})
	a, b := h2.Now(), h2.Now()
	if !a.Less(b) || a.WallMs > 1<<48 {
		t.Fatalf("absurd remote clock broke the HLC: %v %v", a, b)
	}

	// Logical overflow carries into the wall clock.
	h3 := collections.NewHLC(clk.Now)
	h3.Restore(collections.Timestamp{WallMs: uint64(clk.Now().UnixMilli()), Logical: math.MaxUint32 - 1})
	x, y := h3.Now(), h3.Now()
	if x.Logical != math.MaxUint32 || y.WallMs != x.WallMs+1 || y.Logical != 0 {
		t.Fatalf("overflow: %v then %v", x, y)
	}

	// Restore never moves back.
	last := h3.Last()
	h3.Restore(collections.Timestamp{WallMs: 1})
	if h3.Last() != last {
		t.Fatal("Restore moved the clock back")
	}
}

// TestHoldBackPointCoversEarlierOps: two replicas whose clocks read the same
// millisecond. Replica a issues a few ops (its HLC counts them in the
// logical part); then an update arrives at replica b, which has issued
// nothing this millisecond. The point b's update waits to be stable past
// must be at or after a's ops, issued before the update arrived; b's Now
// is not (the scenario exercises what it checks).
func TestHoldBackPointCoversEarlierOps(t *testing.T) {
	clk := newClock() // stands still: every reading is the same millisecond
	a := newFixture(t, "a", clk)
	b := newFixture(t, "b", clk)
	var last collections.Timestamp
	for i := range 3 {
		for _, op := range a.update(t, func() { a.m.Put("seat", i) }) {
			last = collections.TimestampOf(op)
		}
	}
	if now := b.s.Now(); !now.Less(last) {
		t.Fatalf("b's Now %v is not before a's op at %v: the scenario does not exercise the skew", now, last)
	}
	if p := b.s.HoldBackPoint(); p.Less(last) || p.Pack() < last.Pack() {
		t.Fatalf("b's hold-back point %v (packed %d) is before a's op at %v (packed %d), issued before the update arrived", p, p.Pack(), last, last.Pack())
	}
}
