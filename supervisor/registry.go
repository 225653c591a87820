package supervisor

import (
	"slices"
	"strings"
	"sync"
	"time"
)

// ChildStatus is what the Registry knows about one child.
type ChildStatus struct {
	Child      string `json:"child"`
	Supervisor string `json:"supervisor"`
	// Failures counts every failure reported for the child.
	Failures int `json:"failures"`
	// Restarts counts the failures that were answered with a restart.
	Restarts     int           `json:"restarts"`
	LastFailure  time.Time     `json:"last_failure"`
	LastReason   string        `json:"last_reason"`
	LastDecision Decision      `json:"last_decision"`
	LastBackoff  time.Duration `json:"last_backoff_ns"`
}

// Registry is an EventSink that keeps, per child id, how often it failed
// and was restarted, plus the last N events. Child ids are PID ids, which
// protoactor keeps across restarts, so counts accumulate over a child's
// restarts. Safe for concurrent use.
//
// Entries are kept until Forget: a child that is stopped for good still
// shows its history, which is what a status page wants.
type Registry struct {
	mu       sync.Mutex
	max      int
	events   []Event // ring buffer of the last max events
	next     int     // where the next event goes once the ring is full
	children map[string]*ChildStatus
}

// NewRegistry returns a registry that keeps the last maxEvents events
// (at least 1).
func NewRegistry(maxEvents int) *Registry {
	if maxEvents < 1 {
		maxEvents = 1
	}
	return &Registry{max: maxEvents, children: map[string]*ChildStatus{}}
}

// Record implements EventSink.
func (r *Registry) Record(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.events) < r.max {
		r.events = append(r.events, e)
	} else {
		r.events[r.next] = e
		r.next = (r.next + 1) % r.max
	}
	c := r.children[e.Child]
	if c == nil {
		c = &ChildStatus{Child: e.Child}
		r.children[e.Child] = c
	}
	c.Supervisor = e.Supervisor
	c.Failures++
	if e.Decision == Restart {
		c.Restarts++
	}
	c.LastFailure, c.LastReason, c.LastDecision, c.LastBackoff = e.Time, e.Reason, e.Decision, e.Backoff
}

// Restarts returns how many restarts were decided for the child id.
func (r *Registry) Restarts(childID string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.children[childID]; c != nil {
		return c.Restarts
	}
	return 0
}

// Child returns the status of one child.
func (r *Registry) Child(childID string) (ChildStatus, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.children[childID]; c != nil {
		return *c, true
	}
	return ChildStatus{}, false
}

// Snapshot returns the status of every child that ever failed, sorted by id.
func (r *Registry) Snapshot() []ChildStatus {
	r.mu.Lock()
	out := make([]ChildStatus, 0, len(r.children))
	for _, c := range r.children {
		out = append(out, *c)
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b ChildStatus) int { return strings.Compare(a.Child, b.Child) })
	return out
}

// Events returns the last events, oldest first.
func (r *Registry) Events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Event, 0, len(r.events))
	out = append(out, r.events[r.next:]...)
	return append(out, r.events[:r.next]...)
}

// Forget drops what the registry knows about a child (its events stay in
// the event ring until they age out).
func (r *Registry) Forget(childID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.children, childID)
}
