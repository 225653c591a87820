package actors

import (
	"context"
	"fmt"
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
// a request for service/method. On success the returned context carries the
// admission (pass it to Call) and done must be called once the answer is
// handed on to be written, with when: an answer that left after the
// request's deadline (its goroutine ran late: a saturated CPU, a GC pause)
// is counted in status (deadlines.written_late). A refusal is a 503
// overloaded error with a RetryAfter hint.
// timeout is the request's budget as it will be given to Call (0: the
// method's default): the burst allowance admits past the limit what can
// still start within its share of it.
func (n *Node) Admit(ctx context.Context, service, method string, timeout time.Duration) (context.Context, func(time.Time), error) {
	nop := func(time.Time) {}
	class, budget := 0, time.Duration(0)
	if rt := n.services[service]; rt != nil {
		if m, ok := rt.methods[method]; ok {
			class, budget = m.Priority, n.budget(m, timeout)
		}
	}
	arrived, fromGateway := gateway.Arrival(ctx)
	if !fromGateway {
		arrived = time.Now()
	}
	var deadline time.Time // zero: unknown method, nothing to count
	if budget > 0 {
		deadline = arrived.Add(budget)
	}
	if n.adm == nil {
		return ctx, func(at time.Time) { n.countWrittenLate(deadline, at) }, nil
	}
	// A request whose budget ran out (or nearly) while its bytes waited to
	// be read is refused here, before the limiter and the body: under a
	// backlog that is most requests, and the cheaper each is refused, the
	// sooner the backlog is gone (Node.Call would refuse it later, after
	// the body was read and validated).
	if fromGateway && budget > 0 {
		if err := n.unmeetable(deadline, service+"/"+method+" when read"); err != nil {
			return ctx, nop, AsError(err)
		}
	}
	if err := n.acquire(class, budget, service, method); err != nil {
		return ctx, nop, AsError(err)
	}
	return context.WithValue(ctx, admitTicket{}, true), func(at time.Time) {
		n.countWrittenLate(deadline, at)
		n.release()
	}, nil
}

// countWrittenLate counts an admitted request's answer handed to the write
// at at, after its deadline (zero: none known).
func (n *Node) countWrittenLate(deadline, at time.Time) {
	if !deadline.IsZero() && at.After(deadline) {
		n.writtenLate.Add(1)
	}
}

func (n *Node) acquire(class int, budget time.Duration, service, method string) error {
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
	ok, retry := n.adm.AcquireWithin(now, class, budget)
	n.admMu.Unlock()
	if ok {
		return nil
	}
	return retryAfter{fmt.Errorf("%s/%s: node at its admission limit, retry after %v: %w", service, method, retry, ErrOverloaded), retry}
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
