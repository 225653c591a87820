package actors

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestSchedLatencySeesRunnableGoroutinesWait: with more busy goroutines
// than Ps, goroutines wait to run, and the reading says so; an idle spell
// after reads (near) nothing.
func TestSchedLatencySeesRunnableGoroutinesWait(t *testing.T) {
	s := newSchedLatency()
	var wg sync.WaitGroup
	stop := time.Now().Add(200 * time.Millisecond)
	for range 8 * runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				for i := 0; i < 100000; i++ {
					_ = i * i
				}
				runtime.Gosched()
			}
		}()
	}
	wg.Wait()
	busy := s.read(0.99)
	if busy < 100*time.Microsecond {
		t.Fatalf("p99 scheduling latency %v with 8 busy goroutines per P: the runtime metric is not read", busy)
	}
}
