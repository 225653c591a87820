package actors_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tempestrt/tempest/actors"
	"github.com/tempestrt/tempest/examples/cart"
)

// TestCallsAvoidASchedulerWaitingToRestart: a scheduler that crashed is out
// of service from the moment it fails, not from the moment its supervisor
// restarts it: while the restart waits out its backoff, calls go to the
// healthy clones instead of timing out on the crashed one, and status says
// it is not ready.
func TestCallsAvoidASchedulerWaitingToRestart(t *testing.T) {
	n := startNode(t, t.TempDir(), func(c *actors.Config) {
		c.Gateway.EnableChaos = true
		c.Supervision.Initial = 2 * time.Second // DefaultBackoffConfig grows to 30 s
		c.Supervision.Max = 2 * time.Second
	})
	mustCall[cart.View](t, n, "cart", "add", cart.AddRequest{User: "a", Item: "b", Qty: 1})
	if err := n.Kill("cart/2/scheduler"); err != nil {
		t.Fatal(err)
	}
	for waited := time.Duration(0); ; waited += 5 * time.Millisecond {
		failed := false
		for _, e := range n.Status().RecentFailures {
			failed = failed || strings.HasSuffix(e.Child, "cart/2/scheduler")
		}
		if failed {
			break
		}
		if waited > 5*time.Second {
			t.Fatal("the kill of cart/2/scheduler was never handled by its supervisor")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, c := range n.Status().Clones {
		if c.Clone == "cart/2" && c.Ready {
			t.Errorf("status reports cart/2 ready while its scheduler waits to restart")
		}
	}
	for i := range 12 {
		body := []byte(`{"user":"a","item":"b","qty":1}`)
		if _, err := n.Call(t.Context(), "cart", "add", body, 300*time.Millisecond); err != nil {
			t.Errorf("add %d: %v, with two healthy clones", i, err)
		}
		if _, err := n.Call(t.Context(), "cart", "get", []byte(`{"user":"a"}`), 300*time.Millisecond); errors.Is(err, actors.ErrDeadlineExceeded) {
			t.Errorf("get %d: %v, with two healthy clones", i, err)
		}
	}
}
