package supervisor

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Strategy is a protoactor SupervisorStrategy with capped, jittered
// exponential backoff and a restart budget. Build one with NewOneForOne or
// NewAllForOne and pass it to actor.WithSupervisor (for the children of an
// actor) or actor.WithGuardian (for a top-level actor).
//
// One Strategy may supervise many parents at once: its state is kept per
// child (one-for-one, keyed by the child's protoactor RestartStatistics, which
// lives as long as the child) or per supervisor (all-for-one), behind a
// mutex. State that carries no information any more (Backoff.Idle) is swept
// as new failures arrive, so a long-lived Strategy does not grow.
//
// On a failure the Decider (default: always Restart) is asked first; Stop,
// Escalate and Resume are carried out at once. For Restart the child's
// Backoff decides: within budget, the restart is scheduled after the backoff
// delay (the failed child's mailbox stays suspended meanwhile); budget
// exhausted, the strategy gives up (WithGiveUp: Escalate by default, or Stop).
//
// Escalation needs a parent: a protoactor guardian cannot escalate, so under
// actor.WithGuardian an Escalate becomes Stop (and the event says so).
type Strategy struct {
	cfg       BackoffConfig
	allForOne bool
	name      string
	decider   Decider
	giveUp    Decision
	sink      EventSink

	mu        sync.Mutex
	rng       *rand.Rand
	entries   map[any]*entry
	timers    map[*pending]struct{}
	sweepAt   int       // sweep when entries reaches this size...
	nextSweep time.Time // ...or at this time, whichever comes first
	closed    bool
}

// entry is the bookkeeping of one child (one-for-one) or one supervisor's
// group of children (all-for-one).
type entry struct {
	b *Backoff
	// pending is the all-for-one group restart that is waiting for its delay;
	// failures of siblings meanwhile join it instead of starting another.
	pending *pending
}

// pending is a restart waiting for its delay.
type pending struct {
	timer *time.Timer
	at    time.Time
	pids  []*actor.PID
}

// Option configures a Strategy.
type Option func(*Strategy)

// WithDecider sets the function that chooses a Decision from a failure's
// reason. Default: always Restart.
func WithDecider(d Decider) Option { return func(s *Strategy) { s.decider = d } }

// WithGiveUp sets what happens when the restart budget is exhausted:
// Escalate (default) or Stop. Other decisions make the constructor panic.
func WithGiveUp(d Decision) Option { return func(s *Strategy) { s.giveUp = d } }

// WithSink adds a sink for supervision events. It may be given several
// times; every sink receives every event.
func WithSink(sink EventSink) Option {
	return func(s *Strategy) { s.sink = MultiSink(s.sink, sink) }
}

// WithRand sets the source of jitter. Default: a PCG seeded from the clock.
// The Strategy serializes its use, so r need not be safe for concurrent use,
// but must not be used elsewhere.
func WithRand(r *rand.Rand) Option { return func(s *Strategy) { s.rng = r } }

// NewOneForOne returns a strategy that restarts (or stops, resumes,
// escalates) only the failed child. It panics if cfg is invalid (call
// cfg.Validate first) or an option is invalid.
func NewOneForOne(cfg BackoffConfig, opts ...Option) *Strategy {
	return newStrategy(cfg, false, opts)
}

// NewAllForOne returns a strategy for children that depend on each other:
// when one fails, every child of the supervisor is restarted (or stopped)
// together, after one shared backoff delay. The siblings' mailboxes are
// suspended at once so they do not go on working beside a broken sibling;
// failures of siblings during the delay join the pending restart and do not
// count against the budget again. Backoff and budget are kept per supervisor.
// Resume applies to the failed child only. It panics if cfg is invalid.
func NewAllForOne(cfg BackoffConfig, opts ...Option) *Strategy {
	return newStrategy(cfg, true, opts)
}

func newStrategy(cfg BackoffConfig, allForOne bool, opts []Option) *Strategy {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	s := &Strategy{
		cfg:       cfg,
		allForOne: allForOne,
		name:      "one-for-one",
		decider:   func(any) Decision { return Restart },
		giveUp:    Escalate,
		entries:   map[any]*entry{},
		timers:    map[*pending]struct{}{},
		sweepAt:   64,
	}
	if allForOne {
		s.name = "all-for-one"
	}
	for _, o := range opts {
		o(s)
	}
	if s.giveUp != Escalate && s.giveUp != Stop {
		panic(fmt.Errorf("%w: WithGiveUp(%v): must be Escalate or Stop", ErrInvalidConfig, s.giveUp))
	}
	if s.decider == nil {
		panic(fmt.Errorf("%w: WithDecider(nil)", ErrInvalidConfig))
	}
	if s.sink == nil {
		s.sink = multiSink(nil)
	}
	if s.rng == nil {
		now := uint64(time.Now().UnixNano())
		s.rng = rand.New(rand.NewPCG(now, now^0x9e3779b97f4a7c15))
	}
	return s
}

var _ actor.SupervisorStrategy = (*Strategy)(nil)

// HandleFailure implements actor.SupervisorStrategy. protoactor calls it on
// the supervisor's goroutine (for a guardian: on the failed child's).
func (s *Strategy) HandleFailure(system *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason, message any) {
	now := time.Now()
	ev := Event{
		Time:       now,
		Supervisor: supervisorID(sup),
		Child:      child.GetId(),
		Reason:     formatReason(reason),
		Strategy:   s.name,
	}
	ev.Decision = s.decider(reason)
	switch ev.Decision {
	case Resume:
		s.record(system, child, reason, ev)
		sup.ResumeChildren(child)
	case Stop:
		s.record(system, child, reason, ev)
		s.stop(sup, child)
	case Escalate:
		s.escalateOrStop(system, sup, child, reason, message, ev)
	default:
		ev.Decision = Restart
		s.restart(system, sup, child, rs, reason, message, now, ev)
	}
}

func (s *Strategy) restart(system *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason, message any, now time.Time, ev Event) {
	var key any = rs
	if s.allForOne {
		key = sup
	} else if rs == nil {
		key = child.GetAddress() + "/" + child.GetId()
	}

	s.mu.Lock()
	e := s.entries[key]
	if e == nil {
		s.sweepLocked(now)
		e = &entry{b: NewBackoff(s.cfg)}
		s.entries[key] = e
	}
	if p := e.pending; p != nil {
		// All-for-one: a sibling failed while the group restart waits.
		// It is suspended already and the pending restart covers it.
		if !slices.ContainsFunc(p.pids, child.Equal) {
			p.pids = append(p.pids, child)
		}
		ev.Backoff = max(p.at.Sub(now), 0)
		ev.Attempt = e.b.step
		ev.Restarts = len(e.b.failures)
		s.mu.Unlock()
		s.record(system, child, reason, ev)
		return
	}
	v := e.b.Failure(now, s.rng)
	ev.Restarts = v.Failures
	if !v.Restart {
		delete(s.entries, key)
		s.mu.Unlock()
		if s.giveUp == Stop {
			ev.Decision = Stop
			s.record(system, child, reason, ev)
			s.stop(sup, child)
			return
		}
		s.escalateOrStop(system, sup, child, reason, message, ev)
		return
	}
	ev.Attempt, ev.Backoff = v.Attempt, v.Delay
	p := &pending{at: now.Add(v.Delay), pids: []*actor.PID{child}}
	if s.allForOne {
		p.pids = groupOf(sup, child)
		e.pending = p
	}
	s.mu.Unlock()

	if s.allForOne {
		suspend(system, child, p.pids)
	}
	// Record before scheduling, so the event of this failure is always
	// recorded before anything the restarted child does.
	s.record(system, child, reason, ev)

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		if e.pending == p {
			e.pending = nil
		}
		return
	}
	s.timers[p] = struct{}{}
	p.timer = time.AfterFunc(v.Delay, func() { s.fire(sup, e, p) })
}

// fire carries out a pending restart.
func (s *Strategy) fire(sup actor.Supervisor, e *entry, p *pending) {
	s.mu.Lock()
	if _, ok := s.timers[p]; !ok { // cancelled by Close
		s.mu.Unlock()
		return
	}
	delete(s.timers, p)
	if e.pending == p {
		e.pending = nil
	}
	pids := p.pids
	s.mu.Unlock()
	sup.RestartChildren(pids...)
}

// escalateOrStop escalates the failure to the supervisor's parent, or stops
// when the supervisor cannot escalate (a guardian panics if asked to).
func (s *Strategy) escalateOrStop(system *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, reason, message any, ev Event) {
	if _, hasParent := sup.(interface{ Self() *actor.PID }); !hasParent {
		ev.Decision = Stop
		s.record(system, child, reason, ev)
		s.stop(sup, child)
		return
	}
	ev.Decision = Escalate
	s.record(system, child, reason, ev)
	sup.EscalateFailure(reason, message)
}

func (s *Strategy) stop(sup actor.Supervisor, child *actor.PID) {
	if s.allForOne {
		sup.StopChildren(groupOf(sup, child)...)
		return
	}
	sup.StopChildren(child)
}

// record reports ev to the sinks and, like protoactor's own strategies, on
// the system's EventStream (escalations are left to the parent, as there).
func (s *Strategy) record(system *actor.ActorSystem, child *actor.PID, reason any, ev Event) {
	s.sink.Record(ev)
	if system != nil && ev.Decision != Escalate {
		system.EventStream.Publish(&actor.SupervisorEvent{Child: child, Reason: reason, Directive: ev.Decision.Directive()})
	}
}

// sweepLocked drops idle state when the map has doubled since the last
// sweep or a full Window+ResetAfter has passed since it, whichever comes
// first: amortized O(1) per failure, and nothing outlives its information by
// more than about two such periods.
func (s *Strategy) sweepLocked(now time.Time) {
	if len(s.entries) < s.sweepAt && now.Before(s.nextSweep) {
		return
	}
	for k, e := range s.entries {
		if e.pending == nil && e.b.Idle(now) {
			delete(s.entries, k)
		}
	}
	s.sweepAt = max(64, 2*len(s.entries))
	s.nextSweep = now.Add(s.cfg.Window + s.cfg.ResetAfter)
}

// Pending returns how many restarts are waiting for their delay.
func (s *Strategy) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.timers)
}

// Close cancels every pending restart and makes later restarts no-ops (the
// failed children stay suspended). Call it when shutting an actor system
// down, so no restart fires into a stopped system.
func (s *Strategy) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for p := range s.timers {
		p.timer.Stop()
		delete(s.timers, p)
	}
	for _, e := range s.entries {
		e.pending = nil
	}
}

// groupOf returns a copy of the supervisor's children, the failed child
// included. A guardian does not know its children; then only the child.
func groupOf(sup actor.Supervisor, child *actor.PID) (pids []*actor.PID) {
	defer func() {
		if recover() != nil {
			pids = []*actor.PID{child}
		}
	}()
	pids = slices.Clone(sup.Children())
	if !slices.ContainsFunc(pids, child.Equal) {
		pids = append(pids, child)
	}
	return pids
}

// suspend suspends the mailboxes of the failed child's siblings so they stop
// processing until the group restart (which resumes them).
func suspend(system *actor.ActorSystem, failed *actor.PID, pids []*actor.PID) {
	if system == nil {
		return
	}
	for _, pid := range pids {
		if pid.Equal(failed) {
			continue // suspended itself already
		}
		if proc, ok := system.ProcessRegistry.Get(pid); ok {
			proc.SendSystemMessage(pid, &actor.SuspendMailbox{})
		}
	}
}

func supervisorID(sup actor.Supervisor) string {
	if s, ok := sup.(interface{ Self() *actor.PID }); ok {
		return s.Self().GetId()
	}
	return "guardian"
}

func formatReason(reason any) string {
	switch r := reason.(type) {
	case error:
		return r.Error()
	case string:
		return r
	case fmt.Stringer:
		return r.String()
	default:
		return fmt.Sprint(r)
	}
}
