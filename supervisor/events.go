package supervisor

import (
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"
)

// Decision is what a supervisor does about a failed child.
type Decision int

const (
	// Restart replaces the child with a new instance (after a backoff delay).
	Restart Decision = iota
	// Stop stops the child (for all-for-one: every child).
	Stop
	// Escalate hands the failure to the supervisor's own parent: the
	// supervisor's mailbox is suspended and its parent's strategy decides
	// about the supervisor (typically restarting it, which stops and respawns
	// all of its children).
	Escalate
	// Resume lets the child go on with its next message, keeping its state.
	Resume
)

var decisionNames = [...]string{Restart: "restart", Stop: "stop", Escalate: "escalate", Resume: "resume"}

func (d Decision) String() string {
	if d >= 0 && int(d) < len(decisionNames) {
		return decisionNames[d]
	}
	return fmt.Sprintf("decision(%d)", int(d))
}

// MarshalText makes a Decision read as its name in JSON.
func (d Decision) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses a name written by MarshalText.
func (d *Decision) UnmarshalText(b []byte) error {
	for i, n := range decisionNames {
		if n == string(b) {
			*d = Decision(i)
			return nil
		}
	}
	return fmt.Errorf("supervisor: unknown decision %q", b)
}

// Directive is the protoactor directive with the same meaning.
func (d Decision) Directive() actor.Directive {
	switch d {
	case Stop:
		return actor.StopDirective
	case Escalate:
		return actor.EscalateDirective
	case Resume:
		return actor.ResumeDirective
	default:
		return actor.RestartDirective
	}
}

// Decider chooses what to do about a failure from its reason (the value the
// child panicked with). Decisions other than Restart bypass backoff and the
// restart budget.
type Decider func(reason any) Decision

// DeciderFromDirective adapts a protoactor DeciderFunc.
func DeciderFromDirective(f actor.DeciderFunc) Decider {
	return func(reason any) Decision {
		switch f(reason) {
		case actor.StopDirective:
			return Stop
		case actor.EscalateDirective:
			return Escalate
		case actor.ResumeDirective:
			return Resume
		default:
			return Restart
		}
	}
}

// Event reports one supervision decision about one failure.
type Event struct {
	// Time is when the supervisor handled the failure.
	Time time.Time `json:"time"`
	// Supervisor is the id of the supervising actor ("guardian" for a
	// protoactor guardian).
	Supervisor string `json:"supervisor"`
	// Child is the id of the child that failed (its PID's Id, which survives
	// restarts).
	Child string `json:"child"`
	// Reason is the panic value, formatted.
	Reason string `json:"reason"`
	// Restarts is the number of failures inside the budget Window, this one
	// included: the figure compared with MaxRestarts. 0 for decisions that
	// bypass the budget (Decider said Stop, Escalate or Resume).
	Restarts int `json:"restarts"`
	// Attempt is the 1-based restart number within the current run of
	// failures (it selects the backoff delay); 0 unless Decision is Restart.
	Attempt int `json:"attempt,omitempty"`
	// Backoff is the delay before the restart; 0 unless Decision is Restart.
	Backoff time.Duration `json:"backoff_ns"`
	// Decision is what the supervisor did.
	Decision Decision `json:"decision"`
	// Strategy is "one-for-one" or "all-for-one".
	Strategy string `json:"strategy"`
}

// EventSink receives supervision events. Record is called on the
// supervisor's goroutine while it handles the failure (possibly from several
// supervisors at once), so it must be quick and safe for concurrent use.
type EventSink interface {
	Record(Event)
}

// SinkFunc adapts a function to EventSink.
type SinkFunc func(Event)

// Record calls f(e).
func (f SinkFunc) Record(e Event) { f(e) }

type multiSink []EventSink

func (m multiSink) Record(e Event) {
	for _, s := range m {
		s.Record(e)
	}
}

// MultiSink returns a sink that records every event to each of sinks in
// order. nil sinks are skipped.
func MultiSink(sinks ...EventSink) EventSink {
	var m multiSink
	for _, s := range sinks {
		switch s := s.(type) {
		case nil:
		case multiSink:
			m = append(m, s...)
		default:
			m = append(m, s)
		}
	}
	return m
}

type zapSink struct{ log *zap.Logger }

// NewZapSink returns a sink that logs each event: restarts and resumes at
// Warn, stops and escalations at Error. A nil logger logs nothing.
func NewZapSink(l *zap.Logger) EventSink {
	if l == nil {
		l = zap.NewNop()
	}
	return zapSink{log: l}
}

func (z zapSink) Record(e Event) {
	fields := []zap.Field{
		zap.String("supervisor", e.Supervisor),
		zap.String("child", e.Child),
		zap.String("reason", e.Reason),
		zap.Stringer("decision", e.Decision),
		zap.Int("restarts_in_window", e.Restarts),
		zap.String("strategy", e.Strategy),
	}
	if e.Decision == Restart {
		fields = append(fields, zap.Int("attempt", e.Attempt), zap.Duration("backoff", e.Backoff))
	}
	switch e.Decision {
	case Stop, Escalate:
		z.log.Error("actor failed", fields...)
	default:
		z.log.Warn("actor failed", fields...)
	}
}
