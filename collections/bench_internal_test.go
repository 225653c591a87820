package collections

import (
	"fmt"
	"testing"
	"time"

	"github.com/tempestrt/tempest/proto/tempestpb"
)

// BenchmarkReplay measures rollback/replay: an item has a tentative
// history of `depth` ops (nothing is stable: a third origin is silent);
// each iteration delivers a late op (public Deliver path) and then takes
// it out again (the path retraction uses), each of which replays the ops
// after it (rollback reverts them newest first, replay re-applies them).
// "front" inserts before every op (depth ops reverted and re-applied, twice
// per iteration); "late-by-1" inserts before the last op. The list history
// holds a list of 10 000 elements, to show that rollback never copies it.
func BenchmarkReplay(b *testing.B) {
	type kindCase struct {
		name string
		coll string
		op   func(i int) *tempestpb.Op
	}
	cases := []kindCase{
		{"map-put", "m", func(i int) *tempestpb.Op {
			return &tempestpb.Op{Collection: "m", Item: []byte("k"), Kind: tempestpb.OpKind_OP_PUT, Value: fmt.Appendf(nil, "%d", i)}
		}},
		{"map-userop", "m", func(i int) *tempestpb.Op {
			return &tempestpb.Op{Collection: "m", Item: []byte("k"), Kind: tempestpb.OpKind_OP_USER, UserOp: "add", Value: []byte(`{"n":1}`)}
		}},
		{"list-append", "l", func(i int) *tempestpb.Op {
			return &tempestpb.Op{Collection: "l", Kind: tempestpb.OpKind_OP_LIST_APPEND, Value: []byte(`"message"`)}
		}},
		{"list-insert-front", "l", func(i int) *tempestpb.Op {
			return &tempestpb.Op{Collection: "l", Kind: tempestpb.OpKind_OP_LIST_INSERT, Value: []byte(`"message"`)}
		}},
	}
	for _, kc := range cases {
		for _, depth := range []int{10, 100, 1000} {
			for _, where := range []string{"front", "late-by-1"} {
				b.Run(fmt.Sprintf("%s/depth=%d/%s", kc.name, depth, where), func(b *testing.B) {
					s, err := NewStore(Config{Service: "svc", Replica: "a", Now: func() time.Time { return time.UnixMilli(1_000_000) }})
					if err != nil {
						b.Fatal(err)
					}
					m := NewMap[string, int](s, "m")
					RegisterOp(m, "add", func(cur int, _ bool, a struct{ N int }) (int, bool) { return cur + a.N, true })
					l := NewList[string](s, "l")
					if _, err := s.Update(func() error {
						for range 10_000 {
							l.Append("old")
						}
						return nil
					}); err != nil {
						b.Fatal(err)
					}
					s.SetOrigins([]string{"a", "b", "silent"})
					for i := range depth {
						o := kc.op(i)
						o.Service, o.Origin, o.Seq, o.WallMs = "svc", "b", uint64(i+1), 2_000_000+2*uint64(i)
						if _, err := s.Deliver(o); err != nil {
							b.Fatal(err)
						}
					}
					c := s.colls[kc.coll]
					var key []byte
					if c.kind.keyed() {
						key = []byte("k")
					}
					it := c.lookup(key)
					wall := uint64(1_000_001) // after the 10 000 own appends (folded), before b's ops
					if where == "late-by-1" {
						wall = 2_000_000 + 2*uint64(depth-1) - 1
					}
					if len(it.pending()) != depth {
						b.Fatalf("history depth %d before, want %d", len(it.pending()), depth)
					}
					before := s.stats.Replayed
					b.ResetTimer()
					for i := range b.N {
						o := kc.op(i)
						o.Service, o.Origin, o.Seq, o.WallMs, o.Logical = "svc", "z", uint64(i+1), wall, uint32(i)
						if _, err := s.Deliver(o); err != nil {
							b.Fatal(err)
						}
						idx := it.indexOf(o)
						s.remove(it, idx)
						s.pending--
						if idx == 0 {
							s.reheap(it)
						}
					}
					b.StopTimer()
					if len(it.pending()) != depth {
						b.Fatalf("history depth %d, want %d", len(it.pending()), depth)
					}
					if replayed := s.stats.Replayed - before; replayed > 0 {
						b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(replayed), "ns/replayed-op")
						b.ReportMetric(float64(replayed)/float64(b.N), "replayed-ops/op")
					}
				})
			}
		}
	}
}
