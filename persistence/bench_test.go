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
