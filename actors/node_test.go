package actors_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tempestrt/tempest/actors"
	"github.com/tempestrt/tempest/collections"
	"github.com/tempestrt/tempest/examples/cart"
	"github.com/tempestrt/tempest/examples/chat"
	"github.com/tempestrt/tempest/internal/group/memgroup"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func startNode(t *testing.T, dir string, mutate ...func(*actors.Config)) *actors.Node {
	t.Helper()
	cfg := actors.TestConfig(dir)
	cfg.Services = []*actors.Service{cart.Service(), chat.Service()}
	for _, f := range mutate {
		f(&cfg)
	}
	n, err := actors.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Stop() })
	return n
}

func call[T any](t *testing.T, n *actors.Node, service, method string, req any) (T, error) {
	t.Helper()
	var out T
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := n.Call(context.Background(), service, method, body, 2*time.Second)
	if err != nil {
		return out, err
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s/%s answered %q: %v", service, method, raw, err)
	}
	return out, nil
}

func mustCall[T any](t *testing.T, n *actors.Node, service, method string, req any) T {
	t.Helper()
	out, err := call[T](t, n, service, method, req)
	if err != nil {
		t.Fatalf("%s/%s: %v", service, method, err)
	}
	return out
}

// waitConverged waits until every clone of service is ready and reports
// the same digest and applied count (see converged), and returns the digest.
func waitConverged(t *testing.T, n *actors.Node, service string, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		asked := time.Now()
		clones := n.Status().Clones
		if digest, ok := converged(clones, service, asked); ok {
			return digest
		}
		if time.Now().After(deadline) {
			var got []string
			for _, c := range clones {
				if c.Service == service {
					got = append(got, fmt.Sprintf("%s ready=%v digest=%s applied=%d fresh=%v", c.Clone, c.Ready, c.Digest, c.Applied, !c.UpdatedAt.Before(asked)))
				}
			}
			t.Fatalf("%s clones did not converge in %v: %v", service, within, got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// converged reports whether every clone of service in clones is ready and
// has the same non-empty digest and applied count, all published at or
// after asked (Node.Status asks each scheduler for fresh figures; a
// scheduler that crashed and waits out its restart backoff does not answer
// and is reported with its last figures, still marked ready), and that
// digest. A clone that is restarting, silent or behind means not
// converged: one ready clone agreeing with itself is not convergence.
func converged(clones []actors.CloneStatus, service string, asked time.Time) (string, bool) {
	var of []actors.CloneStatus
	for _, c := range clones {
		if c.Service == service {
			of = append(of, c)
		}
	}
	if len(of) == 0 {
		return "", false
	}
	for _, c := range of {
		if !c.Ready || c.UpdatedAt.Before(asked) || c.Digest == "" || c.Digest != of[0].Digest || c.Applied != of[0].Applied {
			return "", false
		}
	}
	return of[0].Digest, true
}

// TestConvergedRequiresEveryClone: the oracle the other tests wait on says
// "not converged" whenever any clone of the service is not ready or differs.
func TestConvergedRequiresEveryClone(t *testing.T) {
	asked := time.Now()
	c := func(clone string, ready bool, digest string, applied uint64) actors.CloneStatus {
		return actors.CloneStatus{Service: "cart", Clone: clone, Ready: ready, Digest: digest, Applied: applied, UpdatedAt: asked}
	}
	stale := c("cart/2", true, "aa", 3)
	stale.UpdatedAt = asked.Add(-time.Millisecond)
	other := actors.CloneStatus{Service: "chat", Clone: "chat/1", Ready: false, Digest: "ff", Applied: 9}
	for name, tc := range map[string]struct {
		clones []actors.CloneStatus
		want   bool
	}{
		"all equal":                 {[]actors.CloneStatus{c("cart/1", true, "aa", 3), c("cart/2", true, "aa", 3), other}, true},
		"one ready, one restarting": {[]actors.CloneStatus{c("cart/1", true, "aa", 3), c("cart/2", false, "aa", 3)}, false},
		"one ready, one behind":     {[]actors.CloneStatus{c("cart/1", false, "", 0), c("cart/2", true, "aa", 3)}, false},
		"one did not answer":        {[]actors.CloneStatus{c("cart/1", true, "aa", 3), stale}, false},
		"digests differ":            {[]actors.CloneStatus{c("cart/1", true, "aa", 3), c("cart/2", true, "bb", 3)}, false},
		"applied differ":            {[]actors.CloneStatus{c("cart/1", true, "aa", 3), c("cart/2", true, "aa", 4)}, false},
		"no digest published":       {[]actors.CloneStatus{c("cart/1", true, "", 0), c("cart/2", true, "", 0)}, false},
		"no clone of the service":   {[]actors.CloneStatus{other}, false},
	} {
		if digest, ok := converged(tc.clones, "cart", asked); ok != tc.want || ok && digest != "aa" {
			t.Errorf("%s: converged = %q, %v; want %v", name, digest, ok, tc.want)
		}
	}
}

func TestCartAddGetAndReplication(t *testing.T) {
	n := startNode(t, t.TempDir())
	v := mustCall[cart.View](t, n, "cart", "add", cart.AddRequest{User: "ann", Item: "apple", Qty: 2})
	if v.Items["apple"] != 2 {
		t.Fatalf("an update's answer shows its own write: %+v", v)
	}
	mustCall[cart.View](t, n, "cart", "add", cart.AddRequest{User: "ann", Item: "apple", Qty: 3})
	mustCall[cart.View](t, n, "cart", "add", cart.AddRequest{User: "ann", Item: "pear", Qty: 1})
	// Another clone may not have seen the other adds yet (reads are local);
	// once replication converged, every clone answers the same.
	waitConverged(t, n, "cart", 5*time.Second)
	// Every clone answers the same once converged: ask enough times that
	// round-robin visits each.
	for range 6 {
		got := mustCall[cart.View](t, n, "cart", "get", cart.GetRequest{User: "ann"})
		if got.Items["apple"] != 5 || got.Items["pear"] != 1 {
			t.Fatalf("get: %+v", got)
		}
	}
	v = mustCall[cart.View](t, n, "cart", "remove", cart.RemoveRequest{User: "ann", Item: "apple"})
	if _, ok := v.Items["apple"]; ok || v.Items["pear"] != 1 {
		t.Fatalf("after remove: %+v", v)
	}
	// Stability: with all clones heartbeating, the cart becomes stable.
	deadline := time.Now().Add(5 * time.Second)
	for !mustCall[cart.View](t, n, "cart", "get", cart.GetRequest{User: "ann"}).Stable {
		if time.Now().After(deadline) {
			t.Fatal("cart never became stable")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestChatListAndSet(t *testing.T) {
	n := startNode(t, t.TempDir())
	if _, err := call[chat.Posted](t, n, "chat", "post", chat.PostRequest{User: "bob", Text: "hi"}); err == nil {
		t.Fatal("non-member could post")
	} else if e := actors.AsError(err); e.Status != 403 {
		t.Fatalf("non-member post: %v", err)
	}
	mustCall[chat.Members](t, n, "chat", "join", chat.UserRequest{User: "bob"})
	mustCall[chat.Members](t, n, "chat", "join", chat.UserRequest{User: "cy"})
	for i := range 3 {
		mustCall[chat.Posted](t, n, "chat", "post", chat.PostRequest{User: "bob", Text: fmt.Sprint("m", i)})
	}
	waitConverged(t, n, "chat", 5*time.Second)
	for _, c := range n.Status().Clones {
		if c.Service == "chat" && (len(c.CollectionDigests) != 2 || c.CollectionDigests["messages"] == "") {
			t.Fatalf("%s collection digests: %v", c.Clone, c.CollectionDigests)
		}
	}
	h := mustCall[chat.History](t, n, "chat", "history", chat.HistoryRequest{})
	if h.Total != 3 || len(h.Messages) != 3 || h.Messages[2].Text != "m2" || len(h.Members) != 2 {
		t.Fatalf("history: %+v", h)
	}
}

func TestErrorsAreClear(t *testing.T) {
	n := startNode(t, t.TempDir())
	ctx := context.Background()
	check := func(err error, target error, status int) {
		t.Helper()
		if !errors.Is(err, target) {
			t.Fatalf("want %v, got %v", target, err)
		}
		if e := actors.AsError(err); e.Status != status {
			t.Fatalf("status %d, want %d (%v)", e.Status, status, err)
		}
	}
	_, err := n.Call(ctx, "nope", "get", []byte(`{}`), 0)
	check(err, actors.ErrUnknownService, 404)
	_, err = n.Call(ctx, "cart", "nope", []byte(`{}`), 0)
	check(err, actors.ErrUnknownMethod, 404)
	_, err = n.Call(ctx, "cart", "add", []byte(`{"user":"a","item":"b","qty":0}`), 0)
	if e := actors.AsError(err); e.Status != 400 {
		t.Fatalf("qty 0: %v", err)
	}
	_, err = n.Call(ctx, "cart", "add", []byte(`{"user":5}`), 0)
	if e := actors.AsError(err); e.Status != 400 || e.Code != "bad_request" {
		t.Fatalf("wrong field type: %v", err)
	}
	// A deadline shorter than any handler can run is refused at once,
	// never answered late.
	start := time.Now()
	_, err = n.Call(ctx, "cart", "get", []byte(`{"user":"a"}`), time.Nanosecond)
	check(err, actors.ErrDeadlineUnmeet, 503)
	if took := time.Since(start); took > time.Second {
		t.Fatalf("refusal took %v", took)
	}
}

func TestKilledSchedulerReloadsAndOthersKeepServing(t *testing.T) {
	n := startNode(t, t.TempDir(), func(c *actors.Config) { c.Gateway.EnableChaos = true })
	for i := range 20 {
		mustCall[cart.View](t, n, "cart", "add", cart.AddRequest{User: "dan", Item: fmt.Sprint("i", i%4), Qty: 1})
	}
	before := waitConverged(t, n, "cart", 5*time.Second)
	for _, path := range []string{"cart/1/scheduler", "cart/2", "cart/3/member", "cart/1/repair"} {
		if err := n.Kill(path); err != nil {
			t.Fatal(err)
		}
		// The service answers throughout.
		for range 10 {
			v := mustCall[cart.View](t, n, "cart", "get", cart.GetRequest{User: "dan"})
			if v.Items["i0"] != 5 {
				t.Fatalf("after killing %s: %+v", path, v)
			}
		}
	}
	if got := waitConverged(t, n, "cart", 5*time.Second); got != before {
		t.Fatalf("digest changed across restarts: %s -> %s", before, got)
	}
	// Each clone had something restarted; the count shows in its status.
	deadline := time.Now().Add(5 * time.Second)
	for {
		restarts := map[string]int{}
		for _, c := range n.Status().Clones {
			restarts[c.Clone] = c.Restarts
		}
		if restarts["cart/1"] >= 1 && restarts["cart/2"] >= 1 && restarts["cart/3"] >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restart counts %v; events %+v", restarts, n.Status().RecentFailures)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(n.Status().RecentFailures) == 0 {
		t.Fatal("no supervision events recorded")
	}
	if err := n.Kill("cart/9"); !errors.Is(err, actors.ErrUnknownActor) {
		t.Fatalf("kill unknown: %v", err)
	}
}

func TestChaosDisabledByDefault(t *testing.T) {
	n := startNode(t, t.TempDir())
	if err := n.Kill("cart/1"); !errors.Is(err, actors.ErrChaosDisabled) {
		t.Fatalf("kill without chaos: %v", err)
	}
}

func TestRestartedNodeRecoversState(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, dir)
	for i := range 50 {
		mustCall[cart.View](t, n, "cart", "add", cart.AddRequest{User: fmt.Sprint("u", i%5), Item: "x", Qty: 1})
	}
	digest := waitConverged(t, n, "cart", 5*time.Second)
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	n2 := startNode(t, dir)
	if got := waitConverged(t, n2, "cart", 5*time.Second); got != digest {
		t.Fatalf("digest after restart %s, before %s", got, digest)
	}
	v := mustCall[cart.View](t, n2, "cart", "get", cart.GetRequest{User: "u3"})
	if v.Items["x"] != 10 {
		t.Fatalf("u3 after restart: %+v", v)
	}
	// It keeps taking updates with fresh sequence numbers.
	mustCall[cart.View](t, n2, "cart", "add", cart.AddRequest{User: "u3", Item: "x", Qty: 1})
	waitConverged(t, n2, "cart", 5*time.Second)
}

// seatService reserves seats with a hold-back update: the handler runs once
// the replica is stable up to the request's arrival.
func seatService() *actors.Service {
	return actors.NewService("seats", func(b *actors.Builder) {
		seats := collections.NewMap[string, string](b.Store(), "seats")
		type req struct {
			Seat, User string
		}
		type resp struct {
			Holder string `json:"holder"`
			Stable bool   `json:"stable"`
		}
		actors.Update(b, "reserve", func(_ *actors.Ctx, r req) (resp, error) {
			if h, ok := seats.Get(r.Seat); ok {
				return resp{Holder: h, Stable: seats.Stable(r.Seat)}, nil
			}
			seats.Put(r.Seat, r.User)
			return resp{Holder: r.User}, nil
		}, actors.WithHoldBack(), actors.WithDeadline(time.Second))
	})
}

func TestHoldBackSeesEarlierReservations(t *testing.T) {
	// Ops take 20ms to reach other clones: without hold-back, a clone asked
	// right after ann's reservation would not have seen it yet.
	net := memgroup.New(1)
	defer net.Close()
	if err := net.SetFaults(memgroup.Faults{Delay: 20 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, t.TempDir(), func(c *actors.Config) {
		c.Services = []*actors.Service{seatService()}
		c.Transport = net
	})
	type resp struct {
		Holder string `json:"holder"`
	}
	first := mustCall[resp](t, n, "seats", "reserve", map[string]string{"Seat": "1A", "User": "ann"})
	if first.Holder != "ann" {
		t.Fatalf("first reservation: %+v", first)
	}
	// Sent later to (round-robin) other clones: each waits until it is stable
	// past its arrival, so it sees ann's reservation even if it was made on
	// another clone a moment ago.
	for _, u := range []string{"bob", "cy", "dee"} {
		if got := mustCall[resp](t, n, "seats", "reserve", map[string]string{"Seat": "1A", "User": u}); got.Holder != "ann" {
			t.Fatalf("%s got seat held by %q", u, got.Holder)
		}
	}
	var held uint64
	for _, c := range n.Status().Clones {
		held += c.HeldBack
	}
	if held == 0 {
		t.Fatal("no update was held back")
	}
}

func TestKilledNodeActorRestartsTheTree(t *testing.T) {
	n := startNode(t, t.TempDir(), func(c *actors.Config) { c.Gateway.EnableChaos = true })
	mustCall[cart.View](t, n, "cart", "add", cart.AddRequest{User: "eve", Item: "fig", Qty: 3})
	waitConverged(t, n, "cart", 5*time.Second)
	if err := n.Kill("node"); err != nil {
		t.Fatal(err)
	}
	// Kill is asynchronous: wait for the failure to be handled.
	deadline := time.Now().Add(5 * time.Second)
	for {
		found := false
		for _, e := range n.Status().RecentFailures {
			found = found || e.Child == "node"
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node failure not recorded: %+v", n.Status().RecentFailures)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Every clone restarts and reloads from disk; the state is intact.
	for {
		v, err := call[cart.View](t, n, "cart", "get", cart.GetRequest{User: "eve"})
		if err == nil && v.Items["fig"] == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after killing the node actor: %+v %v", v, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLoadSpikeShedsInsteadOfAnsweringLate sends a burst far beyond what the
// clones can serve in time (a 5 ms query, 400 callers at once, 100 ms
// deadlines: about 55 fit). What a user checks: some are served, the rest
// are refused with a 503 (overloaded at the node's front door, or
// deadline_unmeetable at a clone's queue) before their deadline and mostly
// at once (not left to time out, not held until hopeless), nothing succeeds
// after its deadline, and the node keeps serving normally once the spike is
// over.
func TestLoadSpikeShedsInsteadOfAnsweringLate(t *testing.T) {
	slow := actors.NewService("slow", func(b *actors.Builder) {
		actors.Query(b, "work", func(_ *actors.Ctx, _ struct{}) (struct{}, error) {
			time.Sleep(5 * time.Millisecond)
			return struct{}{}, nil
		})
	})
	n := startNode(t, t.TempDir(), func(c *actors.Config) { c.Services = []*actors.Service{slow} })
	// Warm the service-time estimate, as steady traffic would.
	for range 10 {
		if _, err := n.Call(context.Background(), "slow", "work", []byte(`{}`), time.Second); err != nil {
			t.Fatal(err)
		}
	}
	const callers, timeout = 400, 100 * time.Millisecond
	type outcome struct {
		took time.Duration
		err  error
	}
	out := make(chan outcome, callers)
	gate := make(chan struct{})
	for range callers {
		go func() {
			<-gate
			start := time.Now()
			_, err := n.Call(context.Background(), "slow", "work", []byte(`{}`), timeout)
			out <- outcome{time.Since(start), err}
		}()
	}
	close(gate)
	var ok, shed, late int
	var worstOK, worstShed time.Duration
	var refusals []time.Duration
	for range callers {
		o := <-out
		switch {
		case o.err == nil:
			ok++
			worstOK = max(worstOK, o.took)
		case errors.Is(o.err, actors.ErrDeadlineUnmeet), errors.Is(o.err, actors.ErrOverloaded):
			shed++
			worstShed = max(worstShed, o.took)
			refusals = append(refusals, o.took)
		case errors.Is(o.err, actors.ErrDeadlineExceeded):
			late++
		default:
			t.Fatalf("unexpected error: %v", o.err)
		}
	}
	slices.Sort(refusals)
	var medianShed time.Duration
	if len(refusals) > 0 {
		medianShed = refusals[len(refusals)/2]
	}
	t.Logf("%d callers, %v deadline: %d served (slowest %v), %d refused (median refusal after %v, slowest %v), %d timed out",
		callers, timeout, ok, worstOK, shed, medianShed, worstShed, late)
	if ok == 0 {
		t.Fatal("nothing served during the spike")
	}
	if shed == 0 {
		t.Fatal("nothing refused: the spike did not exceed capacity, or the scheduler queued everything")
	}
	// The node answers by its deadline (Config.AnswerLead before it). The
	// times are taken by the callers, so they also hold how long a caller
	// goroutine waited to be scheduled after its answer arrived (with 400 of
	// them on two cores, under -race, a few ms): 10 ms of slack for that.
	lateAfter := timeout + 10*time.Millisecond
	if worstOK > lateAfter {
		t.Fatalf("a request succeeded after %v, past its %v deadline", worstOK, timeout)
	}
	if worstShed > lateAfter {
		t.Fatalf("a refusal came after %v, past the %v deadline", worstShed, timeout)
	}
	// "At once": a clone refuses what its backlog cannot fit when the
	// request arrives, not at the request's point of no return.
	if medianShed > timeout/2 {
		t.Fatalf("half the refusals took more than %v: refused late, not at admission", medianShed)
	}
	// Refusing is the scheduler's job: requests left to time out mean it ran
	// or kept work it should have shed.
	if late > callers/10 {
		t.Fatalf("%d of %d requests timed out instead of being refused", late, callers)
	}
	st := n.Status()
	refused := uint64(0)
	if st.Admission != nil {
		refused = st.Admission.Refused
	}
	for _, c := range st.Clones {
		refused += c.DeadlineMisses
	}
	if st.Admission != nil && st.RefusalTime.Count != st.Admission.Refused {
		t.Fatalf("status times %d refusals at the front door, counts %d", st.RefusalTime.Count, st.Admission.Refused)
	}
	if refused < uint64(shed) {
		t.Fatalf("status counts %d refusals (front door + clones' deadline misses), fewer than the callers got (%d)", refused, shed)
	}
	for range 10 {
		if _, err := n.Call(context.Background(), "slow", "work", []byte(`{}`), time.Second); err != nil {
			t.Fatalf("after the spike: %v", err)
		}
	}
}

// TestStalledCloneIsHedgedAndAvoided: one clone of three takes 300 ms per
// query (a GC pause, a slow disk); the others answer at once. A user sees
// every call answered quickly: the first call that lands on the stalled
// clone is hedged to another, and while the stalled clone is busy, calls
// are routed away from it (least outstanding requests).
func TestStalledCloneIsHedgedAndAvoided(t *testing.T) {
	svc := actors.NewService("stall", func(b *actors.Builder) {
		actors.Query(b, "get", func(c *actors.Ctx, _ struct{}) (string, error) {
			if c.Clone == "stall/1" {
				time.Sleep(300 * time.Millisecond)
			}
			return c.Clone, nil
		})
	})
	n := startNode(t, t.TempDir(), func(c *actors.Config) { c.Services = []*actors.Service{svc} })
	var slowest time.Duration
	answered := map[string]int{}
	for range 30 {
		start := time.Now()
		out, err := n.Call(context.Background(), "stall", "get", []byte(`{}`), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		slowest = max(slowest, time.Since(start))
		answered[string(out)]++
	}
	t.Logf("30 calls: slowest %v, answered by %v", slowest, answered)
	// Without hedging a call on the stalled clone takes 300 ms; the hedge
	// is due after HedgeWithoutAck (20 ms) at the latest.
	if slowest > 150*time.Millisecond {
		t.Fatalf("slowest call took %v: the stalled clone was not hedged", slowest)
	}
	if answered[`"stall/1"`] > 0 {
		t.Fatalf("the stalled clone answered %d calls first, in 300 ms each", answered[`"stall/1"`])
	}
}
