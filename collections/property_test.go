package collections_test

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"pgregory.net/rapid"

	"github.com/tempestrt/tempest/collections"
	"github.com/tempestrt/tempest/collections/check"
	"github.com/tempestrt/tempest/proto/tempestpb"
)

// sim is a group of replicas of service "svc" exchanging ops and
// heartbeats over a network that delays, reorders, duplicates and loses
// messages, with skewed clocks, restarts from snapshots and catch-up from
// a log of every committed op (what anti-entropy repair provides).
type sim struct {
	now      time.Time
	names    []string
	skew     []time.Duration
	reps     []*fixture
	incarn   []int
	checker  *check.OrderChecker
	flight   []msg
	log      []*tempestpb.Op // every committed op
	labels   [][]string      // per replica, checker labels in incarnation order
	failures int
}

type msg struct {
	to int
	op *tempestpb.Op
	hb *tempestpb.Heartbeat
}

func newSim(t *rapid.T) *sim {
	n := rapid.IntRange(3, 5).Draw(t, "replicas")
	s := &sim{now: time.UnixMilli(1_700_000_000_000), checker: check.NewOrderChecker()}
	for i := range n {
		s.names = append(s.names, fmt.Sprintf("svc/%d", i+1))
		var skew time.Duration
		if rapid.IntRange(0, 4).Draw(t, "bigskew") == 0 {
			skew = time.Duration(rapid.IntRange(-30_000, 30_000).Draw(t, "skew")) * time.Millisecond // beyond MaxDrift
		} else {
			skew = time.Duration(rapid.IntRange(-50, 50).Draw(t, "skew")) * time.Millisecond
		}
		s.skew = append(s.skew, skew)
	}
	s.incarn = make([]int, n)
	s.labels = make([][]string, n)
	s.reps = make([]*fixture, n)
	for i := range n {
		s.reps[i] = s.boot(t, i)
	}
	return s
}

// boot creates (a new incarnation of) replica i.
func (s *sim) boot(t *rapid.T, i int) *fixture {
	s.incarn[i]++
	label := fmt.Sprintf("%s#%d", s.names[i], s.incarn[i])
	s.labels[i] = append(s.labels[i], label)
	i0 := i
	clk := &clock{}
	f := newFixture(t, s.names[i], clk, func(c *collections.Config) {
		c.Now = func() time.Time { return s.now.Add(s.skew[i0]) }
		c.OnStable = s.checker.Hook(label)
	})
	f.s.SetOrigins(s.names)
	return f
}

func (s *sim) send(from int, op *tempestpb.Op, hb *tempestpb.Heartbeat) {
	for to := range s.reps {
		if to != from {
			s.flight = append(s.flight, msg{to: to, op: op, hb: hb})
		}
	}
}

func (s *sim) deliver(t *rapid.T, m msg) {
	f := s.reps[m.to]
	if m.hb != nil {
		f.s.ObserveHeartbeat(proto.Clone(m.hb).(*tempestpb.Heartbeat))
		return
	}
	if _, err := f.s.Deliver(proto.Clone(m.op).(*tempestpb.Op)); err != nil {
		t.Fatalf("deliver %v to %s: %v", collections.ID(m.op), s.names[m.to], err)
	}
}

var errHandler = errors.New("handler error")

// update runs a random handler on replica i.
func (s *sim) update(t *rapid.T, i int) {
	f := s.reps[i]
	keys := []string{"a", "b", "c", "d"}
	n := rapid.IntRange(1, 3).Draw(t, "mutations")
	fail := rapid.IntRange(0, 6).Draw(t, "fail") == 0
	var muts []int
	for range n {
		muts = append(muts, rapid.IntRange(0, 11).Draw(t, "mut"))
	}
	args := rapid.SliceOfN(rapid.IntRange(-3, 9), 3*n, 3*n).Draw(t, "args")
	ops, err := f.s.Update(func() error {
		for j, m := range muts {
			a, b := args[3*j], args[3*j+1]
			k := keys[(a+4)%4]
			switch m {
			case 0:
				f.m.Put(k, b)
			case 1:
				f.m.Delete(k)
			case 2:
				f.m.Do(k, "add", addArgs{N: b})
			case 3:
				f.m.Do(k, "setnx", addArgs{N: b})
			case 4:
				f.l.Append(fmt.Sprintf("%s:%d", s.names[i], b))
			case 5:
				f.l.Insert(a, fmt.Sprintf("ins%d", b))
			case 6:
				f.l.RemoveAt(a)
			case 7:
				f.l.Set(a, fmt.Sprintf("set%d", b))
			case 8:
				f.set.Add(a)
			case 9:
				f.set.Remove(a)
			default:
				f.c.Incr(int64(b))
			}
		}
		if fail {
			return errHandler
		}
		return nil
	})
	if fail {
		if !errors.Is(err, errHandler) || ops != nil {
			t.Fatalf("failed update returned %v, %v", ops, err)
		}
		return
	}
	if err != nil || len(ops) != n {
		t.Fatalf("update: %d ops, %v", len(ops), err)
	}
	for _, op := range ops {
		s.log = append(s.log, op)
		s.send(i, op, nil)
	}
}

// catchup gives replica i every logged op (duplicates are ignored).
func (s *sim) catchup(t *rapid.T, i int) {
	for _, op := range s.log {
		if op.GetOrigin() != s.names[i] || s.reps[i].s.OwnSeq() < op.GetSeq() {
			s.deliver(t, msg{to: i, op: op})
		}
	}
}

func (s *sim) restart(t *rapid.T, i int) {
	b, err := proto.Marshal(s.reps[i].s.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	snap := &tempestpb.StoreSnapshot{}
	if err := proto.Unmarshal(b, snap); err != nil {
		t.Fatal(err)
	}
	f := s.boot(t, i)
	if err := f.s.Restore(snap); err != nil {
		t.Fatalf("restore %s: %v", s.names[i], err)
	}
	old := s.reps[i]
	if f.s.Digest() != old.s.Digest() || f.s.Pending() != old.s.Pending() {
		t.Fatalf("restart of %s changed its state", s.names[i])
	}
	s.reps[i] = f
}

func (s *sim) step(t *rapid.T) {
	i := rapid.IntRange(0, len(s.reps)-1).Draw(t, "replica")
	switch a := rapid.IntRange(0, 99).Draw(t, "action"); {
	case a < 25:
		s.update(t, i)
	case a < 65 && len(s.flight) > 0:
		j := rapid.IntRange(0, len(s.flight)-1).Draw(t, "msg")
		m := s.flight[j]
		switch r := rapid.IntRange(0, 9).Draw(t, "fate"); {
		case r == 0: // lost
			s.flight = slices.Delete(s.flight, j, j+1)
		case r == 1: // duplicated: delivered and kept in flight
			s.deliver(t, m)
		default:
			s.flight = slices.Delete(s.flight, j, j+1)
			s.deliver(t, m)
		}
	case a < 75:
		s.send(i, nil, s.reps[i].s.Heartbeat())
	case a < 80:
		s.reps[i].s.Compact()
	case a < 90:
		s.now = s.now.Add(time.Duration(rapid.IntRange(0, 200).Draw(t, "advance")) * time.Millisecond)
	case a < 94:
		s.catchup(t, i)
	case a < 97:
		s.restart(t, i)
	default:
		if err := check.PendingOrder(s.stores()...); err != nil {
			t.Fatal(err)
		}
	}
}

func (s *sim) stores() []*collections.Store {
	out := make([]*collections.Store, len(s.reps))
	for i, f := range s.reps {
		out[i] = f.s
	}
	return out
}

// settle delivers everything, lets every clock pass every op and
// exchanges heartbeats, so every op becomes stable everywhere.
func (s *sim) settle(t *rapid.T) {
	for _, m := range s.flight {
		s.deliver(t, m)
	}
	s.flight = nil
	for i := range s.reps {
		s.catchup(t, i)
	}
	if err := check.PendingOrder(s.stores()...); err != nil {
		t.Fatal(err)
	}
	s.now = s.now.Add(2 * time.Minute) // beyond every skew and MaxDrift
	var hbs []*tempestpb.Heartbeat
	for _, f := range s.reps {
		hbs = append(hbs, f.s.Heartbeat())
	}
	for _, f := range s.reps {
		for _, hb := range hbs {
			f.s.ObserveHeartbeat(hb)
		}
		f.s.Compact()
	}
}

func (s *sim) verify(t *rapid.T) {
	stores := s.stores()
	if err := check.Converged(stores...); err != nil {
		t.Fatal(err)
	}
	if err := s.checker.Err(); err != nil {
		t.Fatal(err)
	}
	ref := s.reps[0]
	for i, f := range s.reps {
		if f.s.Pending() != 0 {
			t.Fatalf("%s: %d ops still tentative after settling", s.names[i], f.s.Pending())
		}
		if f.s.Applied() != uint64(len(s.log)) {
			t.Fatalf("%s applied %d ops, %d were committed", s.names[i], f.s.Applied(), len(s.log))
		}
		if st := f.s.Stats(); st.LateOps != 0 {
			t.Fatalf("%s: %d ops arrived behind the stable point", s.names[i], st.LateOps)
		}
		if !maps.Equal(collect(f.m), collect(ref.m)) ||
			!slices.Equal(slices.Collect(f.l.Values()), slices.Collect(ref.l.Values())) ||
			!slices.Equal(slices.Collect(f.set.All()), slices.Collect(ref.set.All())) ||
			f.c.Value() != ref.c.Value() {
			t.Fatalf("%s content differs from %s", s.names[i], s.names[0])
		}
		if f.s.StablePoint() != ref.s.StablePoint() {
			t.Fatalf("stable points differ")
		}
	}
	// Every replica folded every op of every item, in one order: the
	// concatenation of its incarnations' records is the same sequence.
	perItem := map[string]int{}
	for _, op := range s.log {
		perItem[op.GetCollection()+"/"+string(op.GetItem())]++
	}
	folded := 0
	for _, ref := range s.checker.Items() {
		orders := s.checker.Orders(ref.Collection, ref.Item)
		var want []collections.OpID
		for i := range s.reps {
			var got []collections.OpID
			for _, label := range s.labels[i] {
				got = append(got, orders[label]...)
			}
			if i == 0 {
				want = got
				folded += len(got)
			} else if !slices.Equal(got, want) {
				t.Fatalf("%s/%q: %s folded %v, %s folded %v", ref.Collection, ref.Item, s.names[i], got, s.names[0], want)
			}
		}
		if n := perItem[ref.Collection+"/"+string(ref.Item)]; len(want) != n {
			t.Fatalf("%s/%q: %d ops folded, %d committed", ref.Collection, ref.Item, len(want), n)
		}
	}
	if folded != len(s.log) {
		t.Fatalf("%d ops folded, %d committed", folded, len(s.log))
	}
}

// TestPropertyConvergence: whatever the delivery order, duplication, loss
// (repaired by catch-up), delay, clock skew, compaction and restarts,
// every replica ends with identical values, identical per-item order and
// a complete, consistent stable history. More cases: -rapid.checks=N.
func TestPropertyConvergence(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := newSim(t)
		steps := rapid.IntRange(1, 250).Draw(t, "steps")
		for range steps {
			s.step(t)
		}
		s.settle(t)
		s.verify(t)
	})
}

// TestPropertyArrivalOrderIrrelevant: one fixed set of ops from several
// origins, delivered to fresh replicas in random orders with duplicates,
// gives equal digests and per-item histories (no stability at all: pure
// rollback/replay).
func TestPropertyArrivalOrderIrrelevant(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := newSim(t)
		for range rapid.IntRange(1, 60).Draw(t, "updates") {
			s.update(t, rapid.IntRange(0, len(s.reps)-1).Draw(t, "replica"))
			s.now = s.now.Add(time.Duration(rapid.IntRange(0, 3).Draw(t, "advance")) * time.Millisecond)
		}
		var stores []*collections.Store
		for r := range 3 {
			f := newFixture(t, fmt.Sprintf("observer/%d", r), nil, noAuto)
			f.s.SetOrigins(s.names)
			order := rapid.Permutation(s.log).Draw(t, "order")
			for _, op := range order {
				if _, err := f.s.Deliver(proto.Clone(op).(*tempestpb.Op)); err != nil {
					t.Fatal(err)
				}
				if rapid.IntRange(0, 9).Draw(t, "dup") == 0 {
					if ok, _ := f.s.Deliver(proto.Clone(op).(*tempestpb.Op)); ok {
						t.Fatal("duplicate applied")
					}
				}
			}
			stores = append(stores, f.s)
		}
		if err := check.Converged(stores...); err != nil {
			t.Fatal(err)
		}
		if err := check.PendingOrder(stores...); err != nil {
			t.Fatal(err)
		}
		for _, ref := range stores[0].Tentative() {
			for _, st := range stores[1:] {
				if !slices.Equal(st.ItemOrder(ref.Collection, ref.Item), stores[0].ItemOrder(ref.Collection, ref.Item)) {
					t.Fatalf("history of %s/%q differs", ref.Collection, ref.Item)
				}
			}
		}
	})
}
