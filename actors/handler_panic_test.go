package actors_test

import (
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/tempestrt/tempest/actors"
	"github.com/tempestrt/tempest/collections"
)

type kvReq struct {
	Key string `json:"key"`
	Val string `json:"val"`
}

type kvResp struct {
	Val    string `json:"val"`
	Exists bool   `json:"exists"`
}

// panickyService has a query and an update that always panic (the update
// after a mutation), next to a working put and get.
func panickyService() *actors.Service {
	return actors.NewService("kv", func(b *actors.Builder) {
		kv := collections.NewMap[string, string](b.Store(), "kv")
		actors.Query(b, "boom", func(_ *actors.Ctx, r kvReq) (kvResp, error) {
			var m map[string]int
			m[r.Key]++ // nil map: a real bug, not a deliberate panic() call
			return kvResp{}, nil
		})
		actors.Update(b, "putboom", func(_ *actors.Ctx, r kvReq) (kvResp, error) {
			kv.Put(r.Key, r.Val)
			panic("after the put")
		})
		actors.Update(b, "put", func(_ *actors.Ctx, r kvReq) (kvResp, error) {
			kv.Put(r.Key, r.Val)
			return kvResp{Val: r.Val, Exists: true}, nil
		})
		actors.Query(b, "get", func(_ *actors.Ctx, r kvReq) (kvResp, error) {
			v, ok := kv.Get(r.Key)
			return kvResp{Val: v, Exists: ok}, nil
		})
	})
}

// TestHandlerPanicIsThatRequestsFailure: methods that always panic, called
// 1000 times, each get a 500 handler_panic; no scheduler restarts; an update
// that panicked after a mutation leaves nothing applied; the service's other
// methods keep answering within their deadlines all along.
func TestHandlerPanicIsThatRequestsFailure(t *testing.T) {
	n := startNode(t, t.TempDir(), func(c *actors.Config) {
		c.Services = []*actors.Service{panickyService()}
		// The front door stays open: five callers back to back under the
		// race detector on a busy CI machine can push the runtime's
		// scheduling latency past the admission's target, and a 503
		// overloaded is then a right answer that says nothing about
		// panics (it failed this test in CI so). What is tested here is
		// what a panic does to its own request and to the others.
		c.DisableAdmission = true
	})
	mustCall[kvResp](t, n, "kv", "put", kvReq{Key: "k", Val: "v0"})

	const budget = time.Second // generous: the machine is shared; a crash-and-retry shows as a wrong code, not as slowness
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var healthyCalls int
	var healthyErr error
	wg.Add(1)
	go func() { // the healthy methods, all along
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			method := []string{"put", "get"}[i%2]
			start := time.Now()
			_, err := n.Call(t.Context(), "kv", method, []byte(`{"key":"other","val":"x"}`), budget)
			if took := time.Since(start); err == nil && took > budget {
				err = errors.New("answered after its deadline: " + took.String())
			}
			if err != nil && healthyErr == nil {
				healthyErr = err
			}
			healthyCalls++
		}
	}()

	const calls = 1000
	errs := make(chan error, calls)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < calls; i += 4 {
				method := []string{"boom", "putboom"}[i%2]
				_, err := n.Call(t.Context(), "kv", method, []byte(`{"key":"k","val":"bad"}`), budget)
				errs <- err
			}
		}()
	}
	for i := 0; i < calls; i++ {
		err := <-errs
		if e := actors.AsError(err); e == nil || e.Status != http.StatusInternalServerError || e.Code != "handler_panic" {
			t.Fatalf("call %d of a panicking method: got %v, want 500 handler_panic", i, err)
		}
	}
	close(stop)
	wg.Wait()
	if healthyErr != nil {
		t.Fatalf("a healthy method failed while others panicked (%d calls): %v", healthyCalls, healthyErr)
	}
	if got := mustCall[kvResp](t, n, "kv", "get", kvReq{Key: "k"}); got.Val != "v0" {
		t.Fatalf("k = %q after 500 panicking updates: a panicked update was applied", got.Val)
	}
	var panics uint64
	for _, c := range n.Status().Clones {
		panics += c.HandlerPanics
		if c.Restarts != 0 || len(c.ActorRestarts) != 0 {
			t.Fatalf("clone %s restarted (%d, %v): a handler panic must not crash the scheduler", c.Clone, c.Restarts, c.ActorRestarts)
		}
	}
	if panics < calls { // a hedged query may panic on two clones
		t.Fatalf("status counts %d handler panics, want at least %d", panics, calls)
	}
}
