package actors_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tempestrt/tempest/actors"
	"github.com/tempestrt/tempest/examples/cart"
	"github.com/tempestrt/tempest/persistence"
)

// BenchmarkSchedulerCall measures the clone scheduler path without HTTP:
// Node.Call -> EDF queue -> handler -> (update) op log + multicast -> answer,
// for queries and updates, from one caller and from many. "add-hot" sends
// every update to one cart (one item: concurrent ops from the three clones
// arrive out of order and are rolled back and replayed); "add" spreads them
// over 1000 carts. callers is the number of calling goroutines
// (parallelism times GOMAXPROCS). Persistence is pebble on an in-memory FS,
// so the figure is the runtime's own cost, not the disk's (go run
// ./cmd/tempest-bench http measures with a real disk).
//
//	go test -run '^$' -bench SchedulerCall ./actors
func BenchmarkSchedulerCall(b *testing.B) {
	for _, method := range []string{"get", "add", "add-hot"} {
		for _, par := range []int{1, 32} {
			b.Run(fmt.Sprintf("%s/callers=%d", method, par*runtime.GOMAXPROCS(0)), func(b *testing.B) {
				cfg := actors.TestConfig(b.TempDir())
				cfg.Services = []*actors.Service{cart.Service()}
				cfg.Persistence = persistence.InMemoryOptions()
				n, err := actors.Start(cfg)
				if err != nil {
					b.Fatal(err)
				}
				defer func() { _ = n.Stop() }()
				bodies := make([][]byte, 1000)
				for i := range bodies {
					switch method {
					case "get":
						bodies[i] = fmt.Appendf(nil, `{"user":"u%d"}`, i)
					case "add":
						bodies[i] = fmt.Appendf(nil, `{"user":"u%d","item":"apple","qty":1}`, i)
					case "add-hot":
						bodies[i] = []byte(`{"user":"u","item":"apple","qty":1}`)
					}
				}
				m := method
				if m == "add-hot" {
					m = "add"
				}
				b.SetParallelism(par)
				b.ResetTimer()
				start := time.Now()
				var next atomic.Uint64
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						body := bodies[next.Add(1)%uint64(len(bodies))]
						if _, err := n.Call(context.Background(), "cart", m, body, 2*time.Second); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
			})
		}
	}
}
