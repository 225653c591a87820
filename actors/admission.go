package actors

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/tempestrt/tempest/gateway"
	"github.com/tempestrt/tempest/internal/admission"
)

// The node's front door (internal/admission): a concurrency limit that
// follows the measured queueing delay. Every request is admitted or refused
// here before its body is read (gateway) or any actor sees it (Node.Call),
// so a refusal costs microseconds and cannot eat the CPU that admitted
// requests need. The limiter is a pure core; the node serialises it with a
// mutex held for a few instructions per request.

// retryAfter marks an error with how long the client should wait before
// trying again; AsError copies it into Error.RetryAfter.
type retryAfter struct {
	error
	after time.Duration
}

func (r retryAfter) Unwrap() error { return r.error }

// admitTicket marks a context whose request the node admitted already
// (Node.Admit, from the gateway): Node.Call must not admit it again.
type admitTicket struct{}

// Admit decides, before the request's body is read, whether the node takes
// a request (gateway.Backend's Admit). Admitted, the returned context
// carries the admission and the request's arrival (pass it to Call), and
// Done must be called once the answer is handed on to be written, with
// when: an answer that left after the request's deadline (its goroutine
// ran late: a saturated CPU, a GC pause) is counted in status
// (deadlines.written_late). Refused, the refusal is a 503: overloaded,
// with a RetryAfter hint, or deadline_unmeetable for a request whose
// budget ran out while its bytes waited to be read. The refusals are
// errors made when the node started (methodRefusals): a refusal
// allocates nothing, and cannot be held by the garbage collector (an
// allocation during a mark phase may be made to assist it, milliseconds
// with the CPU saturated; TestRefusalDoesNotAllocate).
// req.Timeout is the request's budget as it will be given to Call (0: the
// method's default): the burst allowance admits past the limit what can
// still start within its share of it.
func (n *Node) Admit(ctx context.Context, req gateway.AdmitRequest) gateway.Admission {
	class, budget := 0, time.Duration(0)
	refusals := n.anyRefusals
	if rt := n.services[req.Service]; rt != nil {
		if m, ok := rt.methods[req.Method]; ok {
			class, budget = m.Priority, n.budget(m, req.Timeout)
			refusals = rt.refusals[req.Method]
		}
	}
	fromGateway := !req.Arrived.IsZero()
	arrived := req.Arrived
	if !fromGateway {
		arrived = time.Now()
	}
	var deadline time.Time // zero: unknown method, nothing to count
	if budget > 0 {
		deadline = arrived.Add(budget)
	}
	// A request whose budget ran out (or nearly) while its bytes waited to
	// be read is refused here, before the limiter and the body: under a
	// backlog that is most requests, and the cheaper each is refused, the
	// sooner the backlog is gone (Node.Call would refuse it later, after
	// the body was read and validated).
	if n.adm != nil {
		if fromGateway && budget > 0 {
			if _, ok := n.meetable(deadline); !ok {
				return gateway.Admission{Refused: refusals.late}
			}
		}
		if ok, retry := n.tryAcquire(class, budget); !ok {
			return gateway.Admission{Refused: refusals.overloaded, RetryAfter: retry}
		}
	}
	if fromGateway {
		headers := req.Headers
		if headers.IsZero() {
			headers = arrived
		}
		ctx = gateway.WithArrivalAndHeaders(ctx, arrived, headers)
	}
	if n.adm == nil {
		return gateway.Admission{Ctx: ctx, Done: func(at time.Time) { n.countWrittenLate(deadline, at) }}
	}
	return gateway.Admission{Ctx: context.WithValue(ctx, admitTicket{}, true), Done: func(at time.Time) {
		n.countWrittenLate(deadline, at)
		n.release()
	}}
}

// methodRefusals are a method's refusals at admission, made once: Admit
// returns them as they are (see Admit). The Retry-After hint, which
// changes, travels beside the error (gateway.Admission.RetryAfter).
type methodRefusals struct {
	overloaded, late *Error
}

func newMethodRefusals(name string) *methodRefusals {
	return &methodRefusals{
		overloaded: &Error{Status: http.StatusServiceUnavailable, Code: "overloaded", cause: ErrOverloaded,
			Message: name + ": node at its admission limit, retry after the Retry-After time"},
		late: &Error{Status: http.StatusServiceUnavailable, Code: "deadline_unmeetable", cause: ErrDeadlineUnmeet,
			Message: name + ": its budget ran out (or nearly) before the node read it"},
	}
}

// countWrittenLate counts an admitted request's answer handed to the write
// at at, after its deadline (zero: none known).
func (n *Node) countWrittenLate(deadline, at time.Time) {
	if !deadline.IsZero() && at.After(deadline) {
		n.writtenLate.Add(1)
	}
}

// acquire is tryAcquire for Node.Call's own admission, its refusal as an
// error.
func (n *Node) acquire(class int, budget time.Duration, service, method string) error {
	if ok, retry := n.tryAcquire(class, budget); !ok {
		return retryAfter{fmt.Errorf("%s/%s: node at its admission limit, retry after %v: %w", service, method, retry, ErrOverloaded), retry}
	}
	return nil
}

// tryAcquire asks the limiter for a slot; refused, retry is its hint.
func (n *Node) tryAcquire(class int, budget time.Duration) (ok bool, retry time.Duration) {
	n.admMu.Lock()
	now := time.Now()
	if now.Sub(n.schedReadAt) >= n.cfg.Admission.Interval {
		// Once per interval, on the request path (no goroutine of its own):
		// a few microseconds.
		n.schedReadAt = now
		p99 := n.sched.read(0.99)
		n.adm.ObserveScheduling(now, p99)
		n.schedP99.Store(int64(p99))
	}
	ok, retry = n.adm.AcquireWithin(now, class, budget)
	n.admMu.Unlock()
	return ok, retry
}

func (n *Node) release() {
	n.admMu.Lock()
	n.adm.Release(time.Now())
	n.admMu.Unlock()
}

// observeDelay feeds the limiter a request's queueing delay: from its
// arrival to its handler's start (or to giving up, if it never started),
// and its whole budget.
func (n *Node) observeDelay(delay, budget time.Duration) {
	if n.adm == nil {
		return
	}
	n.admMu.Lock()
	n.adm.Observe(time.Now(), delay, budget)
	n.admMu.Unlock()
}

// admissionStats is the limiter's snapshot for status.
func (n *Node) admissionStats() *admission.Stats {
	if n.adm == nil {
		return nil
	}
	n.admMu.Lock()
	defer n.admMu.Unlock()
	st := n.adm.Stats()
	return &st
}

// admitted reports whether ctx carries the gateway's admission.
func admitted(ctx context.Context) bool { return ctx.Value(admitTicket{}) != nil }
