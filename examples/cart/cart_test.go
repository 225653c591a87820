package cart_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tempestrt/tempest/actors"
	"github.com/tempestrt/tempest/examples/cart"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func call(t *testing.T, n *actors.Node, method string, req any) ([]byte, error) {
	t.Helper()
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return n.Call(context.Background(), "cart", method, body, 2*time.Second)
}

func cartOf(t *testing.T, n *actors.Node, user string) map[string]int64 {
	t.Helper()
	raw, err := call(t, n, "get", cart.GetRequest{User: user})
	if err != nil {
		t.Fatal(err)
	}
	var v cart.View
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return v.Items
}

// TestAddManyIsAllOrNothing: addmany applies every add of a valid batch,
// and a batch with one bad add (or too many adds) is a 400 that applies
// none of them.
func TestAddManyIsAllOrNothing(t *testing.T) {
	cfg := actors.TestConfig(t.TempDir())
	cfg.Services = []*actors.Service{cart.Service()}
	// One clone: what is checked is the batch, not replication (a read
	// on another clone may not have the batch yet).
	cfg.Clones = 1
	n, err := actors.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = n.Stop() }()

	ok := cart.AddManyRequest{Adds: []cart.AddRequest{{User: "ann", Item: "apple", Qty: 2}, {User: "bob", Item: "pear", Qty: 1}, {User: "ann", Item: "apple", Qty: 3}}}
	raw, err := call(t, n, "addmany", ok)
	if err != nil {
		t.Fatal(err)
	}
	var resp cart.AddManyResponse
	if err := json.Unmarshal(raw, &resp); err != nil || resp.Added != 3 {
		t.Fatalf("addmany answered %s (%v), want added 3", raw, err)
	}
	if got := cartOf(t, n, "ann"); got["apple"] != 5 {
		t.Fatalf("ann's cart %v, want apple 5", got)
	}

	bad := cart.AddManyRequest{Adds: []cart.AddRequest{{User: "cy", Item: "fig", Qty: 1}, {User: "cy", Item: "fig", Qty: 0}}}
	var many cart.AddManyRequest
	for i := range cart.MaxBatch + 1 {
		many.Adds = append(many.Adds, cart.AddRequest{User: fmt.Sprintf("u%d", i), Item: "x", Qty: 1})
	}
	for _, req := range []cart.AddManyRequest{bad, many, {}} {
		_, err := call(t, n, "addmany", req)
		var ae *actors.Error
		if !errors.As(err, &ae) || ae.HTTPStatus() != 400 {
			t.Fatalf("addmany of %d adds: %v, want a 400", len(req.Adds), err)
		}
	}
	if got := cartOf(t, n, "cy"); len(got) != 0 {
		t.Fatalf("a refused batch applied part of itself: cy's cart %v", got)
	}
	if got := cartOf(t, n, "u0"); len(got) != 0 {
		t.Fatalf("a batch over MaxBatch applied part of itself: u0's cart %v", got)
	}
}
