package persistence

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkAppend measures Append throughput on the real disk (b.TempDir)
// with 1, 8 and 64 concurrent appenders, each appending one 128-byte record
// per call to its own clone, under each sync policy. Reported: records/s,
// WAL fsyncs per Append, and Appends served per group commit.
//
//	go test ./persistence -run '^$' -bench Append -benchtime 2s
func BenchmarkAppend(b *testing.B) {
	for _, p := range []SyncPolicy{SyncAlways, SyncInterval, SyncNone} {
		for _, n := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("sync=%s/appenders=%d", p, n), func(b *testing.B) {
				o := DefaultOptions(b.TempDir())
				o.Sync = p
				db, err := Open(o)
				if err != nil {
					b.Fatal(err)
				}
				defer db.Close()
				data := make([]byte, 128)
				var next atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				start := time.Now()
				for i := 0; i < n; i++ {
					wg.Go(func() {
						c := db.Clone(fmt.Sprintf("bench/%d", i))
						origin := fmt.Sprintf("o%d", i)
						for seq := uint64(1); next.Add(1) <= int64(b.N); seq++ {
							if _, err := c.Append(context.Background(), Record{Origin: origin, Seq: seq, Data: data}); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				elapsed := time.Since(start)
				b.StopTimer()
				st := db.Stats()
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
				b.ReportMetric(float64(st.WALSyncs)/float64(b.N), "fsyncs/op")
				b.ReportMetric(st.MeanBatchOps, "appends/commit")
			})
		}
	}
}

// BenchmarkStateDeltaEnd measures what a delta state's end costs the
// committer, on the real disk: its items (held in memory since they came)
// go into pebble in the end's one batch, which every clone's writes queue
// behind. A state of 200k items, then deltas of 2,500 and 10,000 (a clone
// snapshots every 10,000 ops by default) items of 50 bytes; reported: the
// end's latency from submission to durable (SyncAlways), and per item.
//
//	go test ./persistence -run '^$' -bench StateDeltaEnd -benchtime 20x
func BenchmarkStateDeltaEnd(b *testing.B) {
	for _, n := range []int{2500, 10000} {
		b.Run(fmt.Sprintf("items=%d", n), func(b *testing.B) {
			o := DefaultOptions(b.TempDir())
			db, err := Open(o)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			c := db.Clone("bench/1")
			w := c.NewWriter(1 << 20)
			val := make([]byte, 50)
			items := func(lo, hi int) []StateItem {
				out := make([]StateItem, 0, hi-lo)
				for i := lo; i < hi; i++ {
					out = append(out, StateItem{Collection: "carts", Key: fmt.Appendf(nil, "u%d", (i*7919)%200000), Value: val})
				}
				return out
			}
			wait := func(submit func(func(uint64, error)) error) time.Duration {
				done := make(chan error, 1)
				t0 := time.Now()
				if err := submit(func(_ uint64, err error) { done <- err }); err != nil {
					b.Fatal(err)
				}
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				return time.Since(t0)
			}
			seq := uint64(0)
			step := func(delta bool, lo, hi int) time.Duration {
				seq++
				wait(func(cb func(uint64, error)) error { return w.Append([]Record{{Origin: "o", Seq: seq, Data: val}}, cb) })
				wait(func(cb func(uint64, error)) error { return w.StateBegin([]byte("h"), delta, cb) })
				for i := lo; i < hi; i += 256 {
					wait(func(cb func(uint64, error)) error { return w.StateItems(items(i, min(i+256, hi)), cb) })
				}
				return wait(w.StateEnd)
			}
			step(false, 0, 200000)
			b.ResetTimer()
			var total time.Duration
			for i := 0; i < b.N; i++ {
				total += step(true, i*n, (i+1)*n)
			}
			b.StopTimer()
			b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "end-ms")
			b.ReportMetric(float64(total.Nanoseconds())/float64(b.N*n), "end-ns/item")
		})
	}
}
