package schedq

import (
	"errors"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// model mirrors the queue's contract independently of its data structures.
type model struct {
	cfg    Config
	now    time.Time
	stable uint64
	est    map[string]time.Duration
	seen   map[string]bool
	tail   map[string]time.Duration
	tailed map[string]bool
	fresh  map[string]bool // "est:"+method or "tail:"+method observed since the last age
	queued map[uint64]*modelReq
	// outcome counts how often each admitted request left the queue.
	outcome map[uint64]int
	nextID  uint64
}

type modelReq struct {
	r        *Request
	released bool // sticky: once an update is released it stays ready
}

func (m *model) estimate(method string) time.Duration {
	if e, ok := m.est[method]; ok {
		return e
	}
	return m.cfg.InitialEstimate
}

// blend is the contract of Observe and ObserveTail on one estimate: the
// first sample replaces the prior, later ones are blended in.
func (m *model) blend(vals map[string]time.Duration, seen map[string]bool, freshKey, method string, d time.Duration) {
	m.fresh[freshKey] = true
	d = max(d, 0)
	if !seen[method] {
		vals[method], seen[method] = d, true
		return
	}
	a := m.cfg.EstimateAlpha
	vals[method] = time.Duration(a*float64(d) + (1-a)*float64(vals[method]))
}

func (m *model) observe(method string, d time.Duration) {
	m.blend(m.est, m.seen, "est:"+method, method, d)
}

func (m *model) observeTail(method string, d time.Duration) {
	m.blend(m.tail, m.tailed, "tail:"+method, method, d)
}

func (m *model) pnr(r *Request) time.Time {
	return r.Deadline.Add(-m.need(r.Method) - m.cfg.Margin)
}

// need is the time from start to answer: run estimate plus tail estimate.
func (m *model) need(method string) time.Duration { return m.estimate(method) + m.tail[method] }

// age mirrors Queue.Age: unobserved estimates move toward their priors.
func (m *model) age(methods []string) {
	a := m.cfg.EstimateAlpha
	for _, method := range methods {
		if e, ok := m.est[method]; ok && !m.fresh["est:"+method] && e > m.cfg.InitialEstimate {
			m.est[method] = m.cfg.InitialEstimate + time.Duration((1-a)*float64(e-m.cfg.InitialEstimate))
		}
		if tl := m.tail[method]; !m.fresh["tail:"+method] && tl > 0 {
			m.tail[method] = time.Duration((1 - a) * float64(tl))
		}
	}
	clear(m.fresh)
}

// ahead is the work EDF runs before a newcomer r: every queued request with
// an earlier deadline, or the same deadline (they were pushed earlier).
func (m *model) ahead(r *Request) time.Duration {
	var d time.Duration
	for _, mr := range m.queued {
		if !mr.r.Deadline.After(r.Deadline) {
			d += m.estimate(mr.r.Method)
		}
	}
	return d
}

func (m *model) admissible(r *Request) bool { return !m.now.After(m.pnr(r)) }

func (m *model) ready(mr *modelReq) bool { return mr.r.Kind == Query || mr.released }

// releaseHeld applies the three release rules, as Pop must.
func (m *model) releaseHeld() {
	for _, mr := range m.queued {
		r := mr.r
		if r.Kind != Update || mr.released {
			continue
		}
		if m.stable >= r.Watermark ||
			!m.now.Before(r.Arrival.Add(m.cfg.MaxHold)) ||
			!m.now.Before(m.pnr(r).Add(-m.cfg.HoldSlack)) {
			mr.released = true
		}
	}
}

func (m *model) leave(t *rapid.T, r *Request, how string) {
	if _, ok := m.queued[r.ID]; !ok {
		t.Fatalf("%s request %d that is not queued (duplicate or never admitted)", how, r.ID)
	}
	delete(m.queued, r.ID)
	m.outcome[r.ID]++
}

// pop calls Pop and checks its result against the model:
// (a) the returned request was ready and admissible at now;
// (b) no ready, admissible request with an earlier deadline was left behind,
// and nothing hopeless was left queued; shed requests really were hopeless.
func (m *model) pop(t *rapid.T, q *Queue) *Request {
	m.releaseHeld()
	next, shed, wake := q.Pop(m.now, m.stable)
	for _, r := range shed {
		// Hopeless now, or hopeless by the time next has run (Pop's
		// look-ahead: nothing else can start before that).
		busyUntil := m.now
		if next != nil {
			busyUntil = m.now.Add(m.estimate(next.Method))
		}
		if m.admissible(r) && !busyUntil.After(m.pnr(r)) {
			t.Fatalf("shed request %d that could still meet its deadline (now %v, PNR %v, next runs until %v)", r.ID, m.now, m.pnr(r), busyUntil)
		}
		if m.queued[r.ID] != nil && !m.ready(m.queued[r.ID]) {
			t.Fatalf("shed held update %d by look-ahead", r.ID)
		}
		m.leave(t, r, "shed")
	}
	if next != nil {
		mr := m.queued[next.ID]
		if mr == nil {
			t.Fatalf("popped unknown request %d", next.ID)
		}
		if !m.ready(mr) {
			t.Fatalf("popped held update %d (watermark %d > stable %d)", next.ID, next.Watermark, m.stable)
		}
		if !m.admissible(next) {
			t.Fatalf("popped request %d past its point of no return", next.ID)
		}
		m.leave(t, next, "popped")
	}
	for _, mr := range m.queued {
		if !m.admissible(mr.r) {
			t.Fatalf("hopeless request %d left queued", mr.r.ID)
		}
		if !m.ready(mr) {
			continue
		}
		if next != nil && m.now.Add(m.estimate(next.Method)).After(m.pnr(mr.r)) {
			t.Fatalf("ready request %d left queued although its PNR %v falls before popped %d has run", mr.r.ID, m.pnr(mr.r), next.ID)
		}
		if next == nil {
			t.Fatalf("request %d ready and admissible, but Pop returned nothing", mr.r.ID)
		}
		if mr.r.Deadline.Before(next.Deadline) {
			t.Fatalf("popped %d (deadline %v) ahead of ready %d (deadline %v)", next.ID, next.Deadline, mr.r.ID, mr.r.Deadline)
		}
	}
	if len(m.queued) == 0 != wake.IsZero() {
		t.Fatalf("wake %v with %d queued", wake, len(m.queued))
	}
	if !wake.IsZero() && !wake.After(m.now) {
		t.Fatalf("wake %v not after now %v", wake, m.now)
	}
	return next
}

func TestPropertyQueue(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cfg := Config{
			MaxQueue:        rapid.IntRange(1, 30).Draw(t, "maxQueue"),
			MaxHold:         ms(float64(rapid.IntRange(0, 40).Draw(t, "maxHoldMs"))),
			Margin:          ms(float64(rapid.IntRange(0, 3).Draw(t, "marginMs"))),
			HoldSlack:       ms(float64(rapid.IntRange(0, 2).Draw(t, "slackMs"))),
			InitialEstimate: ms(float64(rapid.IntRange(0, 3).Draw(t, "estMs"))),
			EstimateAlpha:   rapid.SampledFrom([]float64{0.1, 0.5, 1}).Draw(t, "alpha"),
		}
		q, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		m := &model{cfg: cfg, now: t0, est: map[string]time.Duration{}, seen: map[string]bool{},
			tail: map[string]time.Duration{}, tailed: map[string]bool{}, fresh: map[string]bool{},
			queued: map[uint64]*modelReq{}, outcome: map[uint64]int{}}
		methods := []string{"a", "b", "c"}
		t.Repeat(map[string]func(*rapid.T){
			"push": func(t *rapid.T) {
				m.nextID++
				r := &Request{
					ID:       m.nextID,
					Kind:     rapid.SampledFrom([]Kind{Query, Update}).Draw(t, "kind"),
					Method:   rapid.SampledFrom(methods).Draw(t, "method"),
					Arrival:  m.now.Add(-time.Duration(rapid.IntRange(0, 20_000).Draw(t, "agoUs")) * time.Microsecond),
					Deadline: m.now.Add(time.Duration(rapid.IntRange(-1000, 60_000).Draw(t, "leftUs")) * time.Microsecond),
				}
				r.Watermark = m.stable + uint64(rapid.IntRange(0, 10).Draw(t, "wmAhead"))
				err := q.Push(m.now, r)
				switch {
				case r.Deadline.Sub(m.now) < m.need(r.Method)+cfg.Margin:
					if !errors.Is(err, ErrDeadlineUnmeetable) {
						t.Fatalf("push of unmeetable request: %v", err)
					}
				case r.Deadline.Sub(m.now) < m.ahead(r)+m.need(r.Method)+cfg.Margin:
					if !errors.Is(err, ErrDeadlineUnmeetable) {
						t.Fatalf("push of a request the backlog makes unmeetable (ahead %v): %v", m.ahead(r), err)
					}
				case len(m.queued) >= cfg.MaxQueue:
					if !errors.Is(err, ErrQueueFull) {
						t.Fatalf("push into full queue: %v", err)
					}
				default:
					if err != nil {
						t.Fatalf("push refused: %v", err)
					}
					m.queued[r.ID] = &modelReq{r: r}
				}
			},
			"advance": func(t *rapid.T) {
				m.now = m.now.Add(time.Duration(rapid.IntRange(0, 15_000).Draw(t, "us")) * time.Microsecond)
			},
			"stable": func(t *rapid.T) {
				m.stable += uint64(rapid.IntRange(0, 4).Draw(t, "by"))
			},
			"observe": func(t *rapid.T) {
				method := rapid.SampledFrom(methods).Draw(t, "method")
				d := time.Duration(rapid.IntRange(-100, 8_000).Draw(t, "us")) * time.Microsecond
				q.Observe(method, d)
				m.observe(method, d)
			},
			"observeTail": func(t *rapid.T) {
				method := rapid.SampledFrom(methods).Draw(t, "method")
				d := time.Duration(rapid.IntRange(-100, 8_000).Draw(t, "us")) * time.Microsecond
				q.ObserveTail(method, d)
				m.observeTail(method, d)
			},
			"age": func(t *rapid.T) {
				q.Age()
				m.age(methods)
			},
			"pop": func(t *rapid.T) { m.pop(t, q) },
			"": func(t *rapid.T) {
				if q.Len() != len(m.queued) {
					t.Fatalf("Len %d, model %d", q.Len(), len(m.queued))
				}
			},
		})
		// (c) Drain: with time standing still and stable at its maximum,
		// every queued request is popped or shed.
		m.stable = ^uint64(0)
		for i := 0; len(m.queued) > 0; i++ {
			if i > cfg.MaxQueue {
				t.Fatalf("drain stuck with %d queued", len(m.queued))
			}
			m.pop(t, q)
		}
		admitted := int(q.Stats().Admitted)
		if len(m.outcome) != admitted {
			t.Fatalf("%d requests left the queue, %d were admitted", len(m.outcome), admitted)
		}
		for id, n := range m.outcome {
			if n != 1 {
				t.Fatalf("request %d left the queue %d times", id, n)
			}
		}
		st := q.Stats()
		if st.Popped+st.ShedInQueue != st.Admitted || st.Queued != 0 {
			t.Fatalf("stats do not add up: %+v", st)
		}
	})
}
