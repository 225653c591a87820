package schedq

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkPushPop measures one Push plus one Pop with n requests queued
// (8 methods; half updates, already below the stable watermark so they are
// released on Pop; deadlines far enough that nothing is shed).
func BenchmarkPushPop(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		b.Run(fmt.Sprintf("queued=%d", n), func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.MaxQueue = n + 1
			q, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			methods := []string{"m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7"}
			reqs := make([]Request, n+b.N)
			for i := range reqs {
				reqs[i] = Request{
					ID:       uint64(i),
					Kind:     Kind(i % 2),
					Method:   methods[i%len(methods)],
					Arrival:  t0,
					Deadline: t0.Add(time.Hour + time.Duration(rng.Int64N(int64(time.Hour)))),
				}
			}
			for i := 0; i < n; i++ {
				if err := q.Push(t0, &reqs[i]); err != nil {
					b.Fatal(err)
				}
			}
			q.Pop(t0, 1) // release the prefilled updates
			if err := q.Push(t0, &reqs[n]); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := q.Push(t0, &reqs[n+i]); err != nil {
					b.Fatal(err)
				}
				if next, _, _ := q.Pop(t0, 1); next == nil {
					b.Fatal("nothing popped")
				}
			}
			b.StopTimer()
			if q.Len() != n+1-1 {
				b.Fatalf("len %d", q.Len())
			}
		})
	}
}
