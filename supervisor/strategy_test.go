package supervisor

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"
)

// ---- test actors -----------------------------------------------------------

// recorder collects what the test actors did, by actor name.
type recorder struct {
	mu     sync.Mutex
	starts map[string][]time.Time
	stops  map[string]int
}

func newRecorder() *recorder {
	return &recorder{starts: map[string][]time.Time{}, stops: map[string]int{}}
}

func (r *recorder) started(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.starts[name] = append(r.starts[name], time.Now())
	return len(r.starts[name])
}

func (r *recorder) stopped(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stops[name]++
}

func (r *recorder) startTimes(name string) []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.starts[name]...)
}

func (r *recorder) stopCount(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stops[name]
}

type (
	ping struct{}
	pong struct {
		gen   int // which incarnation answered (1 = first)
		count int // pings this incarnation has seen
	}
	boom struct{ reason any }
)

// worker panics on boom, and in Started while failStarts > 0.
type worker struct {
	name       string
	rec        *recorder
	failStarts *atomic.Int32
	gen, count int
}

func (w *worker) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		w.gen = w.rec.started(w.name)
		if w.failStarts != nil && w.failStarts.Add(-1) >= 0 {
			panic(fmt.Errorf("%s failed in Started", w.name))
		}
	case *actor.Stopped:
		w.rec.stopped(w.name)
	case *boom:
		panic(m.reason)
	case *ping:
		w.count++
		ctx.Respond(&pong{gen: w.gen, count: w.count})
	}
}

func workerProps(name string, rec *recorder, failStarts *atomic.Int32) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return &worker{name: name, rec: rec, failStarts: failStarts} })
}

// parent spawns its children in Started (as every supervisor must, since a
// restart stops them), reports their PIDs and reports Terminated children.
type parent struct {
	name       string
	rec        *recorder
	children   []childSpec
	pids       chan map[string]*actor.PID
	terminated chan string
}

type childSpec struct {
	name  string
	props *actor.Props
}

func (p *parent) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		if p.rec != nil {
			p.rec.started(p.name)
		}
		pids := map[string]*actor.PID{}
		for _, c := range p.children {
			pid, err := ctx.SpawnNamed(c.props, c.name)
			if err != nil {
				panic(err)
			}
			pids[c.name] = pid
		}
		if p.pids != nil {
			select {
			case p.pids <- pids:
			default:
			}
		}
	case *actor.Stopped:
		if p.rec != nil {
			p.rec.stopped(p.name)
		}
	case *actor.Terminated:
		if p.terminated != nil {
			select {
			case p.terminated <- m.Who.Id:
			default:
			}
		}
	case *boom:
		panic(m.reason)
	}
}

// ---- harness ---------------------------------------------------------------

type harness struct {
	t      *testing.T
	system *actor.ActorSystem
	top    []*actor.PID
	strats []*Strategy
}

func newHarness(t *testing.T) *harness {
	h := &harness{t: t, system: actor.NewActorSystem(
		actor.WithLoggerFactory(LoggerFactory(zap.NewNop())),
		// A dead letter (e.g. a late message to a stopped child) starts a
		// goroutine that lives for one throttle interval (default 1s); keep
		// it short so goleak does not see it at the end of the run.
		actor.WithDeadLetterThrottleInterval(10*time.Millisecond),
	)}
	t.Cleanup(h.shutdown)
	return h
}

// spawn spawns a top-level actor; it is stopped at cleanup.
func (h *harness) spawn(props *actor.Props, name string) *actor.PID {
	h.t.Helper()
	pid, err := h.system.Root.SpawnNamed(props, name)
	if err != nil {
		h.t.Fatal(err)
	}
	h.top = append(h.top, pid)
	return pid
}

// shutdown cancels pending restarts, stops the top-level actors and waits for
// them (their children stop first), then shuts the system down: protoactor's
// Shutdown stops nothing by itself.
func (h *harness) shutdown() {
	for _, s := range h.strats {
		s.Close()
	}
	for _, pid := range h.top {
		if err := h.system.Root.StopFuture(pid).Wait(); err != nil {
			h.t.Errorf("stopping %s: %v", pid.Id, err)
		}
	}
	h.system.Shutdown()
}

func (h *harness) strategy(s *Strategy) *Strategy {
	h.strats = append(h.strats, s)
	return s
}

func (h *harness) ping(pid *actor.PID, timeout time.Duration) *pong {
	h.t.Helper()
	res, err := h.system.Root.RequestFuture(pid, &ping{}, timeout).Result()
	if err != nil {
		h.t.Fatalf("ping %s: %v", pid.Id, err)
	}
	return res.(*pong)
}

func recvPIDs(t *testing.T, ch chan map[string]*actor.PID) map[string]*actor.PID {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("children were not spawned")
		return nil
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func decisions(evs []Event) []Decision {
	out := make([]Decision, len(evs))
	for i, e := range evs {
		out[i] = e.Decision
	}
	return out
}

// ---- tests -----------------------------------------------------------------

// A child that crashes in Started K times is restarted K times, each after
// at least its backoff delay, and then works normally.
func TestOneForOneRestartsWithGrowingDelays(t *testing.T) {
	h := newHarness(t)
	cfg := BackoffConfig{Initial: 10 * time.Millisecond, Max: 80 * time.Millisecond, Multiplier: 2, Jitter: 0.25, MaxRestarts: 10, Window: time.Minute, ResetAfter: time.Minute}
	reg := NewRegistry(64)
	strat := h.strategy(NewOneForOne(cfg, WithSink(reg), WithRand(seeded(t))))
	rec := newRecorder()
	const crashes = 5
	var fails atomic.Int32
	fails.Store(crashes)
	pids := make(chan map[string]*actor.PID, 1)
	h.spawn(actor.PropsFromProducer(func() actor.Actor {
		return &parent{children: []childSpec{{"c", workerProps("c", rec, &fails)}}, pids: pids}
	}, actor.WithSupervisor(strat)), "p")
	c := recvPIDs(t, pids)["c"]

	eventually(t, "all restarts", func() bool { return len(rec.startTimes("c")) == crashes+1 })
	if p := h.ping(c, 5*time.Second); p.gen != crashes+1 {
		t.Fatalf("answered by incarnation %d, want %d", p.gen, crashes+1)
	}

	starts := rec.startTimes("c")
	for i := 1; i < len(starts); i++ {
		// Restart i waits at least (1-Jitter) * min(Max, Initial*Multiplier^(i-1)).
		lower := time.Duration(float64(Delay(cfg, i-1, nil)) * (1 - cfg.Jitter))
		if gap := starts[i].Sub(starts[i-1]); gap < lower {
			t.Errorf("restart %d came %v after the previous start, before its backoff lower bound %v", i, gap, lower)
		}
	}
	evs := reg.Events()
	if len(evs) != crashes {
		t.Fatalf("%d events, want %d: %+v", len(evs), crashes, evs)
	}
	for i, e := range evs {
		capped := Delay(cfg, i, nil)
		if e.Decision != Restart || e.Attempt != i+1 || e.Restarts != i+1 || e.Child != c.Id || e.Supervisor != "p" || e.Strategy != "one-for-one" {
			t.Errorf("event %d: %+v", i, e)
		}
		if e.Backoff > capped || float64(e.Backoff) < float64(capped)*(1-cfg.Jitter)-1 {
			t.Errorf("event %d backoff %v outside ((1-J)*%v, %v]", i, e.Backoff, capped, capped)
		}
		if e.Reason != "c failed in Started" {
			t.Errorf("event %d reason %q", i, e.Reason)
		}
	}
	if got := reg.Restarts(c.Id); got != crashes {
		t.Fatalf("Registry.Restarts(%q) = %d, want %d", c.Id, got, crashes)
	}
	if strat.Pending() != 0 {
		t.Fatalf("%d restarts still pending", strat.Pending())
	}
}

// Messages sent while a child waits for its restart are kept in its
// suspended mailbox and answered by the new instance, after the delay.
func TestMailboxSuspendedDuringBackoff(t *testing.T) {
	h := newHarness(t)
	cfg := BackoffConfig{Initial: 50 * time.Millisecond, Max: time.Second, Multiplier: 2, Jitter: 0.2, MaxRestarts: 10, Window: time.Minute, ResetAfter: time.Minute}
	strat := h.strategy(NewOneForOne(cfg))
	rec := newRecorder()
	pids := make(chan map[string]*actor.PID, 1)
	h.spawn(actor.PropsFromProducer(func() actor.Actor {
		return &parent{children: []childSpec{{"c", workerProps("c", rec, nil)}}, pids: pids}
	}, actor.WithSupervisor(strat)), "p")
	c := recvPIDs(t, pids)["c"]
	if p := h.ping(c, 5*time.Second); p.gen != 1 || p.count != 1 {
		t.Fatalf("before failure: %+v", p)
	}

	sent := time.Now()
	h.system.Root.Send(c, &boom{reason: "kaput"})
	p := h.ping(c, 5*time.Second)
	waited := time.Since(sent)
	if p.gen != 2 || p.count != 1 {
		t.Fatalf("after failure answered by %+v, want a fresh second incarnation", p)
	}
	if lower := time.Duration(float64(cfg.Initial) * (1 - cfg.Jitter)); waited < lower {
		t.Fatalf("answered %v after the failure, before the backoff lower bound %v", waited, lower)
	}
}

// More failures than the budget escalate to the supervisor's parent, whose
// own strategy then decides about the supervisor.
func TestBudgetExhaustionEscalatesToGrandparent(t *testing.T) {
	h := newHarness(t)
	cfg := TestBackoffConfig()
	cfg.MaxRestarts = 2
	reg := NewRegistry(16)
	inner := h.strategy(NewOneForOne(cfg, WithSink(reg)))

	type failure struct {
		who    string
		reason any
	}
	seen := make(chan failure, 4)
	// The grandparent's strategy records what reaches it and stops the
	// failed supervisor for good.
	outer := SupervisorFunc(func(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, _ *actor.RestartStatistics, reason, _ any) {
		seen <- failure{child.Id, reason}
		sup.StopChildren(child)
	})

	rec := newRecorder()
	var fails atomic.Int32
	fails.Store(1000) // always crashes
	terminated := make(chan string, 4)
	mid := actor.PropsFromProducer(func() actor.Actor {
		return &parent{name: "mid", rec: rec, children: []childSpec{{"c", workerProps("c", rec, &fails)}}}
	}, actor.WithSupervisor(inner))
	h.spawn(actor.PropsFromProducer(func() actor.Actor {
		return &parent{children: []childSpec{{"mid", mid}}, terminated: terminated}
	}, actor.WithSupervisor(outer)), "g")

	select {
	case f := <-seen:
		if f.who != "g/mid" {
			t.Fatalf("grandparent saw failure of %q, want g/mid", f.who)
		}
		if err, ok := f.reason.(error); !ok || err.Error() != "c failed in Started" {
			t.Fatalf("escalated reason %v, want the child's", f.reason)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("failure never reached the grandparent")
	}
	select {
	case who := <-terminated:
		if who != "g/mid" {
			t.Fatalf("terminated %q", who)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("grandparent's Stop did not take effect")
	}
	if got := len(rec.startTimes("c")); got != cfg.MaxRestarts+1 {
		t.Fatalf("child started %d times, want %d (first start + MaxRestarts restarts)", got, cfg.MaxRestarts+1)
	}
	want := []Decision{Restart, Restart, Escalate}
	if got := decisions(reg.Events()); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("decisions %v, want %v", got, want)
	}
	st, ok := reg.Child("g/mid/c")
	if !ok || st.Restarts != 2 || st.Failures != 3 || st.LastDecision != Escalate || st.Supervisor != "g/mid" {
		t.Fatalf("registry status %+v", st)
	}
}

// SupervisorFunc adapts a function to actor.SupervisorStrategy (test helper).
type SupervisorFunc func(system *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason, message any)

func (f SupervisorFunc) HandleFailure(system *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason, message any) {
	f(system, sup, child, rs, reason, message)
}

func TestBudgetExhaustionStops(t *testing.T) {
	h := newHarness(t)
	cfg := TestBackoffConfig()
	cfg.MaxRestarts = 3
	reg := NewRegistry(16)
	strat := h.strategy(NewOneForOne(cfg, WithSink(reg), WithGiveUp(Stop)))
	rec := newRecorder()
	var fails atomic.Int32
	fails.Store(1000)
	terminated := make(chan string, 4)
	pids := make(chan map[string]*actor.PID, 1)
	h.spawn(actor.PropsFromProducer(func() actor.Actor {
		return &parent{name: "p", rec: rec, children: []childSpec{{"c", workerProps("c", rec, &fails)}}, pids: pids, terminated: terminated}
	}, actor.WithSupervisor(strat)), "p")
	c := recvPIDs(t, pids)["c"]
	select {
	case who := <-terminated:
		if who != c.Id {
			t.Fatalf("terminated %q, want %q", who, c.Id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("child was not stopped after exhausting its budget")
	}
	if got := len(rec.startTimes("c")); got != cfg.MaxRestarts+1 {
		t.Fatalf("child started %d times, want %d", got, cfg.MaxRestarts+1)
	}
	if got := len(rec.startTimes("p")); got != 1 {
		t.Fatalf("parent started %d times: the failure must not escalate with WithGiveUp(Stop)", got)
	}
	want := []Decision{Restart, Restart, Restart, Stop}
	if got := decisions(reg.Events()); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("decisions %v, want %v", got, want)
	}
	if reg.Restarts(c.Id) != 3 {
		t.Fatalf("restarts %d", reg.Restarts(c.Id))
	}
}

// All-for-one: one child's failure restarts every sibling, once, after one
// shared delay during which the siblings are suspended.
func TestAllForOneRestartsSiblings(t *testing.T) {
	h := newHarness(t)
	cfg := BackoffConfig{Initial: 40 * time.Millisecond, Max: time.Second, Multiplier: 2, Jitter: 0.25, MaxRestarts: 10, Window: time.Minute, ResetAfter: time.Minute}
	reg := NewRegistry(16)
	strat := h.strategy(NewAllForOne(cfg, WithSink(reg)))
	rec := newRecorder()
	pids := make(chan map[string]*actor.PID, 1)
	names := []string{"a", "b", "c"}
	h.spawn(actor.PropsFromProducer(func() actor.Actor {
		p := &parent{pids: pids}
		for _, n := range names {
			p.children = append(p.children, childSpec{n, workerProps(n, rec, nil)})
		}
		return p
	}, actor.WithSupervisor(strat)), "p")
	kids := recvPIDs(t, pids)
	for _, n := range names {
		h.ping(kids[n], 5*time.Second)
	}

	sent := time.Now()
	h.system.Root.Send(kids["b"], &boom{reason: errors.New("b broke")})
	eventually(t, "b's failure handled", func() bool { return len(reg.Events()) == 1 })
	// a is suspended until the group restart: its answer comes from a new
	// instance, and not before the delay.
	p := h.ping(kids["a"], 5*time.Second)
	if waited, lower := time.Since(sent), time.Duration(float64(cfg.Initial)*(1-cfg.Jitter)); waited < lower {
		t.Fatalf("sibling answered %v after the failure, before the backoff lower bound %v", waited, lower)
	}
	if p.gen != 2 || p.count != 1 {
		t.Fatalf("sibling answered as %+v, want its second incarnation", p)
	}
	for _, n := range names {
		eventually(t, n+" restarted", func() bool { return len(rec.startTimes(n)) == 2 && rec.stopCount(n) == 0 })
	}
	evs := reg.Events()
	if len(evs) != 1 || evs[0].Child != kids["b"].Id || evs[0].Strategy != "all-for-one" || evs[0].Decision != Restart {
		t.Fatalf("events %+v", evs)
	}
	// Everyone stays at exactly two incarnations (no double restart).
	time.Sleep(2 * cfg.Initial)
	for _, n := range names {
		if got := len(rec.startTimes(n)); got != 2 {
			t.Fatalf("%s started %d times, want 2", n, got)
		}
	}
}

// The protoactor facts the supervision tree relies on: a restart builds a
// new instance, stops the restarted actor's children first, runs Started
// again (where they are respawned), and keeps the PID.
func TestRestartRerunsStartedAndRespawnsChildren(t *testing.T) {
	h := newHarness(t)
	reg := NewRegistry(8)
	strat := h.strategy(NewOneForOne(TestBackoffConfig(), WithSink(reg)))
	rec := newRecorder()
	pids := make(chan map[string]*actor.PID, 4)
	grandkids := make(chan map[string]*actor.PID, 4)
	mid := actor.PropsFromProducer(func() actor.Actor {
		return &parent{name: "mid", rec: rec, pids: grandkids, children: []childSpec{{"w", workerProps("w", rec, nil)}}}
	})
	h.spawn(actor.PropsFromProducer(func() actor.Actor {
		return &parent{children: []childSpec{{"mid", mid}}, pids: pids}
	}, actor.WithSupervisor(strat)), "top")
	midPID := recvPIDs(t, pids)["mid"]
	w1 := recvPIDs(t, grandkids)["w"]
	if p := h.ping(w1, 5*time.Second); p.count != 1 {
		t.Fatalf("%+v", p)
	}

	h.system.Root.Send(midPID, &boom{reason: "mid broke"})
	w2 := recvPIDs(t, grandkids)["w"] // Started ran again and respawned w
	if len(rec.startTimes("mid")) != 2 {
		t.Fatalf("mid started %d times", len(rec.startTimes("mid")))
	}
	if rec.stopCount("mid") != 0 {
		t.Fatal("a restart must not deliver Stopped to the restarted actor")
	}
	if rec.stopCount("w") != 1 {
		t.Fatalf("the old grandchild got Stopped %d times, want 1: a restart stops children", rec.stopCount("w"))
	}
	if !w1.Equal(w2) {
		t.Fatalf("respawned child has PID %v, want the same %v", w2, w1)
	}
	// The grandchild is a fresh instance: its state started over.
	if p := h.ping(w2, 5*time.Second); p.gen != 2 || p.count != 1 {
		t.Fatalf("respawned grandchild answered %+v", p)
	}
	if reg.Restarts(midPID.Id) != 1 {
		t.Fatalf("restarts of %s: %d", midPID.Id, reg.Restarts(midPID.Id))
	}
}

// A top-level actor under actor.WithGuardian is restarted with backoff, and
// when its budget is exhausted it is stopped (a guardian cannot escalate).
func TestGuardianSupervisedTopLevelActor(t *testing.T) {
	h := newHarness(t)
	cfg := TestBackoffConfig()
	cfg.MaxRestarts = 2
	reg := NewRegistry(8)
	strat := h.strategy(NewOneForOne(cfg, WithSink(reg)))
	rec := newRecorder()
	var fails atomic.Int32
	fails.Store(1000)
	pid, err := h.system.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor {
		return &worker{name: "top", rec: rec, failStarts: &fails}
	}, actor.WithGuardian(strat)), "top")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "give up", func() bool { return len(reg.Events()) == 3 })
	eventually(t, "stopped", func() bool { return rec.stopCount("top") == 1 })
	if _, alive := h.system.ProcessRegistry.Get(pid); alive {
		t.Fatalf("%s still registered after the guardian stopped it", pid.Id)
	}
	want := []Decision{Restart, Restart, Stop}
	if got := decisions(reg.Events()); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("decisions %v, want %v", got, want)
	}
	if got := len(rec.startTimes("top")); got != 3 {
		t.Fatalf("started %d times, want 3", got)
	}
}
