package supervisor

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// fakeSupervisor records what a strategy asks of it.
type fakeSupervisor struct {
	self     *actor.PID
	mu       sync.Mutex
	children []*actor.PID
	calls    []string
	restarts chan []*actor.PID
}

func newFake(children ...string) *fakeSupervisor {
	f := &fakeSupervisor{self: actor.NewPID("test", "sup"), restarts: make(chan []*actor.PID, 16)}
	for _, c := range children {
		f.children = append(f.children, actor.NewPID("test", "sup/"+c))
	}
	return f
}

func (f *fakeSupervisor) Self() *actor.PID { return f.self }

func (f *fakeSupervisor) Children() []*actor.PID { return f.children }

func (f *fakeSupervisor) note(op string, pids []*actor.PID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := op
	for _, p := range pids {
		s += " " + p.Id
	}
	f.calls = append(f.calls, s)
}

func (f *fakeSupervisor) log() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeSupervisor) EscalateFailure(reason, _ any) { f.note(fmt.Sprint("escalate ", reason), nil) }
func (f *fakeSupervisor) RestartChildren(pids ...*actor.PID) {
	f.note("restart", pids)
	f.restarts <- pids
}
func (f *fakeSupervisor) StopChildren(pids ...*actor.PID)   { f.note("stop", pids) }
func (f *fakeSupervisor) ResumeChildren(pids ...*actor.PID) { f.note("resume", pids) }

// guardianLike behaves like protoactor's guardian: no Self, and asking for
// its children or to escalate panics.
type guardianLike struct{ f *fakeSupervisor }

func (g *guardianLike) Children() []*actor.PID             { panic("guardian does not hold its children PIDs") }
func (g *guardianLike) EscalateFailure(_, _ any)           { panic("guardian cannot escalate failure") }
func (g *guardianLike) RestartChildren(pids ...*actor.PID) { g.f.RestartChildren(pids...) }
func (g *guardianLike) StopChildren(pids ...*actor.PID)    { g.f.StopChildren(pids...) }
func (g *guardianLike) ResumeChildren(pids ...*actor.PID)  { g.f.ResumeChildren(pids...) }

func (f *fakeSupervisor) waitRestart(t *testing.T) []*actor.PID {
	t.Helper()
	select {
	case p := <-f.restarts:
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("no restart")
		return nil
	}
}

func TestAllForOneCoalescesSiblingFailures(t *testing.T) {
	cfg := BackoffConfig{Initial: 50 * time.Millisecond, Max: time.Second, Multiplier: 2, MaxRestarts: 1, Window: time.Minute, ResetAfter: time.Minute}
	reg := NewRegistry(8)
	s := NewAllForOne(cfg, WithSink(reg))
	defer s.Close()
	f := newFake("a", "b", "c")
	a, b := f.children[0], f.children[1]
	s.HandleFailure(nil, f, a, actor.NewRestartStatistics(), "a broke", nil)
	s.HandleFailure(nil, f, b, actor.NewRestartStatistics(), "b broke", nil)
	if s.Pending() != 1 {
		t.Fatalf("pending %d, want one group restart", s.Pending())
	}
	got := f.waitRestart(t)
	if len(got) != 3 {
		t.Fatalf("restarted %v, want all three children", got)
	}
	// Both failures are restarts; the second joined the first (same attempt),
	// so the budget of 1 is not exhausted.
	evs := reg.Events()
	if len(evs) != 2 || evs[0].Attempt != 1 || evs[1].Attempt != 1 || evs[1].Decision != Restart || evs[1].Backoff > evs[0].Backoff {
		t.Fatalf("events %+v", evs)
	}
	select {
	case p := <-f.restarts:
		t.Fatalf("second group restart %v", p)
	case <-time.After(3 * cfg.Initial):
	}
	// A new failure after the restart is the second in the window: over budget.
	s.HandleFailure(nil, f, a, actor.NewRestartStatistics(), "a again", nil)
	if last := f.log()[len(f.log())-1]; last != "escalate a again" {
		t.Fatalf("calls %v, want an escalation last", f.log())
	}
}

func TestDeciderDecisions(t *testing.T) {
	reasons := map[string]Decision{"resume": Resume, "stop": Stop, "escalate": Escalate, "restart": Restart}
	decider := func(r any) Decision { return reasons[fmt.Sprint(r)] }
	for _, allForOne := range []bool{false, true} {
		for reason, want := range reasons {
			t.Run(fmt.Sprintf("allForOne=%v/%s", allForOne, reason), func(t *testing.T) {
				reg := NewRegistry(4)
				cfg := TestBackoffConfig()
				var s *Strategy
				if allForOne {
					s = NewAllForOne(cfg, WithDecider(decider), WithSink(reg))
				} else {
					s = NewOneForOne(cfg, WithDecider(decider), WithSink(reg))
				}
				defer s.Close()
				f := newFake("a", "b")
				s.HandleFailure(nil, f, f.children[0], actor.NewRestartStatistics(), reason, nil)
				if want == Restart {
					f.waitRestart(t)
				}
				all := "sup/a"
				if allForOne {
					all = "sup/a sup/b"
				}
				wantCall := map[Decision]string{Resume: "resume sup/a", Stop: "stop " + all, Escalate: "escalate escalate", Restart: "restart " + all}[want]
				if calls := f.log(); len(calls) != 1 || calls[0] != wantCall {
					t.Fatalf("calls %v, want [%s]", calls, wantCall)
				}
				if evs := reg.Events(); len(evs) != 1 || evs[0].Decision != want {
					t.Fatalf("events %+v, want one %v", evs, want)
				}
			})
		}
	}
}

func TestGuardianCannotEscalateSoStops(t *testing.T) {
	cfg := TestBackoffConfig()
	cfg.MaxRestarts = 0
	reg := NewRegistry(4)
	s := NewOneForOne(cfg, WithSink(reg))
	g := &guardianLike{newFake()}
	var _ actor.Supervisor = g
	child := actor.NewPID("test", "top")
	s.HandleFailure(nil, g, child, actor.NewRestartStatistics(), errors.New("x"), nil)
	if calls := g.f.log(); len(calls) != 1 || calls[0] != "stop top" {
		t.Fatalf("calls %v, want [stop top]", calls)
	}
	if evs := reg.Events(); len(evs) != 1 || evs[0].Decision != Stop || evs[0].Supervisor != "guardian" {
		t.Fatalf("events %+v", evs)
	}
}

func TestCloseCancelsPendingRestarts(t *testing.T) {
	cfg := BackoffConfig{Initial: 30 * time.Millisecond, Max: time.Second, Multiplier: 2, MaxRestarts: 5, Window: time.Minute, ResetAfter: time.Minute}
	s := NewOneForOne(cfg)
	f := newFake("a")
	s.HandleFailure(nil, f, f.children[0], actor.NewRestartStatistics(), "x", nil)
	if s.Pending() != 1 {
		t.Fatalf("pending %d", s.Pending())
	}
	s.Close()
	if s.Pending() != 0 {
		t.Fatalf("pending %d after Close", s.Pending())
	}
	select {
	case p := <-f.restarts:
		t.Fatalf("restart %v fired after Close", p)
	case <-time.After(4 * cfg.Initial):
	}
	// After Close, failures are still reported but nothing is scheduled.
	s.HandleFailure(nil, f, f.children[0], actor.NewRestartStatistics(), "y", nil)
	if s.Pending() != 0 {
		t.Fatalf("pending %d after Close", s.Pending())
	}
}

// One strategy shared by many supervisors keeps per-child state, and idle
// state is swept so the strategy does not grow without bound.
func TestStateIsPerChildAndSwept(t *testing.T) {
	cfg := BackoffConfig{Initial: time.Millisecond, Max: time.Millisecond, Multiplier: 1, MaxRestarts: 1, Window: 20 * time.Millisecond, ResetAfter: 20 * time.Millisecond}
	reg := NewRegistry(1024)
	s := NewOneForOne(cfg, WithSink(reg))
	defer s.Close()
	f := newFake()
	for i := 0; i < 200; i++ {
		// 200 different children fail once each: none exceeds its own budget.
		s.HandleFailure(nil, f, actor.NewPID("test", fmt.Sprint("c", i)), actor.NewRestartStatistics(), "x", nil)
	}
	for _, e := range reg.Events() {
		if e.Decision != Restart || e.Restarts != 1 {
			t.Fatalf("event %+v: children must not share a budget", e)
		}
	}
	for i := 0; i < 200; i++ {
		f.waitRestart(t)
	}
	time.Sleep(3 * cfg.Window)
	s.HandleFailure(nil, f, actor.NewPID("test", "late"), actor.NewRestartStatistics(), "x", nil)
	s.mu.Lock()
	n := len(s.entries)
	s.mu.Unlock()
	if n > 2 {
		t.Fatalf("%d entries kept after every child went idle", n)
	}
	f.waitRestart(t)
}

func TestInvalidOptionsPanic(t *testing.T) {
	for name, build := range map[string]func(){
		"bad config":  func() { NewOneForOne(BackoffConfig{}) },
		"give up":     func() { NewOneForOne(TestBackoffConfig(), WithGiveUp(Resume)) },
		"nil decider": func() { NewAllForOne(TestBackoffConfig(), WithDecider(nil)) },
	} {
		func() {
			defer func() {
				r := recover()
				err, _ := r.(error)
				if !errors.Is(err, ErrInvalidConfig) {
					t.Errorf("%s: panic %v, want ErrInvalidConfig", name, r)
				}
			}()
			build()
		}()
	}
}
