package actors

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestAnswerWindowSendsOnlyWhatIsReadyByTheCutoff is the pure deadline rule
// of Node.Call: the cutoff is AnswerLead before the deadline, a success
// ready at or before it is sent, one ready after it (even before the
// deadline itself) is turned into a 504 that says an update may have been
// applied, and each such 504 is counted.
func TestAnswerWindowSendsOnlyWhatIsReadyByTheCutoff(t *testing.T) {
	deadline := time.Unix(1000, 0)
	w := newAnswerWindow(deadline, time.Millisecond)
	if want := deadline.Add(-time.Millisecond); !w.cutoff.Equal(want) {
		t.Fatalf("cutoff %v, want %v (deadline - AnswerLead)", w.cutoff, want)
	}
	cases := []struct {
		ready time.Time
		send  bool
	}{
		{deadline.Add(-30 * time.Millisecond), true},
		{deadline.Add(-time.Millisecond), true}, // exactly at the cutoff
		{deadline.Add(-time.Millisecond + time.Nanosecond), false},
		{deadline, false},
		{deadline.Add(5 * time.Millisecond), false},
	}
	for _, c := range cases {
		if got := w.deliverable(c.ready); got != c.send {
			t.Errorf("ready %v before the deadline: deliverable %v, want %v", deadline.Sub(c.ready), got, c.send)
		}
	}
	if w := newAnswerWindow(deadline, 0); !w.deliverable(deadline) || w.deliverable(deadline.Add(time.Nanosecond)) {
		t.Errorf("with no lead the cutoff is the deadline itself")
	}

	n := &Node{}
	upd := n.lateAnswer("add", "cart", true)
	qry := n.lateAnswer("get", "cart", false)
	for _, err := range []error{upd, qry} {
		if !errors.Is(err, ErrDeadlineExceeded) {
			t.Fatalf("late answer %v is not ErrDeadlineExceeded", err)
		}
	}
	if !strings.Contains(upd.Error(), "may have been applied") {
		t.Errorf("a late update's 504 does not say it may have been applied: %v", upd)
	}
	if strings.Contains(qry.Error(), "may have been applied") {
		t.Errorf("a late query's 504 says it may have been applied: %v", qry)
	}
	if got := n.lateAnswers.Load(); got != 2 {
		t.Errorf("late answers counted %d, want 2", got)
	}
}

// TestAnswerLeadGrowsWithCongestion: the lead is AnswerLead on an idle
// node, the runtime's recent scheduling p99 when that is longer, and never
// more than a tenth of the budget (nor less than AnswerLead).
func TestAnswerLeadGrowsWithCongestion(t *testing.T) {
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	cases := []struct {
		base, sched, budget, want time.Duration
	}{
		{ms(1), 0, ms(30), ms(1)},          // idle
		{ms(1), ms(0.5), ms(30), ms(1)},    // scheduling faster than the lead
		{ms(1), ms(2.5), ms(30), ms(2.5)},  // congested: leave 2.5 ms early
		{ms(1), ms(20), ms(30), ms(3)},     // capped at a tenth of the budget
		{ms(1), ms(20), ms(5), ms(1)},      // a tenth of a short budget is below AnswerLead
		{ms(1), ms(4), time.Second, ms(4)}, // long budgets: the whole scheduling delay
	}
	for _, c := range cases {
		if got := answerLead(c.base, c.sched, c.budget); got != c.want {
			t.Errorf("answerLead(%v, sched %v, budget %v) = %v, want %v", c.base, c.sched, c.budget, got, c.want)
		}
	}
}
