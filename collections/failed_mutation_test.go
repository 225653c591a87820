package collections_test

import (
	"errors"
	"math"
	"testing"

	"github.com/tempestrt/tempest/collections"
)

// fpoint is a key and element type whose JSON encoding fails for NaN.
type fpoint struct{ X float64 }

// TestFailedMutationFailsTheUpdate: one bad value in a request must not
// panic through the handler (which would crash the clone's scheduler). A
// mutation that cannot be made fails the whole Update with the cause, even
// when the handler ignores the mutator's error, and nothing of the update
// is applied: not the ops made before the failure, not the ones after.
func TestFailedMutationFailsTheUpdate(t *testing.T) {
	f := newFixture(t, "a/1", nil)
	floats := collections.NewMap[string, float64](f.s, "floats")
	byPoint := collections.NewMap[fpoint, int](f.s, "bypoint")
	points := collections.NewSet[fpoint](f.s, "points")
	series := collections.NewList[float64](f.s, "series")
	collections.RegisterOp(floats, "div", func(cur float64, _ bool, a struct{ D float64 }) (float64, bool) {
		return cur / a.D, true // 0/0 is NaN: the result cannot be encoded
	})
	f.update(t, func() {
		f.m.Put("k", 1)
		f.m.Put("keep", 1)
		floats.Put("zero", 0)
		series.Append(1)
	})
	digest, seq, applied := f.s.Digest(), f.s.OwnSeq(), f.s.Applied()
	nan := math.NaN()

	for _, tc := range []struct {
		name string
		bad  func()
		want error
	}{
		{"map value", func() { floats.Put("x", nan) }, collections.ErrCodec},
		{"map key on put", func() { byPoint.Put(fpoint{nan}, 1) }, collections.ErrCodec},
		{"map key on delete", func() { byPoint.Delete(fpoint{nan}) }, collections.ErrCodec},
		{"set element on add", func() { points.Add(fpoint{nan}) }, collections.ErrCodec},
		{"set element on remove", func() { points.Remove(fpoint{nan}) }, collections.ErrCodec},
		{"list append", func() { series.Append(nan) }, collections.ErrCodec},
		{"list insert", func() { series.Insert(0, nan) }, collections.ErrCodec},
		{"list set", func() { series.Set(0, nan) }, collections.ErrCodec},
		{"user op args", func() { f.m.Do("k", "add", func() {}) }, collections.ErrCodec},
		{"user op args of another type", func() { f.m.Do("k", "add", "ten") }, collections.ErrCodec},
		{"unknown user op", func() { f.m.Do("k", "nope", nil) }, collections.ErrUnknownOp},
		{"user op result", func() { floats.Do("zero", "div", struct{ D float64 }{0}) }, collections.ErrCodec},
		{"user op panic", func() { f.m.Do("keep", "boom", boomArgs{Boom: true}) }, collections.ErrUserOpPanic},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ops, err := f.s.Update(func() error {
				f.m.Put("k", 2) // made before the failure
				tc.bad()        // error ignored by the handler
				f.c.Incr(1)     // after it
				f.l.Append("after")
				return nil
			})
			if !errors.Is(err, tc.want) || ops != nil {
				t.Fatalf("Update = %d ops, %v; want no ops and %v", len(ops), err, tc.want)
			}
			if f.s.Digest() != digest || f.s.OwnSeq() != seq || f.s.Applied() != applied || f.s.Pending() != 0 {
				t.Fatal("failed update left a trace")
			}
			if v, _ := f.m.Get("k"); v != 1 || f.c.Value() != 0 || f.l.Len() != 0 {
				t.Fatalf("values changed: k=%d counter=%d list=%d", v, f.c.Value(), f.l.Len())
			}
		})
	}

	// The failure does not stick to the store: the next update succeeds.
	ops := f.update(t, func() { f.c.Incr(1) })
	if len(ops) != 1 || ops[0].GetSeq() != seq+1 || f.c.Value() != 1 {
		t.Fatalf("update after failed ones: %d ops, seq %d, counter %d", len(ops), ops[0].GetSeq(), f.c.Value())
	}
}

// TestFailedMutationIsSticky: the mutator that fails returns the cause,
// later mutators of the same update are not made and return it too, and
// an error the handler returns itself wins over it.
func TestFailedMutationIsSticky(t *testing.T) {
	f := newFixture(t, "a/1", nil)
	floats := collections.NewMap[string, float64](f.s, "floats")
	var errs []error
	_, err := f.s.Update(func() error {
		errs = append(errs,
			f.m.Put("a", 1),
			floats.Put("x", math.Inf(1)),
			f.m.Put("b", 2),
			f.m.Delete("a"),
			f.m.Do("a", "add", addArgs{N: 1}),
			f.l.Append("x"),
			f.l.RemoveAt(0),
			f.set.Add(1),
			f.c.Incr(1))
		if f.m.Contains("b") || f.c.Value() != 0 || f.l.Len() != 0 || f.set.Len() != 0 {
			t.Error("a mutation after the failed one was made")
		}
		return nil
	})
	if errs[0] != nil || !errors.Is(errs[1], collections.ErrCodec) {
		t.Fatalf("mutator errors %v", errs)
	}
	for i, e := range errs[2:] {
		if e != errs[1] {
			t.Fatalf("mutation %d after the failure returned %v, want %v", i+3, e, errs[1])
		}
	}
	if !errors.Is(err, collections.ErrCodec) || f.s.Applied() != 0 || f.m.Contains("a") {
		t.Fatalf("Update = %v, applied %d", err, f.s.Applied())
	}

	own := errors.New("handler's own error")
	_, err = f.s.Update(func() error {
		_ = floats.Put("x", math.NaN())
		return own
	})
	if err != own {
		t.Fatalf("Update returned %v, want the handler's own error", err)
	}
}
