package collections_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tempestrt/tempest/collections"
	"github.com/tempestrt/tempest/proto/tempestpb"
)

// BenchmarkDeliverInOrder: applying a peer's ops that arrive in order (the
// common case: no replay), with stability advancing and ops being folded
// as they would in a running group.
func BenchmarkDeliverInOrder(b *testing.B) {
	kinds := map[string]func(i int) *tempestpb.Op{
		"map-put": func(i int) *tempestpb.Op {
			return &tempestpb.Op{Collection: "m", Item: []byte(strconv.Itoa(i % 1000)), Kind: tempestpb.OpKind_OP_PUT, Value: []byte(strconv.Itoa(i))}
		},
		"map-userop": func(i int) *tempestpb.Op {
			return &tempestpb.Op{Collection: "m", Item: []byte(strconv.Itoa(i % 1000)), Kind: tempestpb.OpKind_OP_USER, UserOp: "add", Value: []byte(`{"n":1}`)}
		},
		"list-append": func(i int) *tempestpb.Op {
			return &tempestpb.Op{Collection: "l", Kind: tempestpb.OpKind_OP_LIST_APPEND, Value: []byte(`"message"`)}
		},
		"counter": func(i int) *tempestpb.Op {
			return &tempestpb.Op{Collection: "c", Kind: tempestpb.OpKind_OP_COUNTER_ADD, Delta: 1}
		},
	}
	for _, name := range []string{"map-put", "map-userop", "list-append", "counter"} {
		b.Run(name, func(b *testing.B) {
			f := newFixture(b, "a", nil)
			f.s.SetOrigins([]string{"a", "b"})
			ops := make([]*tempestpb.Op, b.N)
			for i := range ops {
				o := kinds[name](i)
				o.Service, o.Origin, o.Seq, o.WallMs = "svc", "b", uint64(i+1), 1_000_000+uint64(i)
				ops[i] = o
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i, o := range ops {
				if _, err := f.s.Deliver(o); err != nil {
					b.Fatal(err)
				}
				if i%64 == 63 { // a's heartbeat: everything up to b's op is stable
					f.s.ObserveHeartbeat(&tempestpb.Heartbeat{Origin: "a", WallMs: 1_000_000 + uint64(i)})
				}
			}
			b.StopTimer()
			if f.s.Pending() > 64 {
				b.Fatalf("pending %d: stability did not advance", f.s.Pending())
			}
		})
	}
}

// BenchmarkUpdate: one handler run with one mutation, including op
// creation, local apply and (alone, or with two idle peers whose
// heartbeats arrive every 64 updates) folding.
func BenchmarkUpdate(b *testing.B) {
	for _, peers := range []int{0, 2} {
		b.Run(fmt.Sprintf("peers=%d", peers), func(b *testing.B) {
			f := newFixture(b, "a", nil)
			origins := []string{"a"}
			for p := range peers {
				origins = append(origins, fmt.Sprintf("p%d", p))
			}
			f.s.SetOrigins(origins)
			keys := make([]string, 1000)
			for i := range keys {
				keys[i] = strconv.Itoa(i)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if _, err := f.s.Update(func() error { f.m.Put(keys[i%1000], i); return nil }); err != nil {
					b.Fatal(err)
				}
				if peers > 0 && i%64 == 63 {
					now := f.s.Now()
					for _, p := range origins[1:] {
						f.s.ObserveHeartbeat(&tempestpb.Heartbeat{Origin: p, WallMs: now.WallMs, Logical: now.Logical})
					}
				}
			}
		})
	}
}

// BenchmarkDigest: a store of 10 000 map items and a 1 000-element list;
// "clean" nothing changed since the last digest, "one-changed" one item
// changed (the incremental case: what a status poll after a few writes
// costs), "all-changed" every map item changed.
func BenchmarkDigest(b *testing.B) {
	setup := func(b *testing.B) *fixture {
		f := newFixture(b, "a", nil)
		f.update(b, func() {
			for i := range 10_000 {
				f.m.Put(strconv.Itoa(i), i)
			}
			for i := range 1000 {
				f.l.Append(strconv.Itoa(i))
			}
		})
		f.s.Digest()
		return f
	}
	b.Run("clean", func(b *testing.B) {
		f := setup(b)
		b.ResetTimer()
		for range b.N {
			f.s.Digest()
		}
	})
	b.Run("one-changed", func(b *testing.B) {
		f := setup(b)
		b.ResetTimer()
		for i := range b.N {
			b.StopTimer()
			f.update(b, func() { f.m.Put("17", i) })
			b.StartTimer()
			f.s.Digest()
		}
	})
	b.Run("all-changed", func(b *testing.B) {
		f := setup(b)
		b.ResetTimer()
		for i := range b.N {
			b.StopTimer()
			f.update(b, func() {
				for k := range 10_000 {
					f.m.Put(strconv.Itoa(k), i+k)
				}
			})
			b.StartTimer()
			f.s.Digest()
		}
	})
}

// streamBenchFixture is a store of 1 000 000 map entries (plus 250 000 set
// elements and a 100 000-element list), built once per process.
var streamBenchFixture *fixture

func bigBenchFixture(b *testing.B) *fixture {
	if streamBenchFixture == nil {
		streamBenchFixture = bigFixture(b, 1_000_000)
		streamBenchFixture.s.Compact()
	}
	return streamBenchFixture
}

// BenchmarkSnapshotStream: a whole snapshot of a 1 000 000-item store,
// produced as a stream with the default chunk budgets (Next, then
// proto.Marshal of the chunk, as a scheduler turn would do it) or at once
// (Snapshot then Marshal: one turn). Reported: ns/item over the whole
// stream, and the longest single Next(+Marshal) call, the figure that
// bounds a scheduler turn, with its p99. "with-writes" puts 100 entries between chunks,
// so items not yet streamed are captured as pre-images. Run with
// -benchtime=1x: one iteration streams a million items.
func BenchmarkSnapshotStream(b *testing.B) {
	f := bigBenchFixture(b)
	stream := func(b *testing.B, marshal bool, writes int, reuse bool) {
		var items, chunks, preImages uint64
		var longest time.Duration
		var longestBytes int
		var took []time.Duration
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			st, err := f.s.BeginSnapshot(collections.SnapshotStreamOptions{Reuse: reuse})
			if err != nil {
				b.Fatal(err)
			}
			for j := 0; ; j++ {
				if writes > 0 {
					b.StopTimer()
					f.update(b, func() {
						for k := range writes {
							f.m.Put(strconv.Itoa((j*7919+k*104729)%1_000_000), i)
						}
					})
					b.StartTimer()
				}
				t0 := time.Now()
				chunk, last, err := st.Next(0, 0)
				if err != nil {
					b.Fatal(err)
				}
				if marshal {
					if _, err := proto.Marshal(chunk); err != nil {
						b.Fatal(err)
					}
				}
				d := time.Since(t0)
				took = append(took, d)
				if d > longest {
					longest, longestBytes = d, proto.Size(chunk)
				}
				if last {
					break
				}
			}
			s := st.Stats()
			items, chunks, preImages = items+s.Items, chunks+s.Chunks, preImages+s.PreImages
		}
		b.StopTimer()
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(items), "ns/item")
		slices.Sort(took)
		b.ReportMetric(float64(took[len(took)/2].Microseconds()), "p50-µs/next")
		b.ReportMetric(float64(took[len(took)*99/100].Microseconds()), "p99-µs/next")
		b.ReportMetric(float64(longest.Microseconds()), "max-µs/next")
		b.ReportMetric(float64(longestBytes), "max-chunk-bytes")
		b.ReportMetric(float64(chunks)/float64(b.N), "chunks/op")
		b.ReportMetric(float64(preImages)/float64(b.N), "pre-images/op")
	}
	b.Run("next", func(b *testing.B) { stream(b, false, 0, false) })
	b.Run("next+marshal", func(b *testing.B) { stream(b, true, 0, false) })
	// reuse: SnapshotStreamOptions.Reuse, as a clone's scheduler streams
	// (compare B/op with next+marshal).
	b.Run("next+marshal/reuse", func(b *testing.B) { stream(b, true, 0, true) })
	b.Run("next+marshal/with-writes", func(b *testing.B) { stream(b, true, 100, false) })
	// delta+marshal: 10 000 random entries changed, then a delta stream of
	// them (what a node at 1M items writes every SnapshotEvery ops under
	// uniform load); ns/item over the delta's items.
	b.Run("delta+marshal", func(b *testing.B) {
		full, err := f.s.BeginSnapshot(collections.SnapshotStreamOptions{})
		if err != nil {
			b.Fatal(err)
		}
		for _, err := range full.All(0, 0) {
			if err != nil {
				b.Fatal(err)
			}
		}
		rng := rand.New(rand.NewPCG(1, 2))
		var items uint64
		var busy time.Duration
		for i := range b.N {
			f.update(b, func() {
				for range 10_000 {
					f.m.Put(strconv.Itoa(rng.IntN(1_000_000)), i)
				}
			})
			t0 := time.Now()
			st, err := f.s.BeginSnapshot(collections.SnapshotStreamOptions{Delta: true})
			if err != nil {
				b.Fatal(err)
			}
			if !st.Delta() {
				b.Fatal("not a delta")
			}
			for chunk, err := range st.All(0, 0) {
				if err != nil {
					b.Fatal(err)
				}
				if _, err := proto.Marshal(chunk); err != nil {
					b.Fatal(err)
				}
			}
			busy += time.Since(t0)
			items += st.Stats().Items
		}
		b.ReportMetric(float64(busy.Nanoseconds())/float64(items), "ns/item")
		b.ReportMetric(float64(items)/float64(b.N), "items/op")
	})
	b.Run("whole-snapshot+marshal", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := proto.Marshal(f.s.Snapshot()); err != nil {
				b.Fatal(err)
			}
		}
	})
	// restore: unmarshal and restore the stream's chunks into a fresh
	// store, as a state transfer does (every value decoded); trusted, as a
	// restart does from its own disk (ns/item over the whole stream);
	// encoded: the chunks' bytes given to AddEncoded (a restart, trusted:
	// quiet items decoded without a message each).
	restore := func(b *testing.B, trusted, encoded bool) {
		st, err := f.s.BeginSnapshot(collections.SnapshotStreamOptions{})
		if err != nil {
			b.Fatal(err)
		}
		hdr, err := proto.Marshal(st.Header())
		if err != nil {
			b.Fatal(err)
		}
		var chunks [][]byte
		for chunk, err := range st.All(0, 0) {
			if err != nil {
				b.Fatal(err)
			}
			data, err := proto.Marshal(chunk)
			if err != nil {
				b.Fatal(err)
			}
			chunks = append(chunks, data)
		}
		items := st.Stats().Items
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			fresh := newFixture(b, "a", nil)
			h := &tempestpb.SnapshotHeader{}
			if err := proto.Unmarshal(hdr, h); err != nil {
				b.Fatal(err)
			}
			rs, err := fresh.s.BeginRestore(h)
			if err != nil {
				b.Fatal(err)
			}
			if trusted {
				rs.Trusted()
			}
			for _, data := range chunks {
				if encoded {
					if _, err := rs.AddEncoded(data); err != nil {
						b.Fatal(err)
					}
					continue
				}
				c := &tempestpb.SnapshotChunk{}
				if err := proto.Unmarshal(data, c); err != nil {
					b.Fatal(err)
				}
				if err := rs.Add(c); err != nil {
					b.Fatal(err)
				}
			}
			if err := rs.Finish(); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(items*uint64(b.N)), "ns/item")
	}
	b.Run("restore", func(b *testing.B) { restore(b, false, false) })
	b.Run("restore-trusted", func(b *testing.B) { restore(b, true, false) })
	b.Run("restore-trusted-encoded", func(b *testing.B) { restore(b, true, true) })
	b.Run("begin", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			st, err := f.s.BeginSnapshot(collections.SnapshotStreamOptions{})
			if err != nil {
				b.Fatal(err)
			}
			st.Close()
		}
	})
}
