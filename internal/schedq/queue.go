// Package schedq is the core of a clone's scheduler: an earliest-deadline-
// first queue with admission control, shedding and bounded hold-back of
// updates. It is pure: no goroutines, no I/O, no actors, and no clock of its
// own (every call takes now), so the scheduler actor drives it and tests
// drive it with a fake clock.
//
// # Model
//
// A request has a method, a deadline and, for updates, a watermark. Each
// method has a service-time estimate est (EWMA of Observe'd run times: the
// time the request occupies the scheduler) and a tail estimate (EWMA of
// ObserveTail'd times from the end of the run to the answer, e.g. an
// update's op-log fsync, which runs off the scheduler). The point of no
// return of a request is
//
//	PNR = Deadline - est(method) - tail(method) - Margin
//
// A request is admissible at now while now <= PNR: started now, it is
// expected to be answered with Margin to spare. Push refuses a request that
// is not admissible (ErrDeadlineUnmeetable), and also one that would be
// admissible alone but not after the queued work EDF runs before it
// (backlog-aware admission: the expected start is now + the run estimates of
// the queued requests with earlier deadlines), and Pop sheds every queued
// request that stopped being admissible, or will have by the time the
// request it pops has run, so a request is answered in time or refused
// early, never answered late. Under overload most refusals thus happen at
// Push, with the client's budget nearly whole; Pop's shedding covers what
// admission could not foresee (a more urgent request that arrived later and
// went first, a handler slower than its estimate). Because the estimates
// change with Observe, ObserveTail and Age, PNR moves; the queue always uses
// the current estimates.
//
// Queries are ready at once. An update is held back (optimistic apply plus
// rollback would cover a later-arriving earlier op, but holding until the
// replica's stable watermark passes it avoids the rollback) until the first
// of:
//
//   - stable >= Watermark (the caller passes the replica's stable point);
//   - now >= Arrival + MaxHold (hold-back is bounded);
//   - now >= PNR - HoldSlack (holding longer would endanger the deadline).
//
// Pop returns the ready request with the earliest deadline (ties: push
// order). A held update is never returned, however urgent: that is the
// point of holding it.
//
// # Data structures
//
// Since every request of one method shares one estimate, ordering a method's
// requests by deadline also orders them by PNR and by pressure-release time.
// So each method keeps two deadline heaps (ready and held); the front of the
// ready heap is the next to shed or to serve, the front of the held heap the
// next to release under deadline pressure. Two global heaps order held
// updates by watermark and by arrival for the other two release rules. A
// request moves between heaps by index (O(log n)). Pop looks at the front of
// each active method: O(M + k log n) for M methods with queued work and k
// requests released or shed; M is the number of a service's handlers, small.
// A single global heap keyed by PNR was rejected: PNR depends on the
// method's estimate, which Observe changes, and re-keying would cost O(n).
//
// For admission, each method also keeps its queued requests (ready and
// held) in an order-statistics treap by deadline (rank.go), which counts
// the requests ahead of a newcomer in O(log n); the backlog is the sum over
// active methods of count times estimate: O(M log n) per Push. A running
// sum of estimates was rejected: it cannot answer "ahead of this deadline",
// and goes stale when Observe changes an estimate.
//
// # Overload
//
// When MaxQueue requests are queued, Push refuses the new one with
// ErrQueueFull. Evicting the queued request with the latest deadline in
// favour of a more urgent newcomer was considered and rejected: the evicted
// request's client would learn of it only at the next Pop, late and with a
// misleading error, whereas refusing at admission tells the newcomer at once
// (the gateway can try another clone), and a full queue of lax requests is
// shed by Pop anyway as soon as they become hopeless.
package schedq

import (
	"fmt"
	"time"
)

// Kind tells queries from updates.
type Kind int

const (
	// Query requests read local state; they are never held back.
	Query Kind = iota
	// Update requests produce operations; they may be held back until the
	// replica's stable watermark reaches Request.Watermark.
	Update
)

func (k Kind) String() string {
	switch k {
	case Query:
		return "query"
	case Update:
		return "update"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Request is one unit of work. The queue reads its fields and never
// changes them, except that Push sets a zero Arrival to now and sets
// RunsUntil.
type Request struct {
	ID       uint64
	Kind     Kind
	Method   string
	Arrival  time.Time
	Deadline time.Time
	// Watermark (updates): the request is ready once the replica's stable
	// watermark is >= Watermark (bounded by MaxHold and deadline pressure).
	Watermark uint64
	// Payload is opaque to the queue.
	Payload any
	// RunsUntil is set by a successful Push: when the request is expected
	// to have run, now + the run estimates of the queued work ahead of it
	// and its own (its tail not included).
	RunsUntil time.Time
}

// Stats counts what the queue did. Counters only grow.
type Stats struct {
	Queued    int `json:"queued"`     // requests queued now (ready + held)
	HeldNow   int `json:"held_now"`   // updates held back now
	MaxQueued int `json:"max_queued"` // high-water mark of Queued

	Admitted     uint64 `json:"admitted"`      // accepted by Push
	ShedAtPush   uint64 `json:"shed_at_push"`  // refused by Push: deadline unmeetable
	ShedBacklog  uint64 `json:"shed_backlog"`  // of ShedAtPush: because of the work queued ahead
	RejectedFull uint64 `json:"rejected_full"` // refused by Push: queue full
	ShedInQueue  uint64 `json:"shed_in_queue"` // shed by Pop: became unmeetable while queued
	ShedAhead    uint64 `json:"shed_ahead"`    // of ShedInQueue: would pass their point of no return while the popped request runs
	Popped       uint64 `json:"popped"`        // returned by Pop
	Held         uint64 `json:"held"`          // Pops after which at least one update was still held back

	ReleasedStable   uint64 `json:"released_stable"`   // holds ended by the stable watermark
	ReleasedPressure uint64 `json:"released_pressure"` // holds ended by deadline pressure
	ReleasedMaxHold  uint64 `json:"released_max_hold"` // holds ended by MaxHold
}

// item is a queued request and its positions in the heaps (-1: not in it).
//
// A ready item is in m.ready (pos dl). A held item is in m.held (pos dl),
// q.byWatermark (pos wm) and q.byArrival (pos arr).
type item struct {
	req  *Request
	seq  uint64 // push order, breaks ties
	m    *methodQ
	held bool
	dl   int
	wm   int
	arr  int
	rankLinks
}

// methodQ holds one method's queued requests and its estimate.
type methodQ struct {
	name   string
	est    estimate // run time; prior InitialEstimate
	tail   estimate // run end to answer; prior 0
	ready  ixheap
	held   ixheap
	all    rankSet // ready and held, for backlog-aware admission
	active int     // index in Queue.active, -1 when nothing is queued
}

// estimate is an EWMA of observed durations with a prior.
type estimate struct {
	v        time.Duration
	observed bool // v comes from an observation, not the prior
	fresh    bool // observed since the last Age
}

// observe replaces the prior with the first sample and blends later ones
// in with weight alpha. Negative samples count as 0.
func (e *estimate) observe(x time.Duration, alpha float64) {
	x = max(x, 0)
	e.fresh = true
	if !e.observed {
		e.v, e.observed = x, true
		return
	}
	e.v = time.Duration(alpha*float64(x) + (1-alpha)*float64(e.v))
}

// age moves a stale estimate above prior toward it by weight alpha (see
// Queue.Age) and starts a new freshness period.
func (e *estimate) age(prior time.Duration, alpha float64) {
	if !e.fresh && e.v > prior {
		e.v = prior + time.Duration((1-alpha)*float64(e.v-prior))
	}
	e.fresh = false
}

func (m *methodQ) len() int { return m.ready.Len() + m.held.Len() }

func byDeadline(a, b *item) bool {
	if !a.req.Deadline.Equal(b.req.Deadline) {
		return a.req.Deadline.Before(b.req.Deadline)
	}
	return a.seq < b.seq
}

// Queue is the EDF queue. Not safe for concurrent use: one scheduler actor
// owns it.
type Queue struct {
	cfg         Config
	methods     map[string]*methodQ
	active      []*methodQ // methods with queued requests
	byWatermark ixheap
	byArrival   ixheap
	n           int
	held        int
	seq         uint64
	stats       Stats
}

// New returns an empty queue.
func New(cfg Config) (*Queue, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Queue{
		cfg:     cfg,
		methods: map[string]*methodQ{},
		byWatermark: ixheap{
			less: func(a, b *item) bool {
				if a.req.Watermark != b.req.Watermark {
					return a.req.Watermark < b.req.Watermark
				}
				return a.seq < b.seq
			},
			pos: func(it *item) *int { return &it.wm },
		},
		byArrival: ixheap{
			less: func(a, b *item) bool {
				if !a.req.Arrival.Equal(b.req.Arrival) {
					return a.req.Arrival.Before(b.req.Arrival)
				}
				return a.seq < b.seq
			},
			pos: func(it *item) *int { return &it.arr },
		},
	}, nil
}

func (q *Queue) method(name string) *methodQ {
	m := q.methods[name]
	if m == nil {
		m = &methodQ{
			name:   name,
			est:    estimate{v: q.cfg.InitialEstimate},
			ready:  ixheap{less: byDeadline, pos: func(it *item) *int { return &it.dl }},
			held:   ixheap{less: byDeadline, pos: func(it *item) *int { return &it.dl }},
			active: -1,
		}
		q.methods[name] = m
	}
	return m
}

// pnr is the point of no return: the last instant at which r can start and
// still be expected to be answered Margin before its deadline.
func (q *Queue) pnr(r *Request, m *methodQ) time.Time {
	return r.Deadline.Add(-m.est.v - m.tail.v - q.cfg.Margin)
}

// Push admits r at now, or refuses it (the newcomer is refused; nothing is
// evicted, see the package doc):
//
//   - ErrDeadlineUnmeetable if Deadline-now < Estimate+Tail+Margin;
//   - ErrDeadlineUnmeetable if the queued work that EDF runs before r (see
//     Backlog) plus r's own estimate and Margin does not fit before the
//     deadline: under overload the client learns at once, with its budget
//     nearly whole (a caller can try another clone), instead of at r's point
//     of no return;
//   - ErrQueueFull if MaxQueue requests are queued.
//
// A zero Arrival is set to now; RunsUntil is set on success.
func (q *Queue) Push(now time.Time, r *Request) error {
	if r == nil {
		return ErrNilRequest
	}
	need := q.Estimate(r.Method) + q.Tail(r.Method)
	left := r.Deadline.Sub(now)
	if left < need+q.cfg.Margin {
		q.stats.ShedAtPush++
		return fmt.Errorf("%w: request %d (%s) has %v left, needs %v + margin %v",
			ErrDeadlineUnmeetable, r.ID, r.Method, left, need, q.cfg.Margin)
	}
	probe := &item{req: r, seq: q.seq + 1}
	ahead, n := q.backlog(probe)
	if left < ahead+need+q.cfg.Margin {
		q.stats.ShedAtPush++
		q.stats.ShedBacklog++
		return fmt.Errorf("%w: request %d (%s) has %v left, but %d queued requests with earlier deadlines need about %v, and it needs %v + margin %v",
			ErrDeadlineUnmeetable, r.ID, r.Method, left, n, ahead, need, q.cfg.Margin)
	}
	if q.n >= q.cfg.MaxQueue {
		q.stats.RejectedFull++
		return fmt.Errorf("%w: %d requests queued", ErrQueueFull, q.n)
	}
	if r.Arrival.IsZero() {
		r.Arrival = now
	}
	r.RunsUntil = now.Add(ahead + q.Estimate(r.Method))
	m := q.method(r.Method)
	q.seq++
	it := &item{req: r, seq: q.seq, m: m, dl: -1, wm: -1, arr: -1}
	m.all.add(it)
	if r.Kind == Update {
		it.held = true
		m.held.add(it)
		q.byWatermark.add(it)
		q.byArrival.add(it)
		q.held++
	} else {
		m.ready.add(it)
	}
	if m.active < 0 {
		m.active = len(q.active)
		q.active = append(q.active, m)
	}
	q.n++
	q.stats.Admitted++
	q.stats.MaxQueued = max(q.stats.MaxQueued, q.n)
	return nil
}

// release moves a held update to its method's ready heap.
func (q *Queue) release(it *item, counter *uint64) {
	it.m.held.remove(it)
	q.byWatermark.remove(it)
	q.byArrival.remove(it)
	it.held = false
	q.held--
	it.m.ready.add(it)
	*counter++
}

// Pop advances the queue to now with the replica's stable watermark:
//
//  1. releases held updates whose watermark is <= stable, whose MaxHold has
//     passed, or whose point of no return is within HoldSlack;
//  2. sheds every request that is no longer admissible
//     (now > Deadline - estimate - Margin), returned in shed, earliest
//     deadline first within a method;
//  3. returns the ready request with the earliest deadline (nil if none),
//     and also sheds every other ready request whose point of no return
//     falls before that one is expected to finish running (now + its
//     estimate): the caller runs one request at a time, so they could not
//     start in time, and refusing them now is earlier than at the next Pop.
//
// wake is the earliest time at which the passage of time alone changes what
// Pop would do (a hold expiring, pressure release, a request to shed); zero
// when the queue is empty. It is always after now. The caller should call
// Pop again by wake, and also whenever stable advances (watermark releases
// are not time-driven) or a request is pushed.
func (q *Queue) Pop(now time.Time, stable uint64) (next *Request, shed []*Request, wake time.Time) {
	for it := q.byWatermark.top(); it != nil && it.req.Watermark <= stable; it = q.byWatermark.top() {
		q.release(it, &q.stats.ReleasedStable)
	}
	for it := q.byArrival.top(); it != nil && !now.Before(it.req.Arrival.Add(q.cfg.MaxHold)); it = q.byArrival.top() {
		q.release(it, &q.stats.ReleasedMaxHold)
	}
	var best *item
	for i := 0; i < len(q.active); {
		m := q.active[i]
		slackAt := m.est.v + m.tail.v + q.cfg.Margin + q.cfg.HoldSlack
		for it := m.held.top(); it != nil && !now.Before(it.req.Deadline.Add(-slackAt)); it = m.held.top() {
			q.release(it, &q.stats.ReleasedPressure)
		}
		shed = q.shedReady(m, now, shed)
		if m.len() == 0 {
			q.deactivate(m) // swaps another method into position i
			continue
		}
		if it := m.ready.top(); it != nil && (best == nil || byDeadline(it, best)) {
			best = it
		}
		i++
	}
	if best != nil {
		m := best.m
		q.removeReadyTop(m)
		q.stats.Popped++
		next = best.req
		if m.len() == 0 {
			q.deactivate(m)
		}
		// The scheduler does not preempt: nothing else starts before next
		// has run. A ready request whose point of no return falls inside
		// that run is hopeless already; refuse it now rather than after.
		busyUntil := now.Add(m.est.v)
		for i := 0; i < len(q.active); {
			am := q.active[i]
			before := len(shed)
			shed = q.shedReady(am, busyUntil, shed)
			q.stats.ShedAhead += uint64(len(shed) - before)
			if am.len() == 0 {
				q.deactivate(am)
				continue
			}
			i++
		}
	}
	if q.held > 0 {
		q.stats.Held++
	}
	return next, shed, q.wake()
}

// Drain removes every queued request, held or ready, and returns them
// (earliest deadline first within each method). The scheduler calls it when
// it stops, so that every queued request gets an answer.
func (q *Queue) Drain() []*Request {
	var out []*Request
	var released uint64 // not a release the stats should count
	for len(q.active) > 0 {
		m := q.active[0]
		for it := m.held.top(); it != nil; it = m.held.top() {
			q.release(it, &released)
		}
		for it := m.ready.top(); it != nil; it = m.ready.top() {
			q.removeReadyTop(m)
			out = append(out, it.req)
		}
		q.deactivate(m)
	}
	return out
}

// shedReady sheds, in deadline order, the ready requests of m whose point of
// no return is before t, appending them to shed.
func (q *Queue) shedReady(m *methodQ, t time.Time, shed []*Request) []*Request {
	for it := m.ready.top(); it != nil && t.After(q.pnr(it.req, m)); it = m.ready.top() {
		q.removeReadyTop(m)
		q.stats.ShedInQueue++
		shed = append(shed, it.req)
	}
	return shed
}

// removeReadyTop takes the front of m's ready heap out of the queue.
func (q *Queue) removeReadyTop(m *methodQ) {
	m.all.remove(m.ready.popTop())
	q.n--
}

// wake computes Pop's wake time: the earliest MaxHold expiry, pressure
// release or shed time of what is still queued.
func (q *Queue) wake() time.Time {
	var w time.Time
	consider := func(t time.Time) {
		if w.IsZero() || t.Before(w) {
			w = t
		}
	}
	if it := q.byArrival.top(); it != nil {
		consider(it.req.Arrival.Add(q.cfg.MaxHold))
	}
	for _, m := range q.active {
		if it := m.held.top(); it != nil {
			consider(it.req.Deadline.Add(-(m.est.v + m.tail.v + q.cfg.Margin + q.cfg.HoldSlack)))
		}
		if it := m.ready.top(); it != nil {
			consider(q.pnr(it.req, m).Add(time.Nanosecond)) // shed once strictly past PNR
		}
	}
	return w
}

func (q *Queue) deactivate(m *methodQ) {
	i, last := m.active, len(q.active)-1
	q.active[i] = q.active[last]
	q.active[i].active = i
	q.active[last] = nil
	q.active = q.active[:last]
	m.active = -1
	if !m.est.observed && !m.tail.observed {
		delete(q.methods, m.name) // nothing worth keeping: the map stays bounded by observed methods
	}
}

// Observe feeds a measured service time of method into its estimate: the
// first observation replaces InitialEstimate (a guess), later ones are
// blended in with weight EstimateAlpha. Negative times count as 0.
func (q *Queue) Observe(method string, serviceTime time.Duration) {
	q.method(method).est.observe(serviceTime, q.cfg.EstimateAlpha)
}

// backlog returns the expected run time of the queued requests that EDF
// runs before probe (earlier deadline, or equal and pushed earlier), ready
// or held, and how many there are: O(M log n).
func (q *Queue) backlog(probe *item) (time.Duration, int) {
	var d time.Duration
	n := 0
	for _, m := range q.active {
		k := m.all.countBefore(probe)
		n += k
		d += time.Duration(k) * m.est.v
	}
	return d, n
}

// Backlog returns the expected run time of the queued work that EDF would
// run before a request with this deadline pushed now, ready or held:
// the sum over methods of (requests with an earlier or equal deadline) times
// the method's estimate. Push refuses a request when this plus its own
// estimate and Margin does not fit before its deadline.
func (q *Queue) Backlog(deadline time.Time) time.Duration {
	d, _ := q.backlog(&item{req: &Request{Deadline: deadline}, seq: q.seq + 1})
	return d
}

// ObserveTail feeds a measured tail of method, the time from the end of a
// request's run to its answer (an update's persistence), into the method's
// tail estimate, like Observe. The tail does not occupy the scheduler, so
// Backlog does not count it, but a request must be started early enough for
// it: PNR and admission do.
func (q *Queue) ObserveTail(method string, tail time.Duration) {
	q.method(method).tail.observe(tail, q.cfg.EstimateAlpha)
}

// Age lets estimates without fresh observations drift back toward their
// priors. An estimate only changes when requests of the method run, and
// requests are only run when the estimate says they fit: after a slow spell
// (a GC pause, an fsync storm) a high estimate would refuse every request
// with a tight deadline forever and never be corrected. So every method not
// observed since the previous Age call has its run estimate moved toward
// InitialEstimate (only downward) and its tail toward 0, each by the weight
// EstimateAlpha, as if a prior-valued observation had been made. Under
// steady traffic every method is observed between calls and Age changes
// nothing. The scheduler calls it on every heartbeat tick (20 ms by
// default): a stale estimate falls by a factor 0.8 per tick, to a tenth
// within about 200 ms, and the first requests admitted then re-measure.
func (q *Queue) Age() {
	for _, m := range q.methods {
		m.est.age(q.cfg.InitialEstimate, q.cfg.EstimateAlpha)
		m.tail.age(0, q.cfg.EstimateAlpha)
	}
}

// Tail returns the current tail estimate of method (0 before ObserveTail).
func (q *Queue) Tail(method string) time.Duration {
	if m := q.methods[method]; m != nil {
		return m.tail.v
	}
	return 0
}

// Estimate returns the current service-time estimate of method.
func (q *Queue) Estimate(method string) time.Duration {
	if m := q.methods[method]; m != nil {
		return m.est.v
	}
	return q.cfg.InitialEstimate
}

// Len returns the number of queued requests (ready and held).
func (q *Queue) Len() int { return q.n }

// Stats returns the counters.
func (q *Queue) Stats() Stats {
	s := q.stats
	s.Queued, s.HeldNow = q.n, q.held
	return s
}
