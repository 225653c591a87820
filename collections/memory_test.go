package collections_test

import (
	"runtime"
	"runtime/metrics"
	"strconv"
	"testing"

	"github.com/tempestrt/tempest/collections"
)

// liveHeap is the bytes of live heap objects after a full collection.
func liveHeap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestBytesPerItem: what one item of a large replica costs in memory once
// its ops are folded, measured as live heap (deterministic: allocation
// sizes do not depend on timing). The items are cart-like: a key of ~11
// bytes and a small JSON object of ~12 bytes, ~43 bytes encoded in a
// snapshot. The bound catches an item growing back (history kept after
// it is empty, a field per item that should not be there); what is left
// is the item (128 bytes), its key and value bytes and its map entry.
func TestBytesPerItem(t *testing.T) {
	const n = 100_000
	before := liveHeap()
	f := cartReplica(t, n)
	if p := f.s.Pending(); p != 0 {
		t.Fatalf("%d ops still tentative", p)
	}
	// A snapshot begun and finished, as the scheduler does: it must not
	// leave anything per item behind either.
	st, err := f.s.BeginSnapshot(collections.SnapshotStreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range st.All(0, 0) {
		if err != nil {
			t.Fatal(err)
		}
	}
	per := float64(liveHeap()-before) / n
	t.Logf("%.0f bytes per item (%d items)", per, n)
	if per > 260 {
		t.Fatalf("%.0f bytes of live heap per item, want at most 260", per)
	}
	runtime.KeepAlive(f)
}

// BenchmarkGCPerItem reports what a large replica costs the garbage
// collector: the heap objects per item and the GC CPU of one full
// collection per item (from runtime/metrics), for replicas of cart-like
// items as TestBytesPerItem builds them. A full cycle's mark work is what
// slows a node holding millions of items while it runs (ARCHITECTURE.md,
// "The Go runtime"), so item layouts are compared by these figures.
//
//	go test ./collections -run '^$' -bench GCPerItem -benchtime 3x
func BenchmarkGCPerItem(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			objsBefore := liveObjects()
			f := cartReplica(b, n)
			objs := float64(liveObjects()-objsBefore) / float64(n)
			b.ResetTimer()
			var gcCPU float64
			for range b.N {
				before := gcCPUSeconds()
				runtime.GC()
				gcCPU += gcCPUSeconds() - before
			}
			b.StopTimer()
			b.ReportMetric(objs, "objects/item")
			b.ReportMetric(gcCPU*1e9/float64(b.N)/float64(n), "gc-cpu-ns/item")
			runtime.KeepAlive(f)
		})
	}
}

// liveObjects is the number of live heap objects after a full collection.
func liveObjects() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapObjects
}

// gcCPUSeconds is the CPU the GC has spent so far (an estimate the
// runtime keeps: mark workers, assists and pauses).
func gcCPUSeconds() float64 {
	s := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}}
	metrics.Read(s)
	return s[0].Value.Float64()
}

// cartReplica is a replica of n cart-like items (a key of ~11 bytes, a small
// JSON object of ~12 bytes), their ops folded.
func cartReplica(t tb, n int) *fixture {
	f := newFixture(t, "a", nil)
	carts := collections.NewMap[string, map[string]int64](f.s, "carts")
	for lo := 0; lo < n; lo += 1000 {
		f.update(t, func() {
			for i := lo; i < min(lo+1000, n); i++ {
				carts.Put("user-"+strconv.Itoa(i), map[string]int64{"item-0": 1})
			}
		})
	}
	f.s.Compact()
	return f
}
