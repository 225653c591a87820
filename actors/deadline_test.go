package actors_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tempestrt/tempest/actors"
	"github.com/tempestrt/tempest/collections"
	"github.com/tempestrt/tempest/gateway"
)

// slowService's update puts its value, then takes longer than any budget
// the test gives it.
func slowService(d time.Duration) *actors.Service {
	return actors.NewService("slow", func(b *actors.Builder) {
		kv := collections.NewMap[string, string](b.Store(), "kv")
		actors.Update(b, "put", func(_ *actors.Ctx, r kvReq) (kvResp, error) {
			if err := kv.Put(r.Key, r.Val); err != nil {
				return kvResp{}, err
			}
			time.Sleep(d)
			return kvResp{Val: r.Val, Exists: true}, nil
		})
		actors.Query(b, "get", func(_ *actors.Ctx, r kvReq) (kvResp, error) {
			v, ok := kv.Get(r.Key)
			return kvResp{Val: v, Exists: ok}, nil
		})
	})
}

// TestDeadlineExceededIsSentBeforeTheDeadline: an update whose handler runs
// past the budget is answered 504 deadline_exceeded by the deadline, not
// after it; the answer says the update may have been applied (it was: the
// handler is not preempted), and status counts the 504.
func TestDeadlineExceededIsSentBeforeTheDeadline(t *testing.T) {
	n := startNode(t, t.TempDir(), func(c *actors.Config) {
		c.Services = []*actors.Service{slowService(80 * time.Millisecond)}
		c.Clones = 1
	})
	const budget = 50 * time.Millisecond
	// The scheduler admits it: its estimate of the method is still the
	// initial guess.
	start := time.Now()
	_, err := n.Call(t.Context(), "slow", "put", []byte(`{"key":"k","val":"v"}`), budget)
	took := time.Since(start)
	if !errors.Is(err, actors.ErrDeadlineExceeded) {
		t.Fatalf("got %v, want 504 deadline_exceeded", err)
	}
	if !strings.Contains(err.Error(), "may have been applied") {
		t.Fatalf("504 of an update does not say it may have been applied: %v", err)
	}
	// Answered at the cutoff, AnswerLead (1 ms) before the deadline. The
	// slack is for a loaded machine's scheduling delay only: the old timer
	// fired after the deadline, and the handler's answer comes 30 ms later.
	if took > budget+10*time.Millisecond {
		t.Fatalf("504 after %v, budget %v: sent late", took, budget)
	}
	if st := n.Status().Deadlines; st.Timeouts != 1 {
		t.Fatalf("status deadlines %+v, want 1 timeout", st)
	}
	// Not preempted: the update ran and was applied.
	for deadline := time.Now().Add(2 * time.Second); ; {
		if got := mustCall[kvResp](t, n, "slow", "get", kvReq{Key: "k"}); got.Val == "v" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the update answered 504 was never applied")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSpentBudgetIsRefusedAtTheDoor: a request whose budget ran out while
// its bytes waited to be read (its arrival, from the kernel, is older than
// its budget) is refused 503 deadline_unmeetable by Admit, before the
// limiter counts it; one with time left is admitted.
func TestSpentBudgetIsRefusedAtTheDoor(t *testing.T) {
	n := startNode(t, t.TempDir())
	before := n.Status().Admission.Admitted
	const budget = 30 * time.Millisecond
	stale := gateway.WithArrival(t.Context(), time.Now().Add(-budget))
	_, done, err := n.Admit(stale, "cart", "add", budget)
	done(time.Now())
	if !errors.Is(err, actors.ErrDeadlineUnmeet) {
		t.Fatalf("a request that waited its whole budget unread: %v, want 503 deadline_unmeetable", err)
	}
	var e *actors.Error
	if !errors.As(err, &e) || e.HTTPStatus() != 503 || e.ErrorCode() != "deadline_unmeetable" {
		t.Fatalf("error %v: want HTTP 503 deadline_unmeetable", err)
	}
	if got := n.Status().Admission.Admitted; got != before {
		t.Fatalf("the refused request reached the limiter: admitted %d -> %d", before, got)
	}
	fresh := gateway.WithArrival(t.Context(), time.Now().Add(-5*time.Millisecond))
	ctx, done, err := n.Admit(fresh, "cart", "add", budget)
	if err != nil {
		t.Fatalf("a request with 25 ms of its 30 left: %v, want it admitted", err)
	}
	if _, err := n.Call(ctx, "cart", "add", []byte(`{"user":"u","item":"i","qty":1}`), budget); err != nil {
		t.Fatalf("the admitted request: %v", err)
	}
	done(time.Now())
	if got := n.Status().Deadlines.WrittenLate; got != 0 {
		t.Fatalf("an answer handed to the write in time counted written late: %d", got)
	}
}

// TestAnswerWrittenLateIsCounted: an admitted request whose answer is
// handed to the write after its deadline (its goroutine ran late) is
// counted in status; one handed on before it, and a refusal, are not.
func TestAnswerWrittenLateIsCounted(t *testing.T) {
	n := startNode(t, t.TempDir())
	const budget = 50 * time.Millisecond
	arrived := time.Now()
	for _, at := range []time.Duration{10 * time.Millisecond, budget + time.Millisecond, 49 * time.Millisecond, 2 * budget} {
		_, done, err := n.Admit(gateway.WithArrival(t.Context(), arrived), "cart", "get", budget)
		if err != nil {
			t.Fatal(err)
		}
		done(arrived.Add(at))
	}
	_, done, err := n.Admit(gateway.WithArrival(t.Context(), arrived.Add(-budget)), "cart", "get", budget)
	if err == nil {
		t.Fatal("a spent budget was admitted")
	}
	done(time.Now())
	if got := n.Status().Deadlines.WrittenLate; got != 2 {
		t.Fatalf("written late: %d, want 2 (of 4 admitted answers, two handed on after the deadline)", got)
	}
}
