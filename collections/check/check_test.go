package check_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tempestrt/tempest/collections"
	"github.com/tempestrt/tempest/collections/check"
	"github.com/tempestrt/tempest/proto/tempestpb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func id(o string, s uint64) collections.OpID { return collections.OpID{Origin: o, Seq: s} }

func record(c *check.OrderChecker, replica string, item string, ids ...collections.OpID) {
	for _, x := range ids {
		c.Record(replica, "m", []byte(item), x)
	}
}

func TestCheckerAcceptsConsistentOrders(t *testing.T) {
	c := check.NewOrderChecker()
	a, b, x, y := id("a", 1), id("b", 1), id("a", 2), id("c", 1)
	record(c, "r1", "k", a, b, x, y)
	record(c, "r2", "k", a, b)   // folded less
	record(c, "r3#2", "k", x, y) // restarted mid-stream
	record(c, "r4", "k", b, y)   // a subset with gaps
	record(c, "r1", "j", y, a)   // another item may order the same ops differently
	record(c, "r2", "j", y, a)
	if err := c.Err(); err != nil {
		t.Fatal(err)
	}
	if c.Records() != 14 || len(c.Items()) != 2 {
		t.Fatalf("records %d items %v", c.Records(), c.Items())
	}
}

func TestCheckerCatchesOppositeOrder(t *testing.T) {
	c := check.NewOrderChecker()
	a, b := id("a", 1), id("b", 1)
	record(c, "r1", "k", a, b)
	record(c, "r2", "k", b, a)
	vs := c.Violations()
	if len(vs) != 1 {
		t.Fatalf("violations %v", vs)
	}
	v := vs[0]
	if v.Collection != "m" || string(v.Item) != "k" || v.ReplicaA != "r1" || v.ReplicaB != "r2" || v.First != a || v.Second != b {
		t.Fatalf("violation %+v", v)
	}
	err := c.Err()
	if err == nil || !strings.Contains(err.Error(), "r1 applied a#1 before b#1") {
		t.Fatalf("err %v", err)
	}
}

func TestCheckerCatchesNonAdjacentInversion(t *testing.T) {
	// r1: a b c, r2: c a b — no adjacent pair of r1 is swapped in r2's
	// adjacent pairs alone, but a/c (and b/c) are in opposite orders.
	c := check.NewOrderChecker()
	a, b, x := id("a", 1), id("b", 1), id("c", 1)
	record(c, "r1", "k", a, b, x)
	record(c, "r2", "k", x, a, b)
	vs := c.Violations()
	if len(vs) != 1 || vs[0].First != b || vs[0].Second != x {
		t.Fatalf("violations %v", vs)
	}
}

func TestCheckerCatchesDoubleApply(t *testing.T) {
	c := check.NewOrderChecker()
	a := id("a", 1)
	record(c, "r1", "k", a, id("b", 1), a)
	vs := c.Violations()
	if len(vs) != 1 || vs[0].ReplicaA != "r1" || vs[0].ReplicaB != "r1" || vs[0].First != a {
		t.Fatalf("violations %v", vs)
	}
}

func TestCheckerConcurrentRecord(t *testing.T) {
	c := check.NewOrderChecker()
	var wg sync.WaitGroup
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hook := c.Hook(fmt.Sprintf("r%d", r))
			for i := range 1000 {
				hook("m", []byte{byte(i % 7)}, id("o", uint64(i)))
			}
		}()
	}
	wg.Wait()
	if c.Records() != 4000 {
		t.Fatal(c.Records())
	}
	if err := c.Err(); err != nil {
		t.Fatal(err)
	}
}

// store builds a replica of service "svc" with one map, its OnStable wired
// to the checker.
func store(t *testing.T, replica string, c *check.OrderChecker, origins ...string) (*collections.Store, *collections.Map[string, string]) {
	t.Helper()
	now := time.UnixMilli(1_700_000_000_000)
	s, err := collections.NewStore(collections.Config{
		Service: "svc", Replica: replica, OnStable: c.Hook(replica),
		Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	m := collections.NewMap[string, string](s, "m")
	s.SetOrigins(origins)
	return s, m
}

func put(origin string, seq, wall uint64, v string) *tempestpb.Op {
	return &tempestpb.Op{Service: "svc", Collection: "m", Item: []byte("k"), Kind: tempestpb.OpKind_OP_PUT,
		Value: []byte(`"` + v + `"`), Origin: origin, Seq: seq, WallMs: wall}
}

func deliver(t *testing.T, s *collections.Store, ops ...*tempestpb.Op) {
	t.Helper()
	for _, o := range ops {
		if _, err := s.Deliver(o); err != nil {
			t.Fatal(err)
		}
	}
}

func hb(origin string, seq, wall uint64) *tempestpb.Heartbeat {
	return &tempestpb.Heartbeat{Origin: origin, Seq: seq, WallMs: wall}
}

// TestCheckersCatchALyingHeartbeat: origin z promises (heartbeat) that it
// has nothing before t=500, then sends an op at t=150. Replica A believed
// the promise and folded x's and y's ops first; replica B got z's op in
// time. Both verifiers must notice.
func TestCheckersCatchALyingHeartbeat(t *testing.T) {
	oc := check.NewOrderChecker()
	origins := []string{"x", "y", "z"}
	a, am := store(t, "A", oc, origins...)
	b, _ := store(t, "B", oc, origins...)
	x1, y1, z1 := put("x", 1, 100, "x"), put("y", 1, 200, "y"), put("z", 1, 150, "z")

	deliver(t, a, x1, y1)
	for _, s := range []*collections.Store{a, b} {
		s.ObserveHeartbeat(hb("x", 1, 600))
		s.ObserveHeartbeat(hb("y", 1, 600))
	}
	a.ObserveHeartbeat(hb("z", 0, 500)) // the lie
	deliver(t, a, z1)                   // too late for A: it already folded y1
	deliver(t, b, x1, z1, y1)
	b.ObserveHeartbeat(hb("z", 1, 500))
	if a.Pending() != 0 || b.Pending() != 0 {
		t.Fatalf("pending %d %d", a.Pending(), b.Pending())
	}
	if a.Stats().LateMisplaced != 1 {
		t.Fatal("A did not count the late op")
	}
	if v, _ := am.Get("k"); v != "z" {
		t.Fatalf("A has %q", v)
	}

	vs := oc.Violations()
	if len(vs) != 1 || vs[0].First != collections.ID(y1) || vs[0].Second != collections.ID(z1) || vs[0].ReplicaA != "A" || vs[0].ReplicaB != "B" {
		t.Fatalf("order checker: %v", vs)
	}
	err := check.Converged(a, b)
	if err == nil || !strings.Contains(err.Error(), `m["k"]: A has "z", B has "y"`) {
		t.Fatalf("Converged: %v", err)
	}
	diffs := check.Diff(a, b)
	if len(diffs) != 1 || diffs[0].A != `"z"` || diffs[0].B != `"y"` {
		t.Fatalf("diff %v", diffs)
	}
}

func TestConvergedAndPendingOrderOnHealthyReplicas(t *testing.T) {
	oc := check.NewOrderChecker()
	a, _ := store(t, "A", oc, "x", "y")
	b, _ := store(t, "B", oc, "x", "y")
	ops := []*tempestpb.Op{put("x", 1, 100, "1"), put("y", 1, 90, "2"), put("x", 2, 300, "3")}
	deliver(t, a, ops...)
	deliver(t, b, ops[2], ops[0], ops[1])
	if err := check.Converged(a, b); err != nil {
		t.Fatal(err)
	}
	if err := check.PendingOrder(a, b); err != nil {
		t.Fatal(err)
	}
	if check.Converged(a) != nil || check.Converged() != nil {
		t.Fatal("fewer than two stores always converge")
	}
	// A store declaring another collection differs.
	c, _ := store(t, "C", oc, "x", "y")
	collections.NewCounter(c, "extra")
	deliver(t, c, ops...)
	if len(check.Diff(a, c)) != 1 {
		t.Fatal("undeclared collection not reported")
	}
}
