package collections_test

import (
	"errors"
	"testing"
	"time"

	"github.com/tempestrt/tempest/collections"
	"github.com/tempestrt/tempest/proto/tempestpb"
)

// tb is what helpers need of *testing.T, *testing.B and *rapid.T.
type tb interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

// clock is a manual physical clock.
type clock struct{ t time.Time }

func newClock() *clock                   { return &clock{t: time.UnixMilli(1_700_000_000_000)} }
func (c *clock) Now() time.Time          { return c.t }
func (c *clock) Advance(d time.Duration) { c.t = c.t.Add(d) }

type addArgs struct {
	N int `json:"n"`
}

type boomArgs struct {
	Boom bool `json:"boom"`
}

// fixture is a store with one collection of each kind, as every replica of
// the test service "svc" declares them.
type fixture struct {
	s   *collections.Store
	clk *clock
	m   *collections.Map[string, int]
	l   *collections.List[string]
	set *collections.Set[int]
	c   *collections.Counter
}

func newFixture(t tb, replica string, clk *clock, tweak ...func(*collections.Config)) *fixture {
	t.Helper()
	if clk == nil {
		clk = newClock()
	}
	cfg := collections.Config{Service: "svc", Replica: replica, Now: clk.Now}
	for _, f := range tweak {
		f(&cfg)
	}
	s, err := collections.NewStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{
		s:   s,
		clk: clk,
		m:   collections.NewMap[string, int](s, "m"),
		l:   collections.NewList[string](s, "l"),
		set: collections.NewSet[int](s, "s"),
		c:   collections.NewCounter(s, "c"),
	}
	collections.RegisterOp(f.m, "add", func(cur int, _ bool, a addArgs) (int, bool) {
		next := cur + a.N
		return next, next != 0
	})
	collections.RegisterOp(f.m, "setnx", func(cur int, exists bool, a addArgs) (int, bool) {
		if exists {
			return cur, true
		}
		return a.N, true
	})
	collections.RegisterOp(f.m, "boom", func(cur int, exists bool, a boomArgs) (int, bool) {
		if a.Boom {
			panic("boom")
		}
		return cur, exists
	})
	return f
}

// update runs fn in an Update that must succeed.
func (f *fixture) update(t tb, fn func()) []*tempestpb.Op {
	t.Helper()
	ops, err := f.s.Update(func() error { fn(); return nil })
	if err != nil {
		t.Fatal(err)
	}
	return ops
}

func deliverAll(t tb, s *collections.Store, ops []*tempestpb.Op) {
	t.Helper()
	for _, op := range ops {
		if _, err := s.Deliver(op); err != nil {
			t.Fatalf("deliver %v: %v", collections.ID(op), err)
		}
	}
}

func mustPanicWith(t *testing.T, target error, fn func()) {
	t.Helper()
	defer func() {
		t.Helper()
		r := recover()
		if r == nil {
			t.Fatalf("no panic, want %v", target)
		}
		err, ok := r.(error)
		if !ok || !errors.Is(err, target) {
			t.Fatalf("panic %v, want %v", r, target)
		}
	}()
	fn()
}

func noAuto(c *collections.Config) { c.DisableAutoCompact = true }

// op builds a remote op by hand.
func op(origin string, seq uint64, wall uint64, coll string, item string, kind tempestpb.OpKind) *tempestpb.Op {
	return &tempestpb.Op{Service: "svc", Collection: coll, Item: []byte(item), Kind: kind, Origin: origin, Seq: seq, WallMs: wall}
}

func put(origin string, seq, wall uint64, key string, v string) *tempestpb.Op {
	o := op(origin, seq, wall, "m", key, tempestpb.OpKind_OP_PUT)
	o.Value = []byte(v)
	return o
}

func collect[K comparable, V any](m *collections.Map[K, V]) map[K]V {
	out := map[K]V{}
	for k, v := range m.All() {
		out[k] = v
	}
	return out
}
