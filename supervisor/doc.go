// Package supervisor holds Tempest's restart strategies and supervision
// events, built on protoactor-go's actor package and nothing else of ours.
//
// # Why our own strategies
//
// protoactor-go ships OneForOne and AllForOne strategies that restart a
// failed child at once (no delay at all) and an "exponential backoff"
// strategy whose delay is FailureCount*initialBackoff plus up to 500ns of
// noise: linear, unbounded and effectively unjittered. A crash-looping
// actor under OneForOne burns its whole restart budget in microseconds; under
// the backoff strategy it waits longer and longer without limit and many
// actors failing together retry in lock step. Neither has a restart budget
// and backoff at the same time.
//
// The strategies here ([NewOneForOne], [NewAllForOne]) combine both:
//
//   - the n-th restart in a run of failures waits
//     min(Max, Initial*Multiplier^n) scaled by a random factor in
//     (1-Jitter, 1] drawn from an injected *rand.Rand ([Delay]);
//   - a child that stayed up for ResetAfter since its last restart starts
//     again from Initial;
//   - more than MaxRestarts failures inside Window exhaust the budget and the
//     supervisor gives up: it escalates the failure to its own parent (default)
//     or stops the child.
//
// The bookkeeping is a pure state machine ([Backoff]) driven with an explicit
// clock so it is tested without sleeping.
//
// # What a delayed restart means in protoactor
//
// When Receive panics, the child's mailbox suspends itself and a Failure goes
// to the parent, whose strategy runs HandleFailure on the parent's goroutine.
// The strategies here schedule supervisor.RestartChildren with time.AfterFunc
// (as protoactor's backoff strategy does); until the timer fires the child's
// mailbox stays suspended, so messages sent to it queue up and are processed
// by the new instance. A restart builds a NEW actor instance from the Props'
// producer (fields of the old instance are gone), first STOPS all of the
// child's own children, and then delivers *actor.Started to the new
// instance. Actors that own children must therefore spawn them in their
// *actor.Started handler, which runs after the first start and after every
// restart. The PID (and so the actor id) survives restarts, which is why
// [Registry] can count restarts per child id.
//
// # Events
//
// Every decision is reported as an [Event] to an [EventSink]: the [Registry]
// (restart counts per child and the last N events, for status pages and load
// monitors), a zap logger ([NewZapSink]), or several at once ([MultiSink]).
// Decisions are also published on the actor system's EventStream as
// *actor.SupervisorEvent, like protoactor's own strategies do.
//
// protoactor logs through log/slog; [SlogToZap] and [LoggerFactory] route it
// into zap so a process has one logger:
//
//	system := actor.NewActorSystem(actor.WithLoggerFactory(supervisor.LoggerFactory(log)))
package supervisor
