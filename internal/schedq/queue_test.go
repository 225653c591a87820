package schedq

import (
	"errors"
	"testing"
	"time"
)

var t0 = time.Unix(1_000_000, 0)

func ms(n float64) time.Duration { return time.Duration(n * float64(time.Millisecond)) }

func at(n float64) time.Time { return t0.Add(ms(n)) }

func testConfig() Config {
	return Config{MaxQueue: 100, MaxHold: ms(50), Margin: ms(2), HoldSlack: ms(1), InitialEstimate: ms(1), EstimateAlpha: 0.5}
}

func newQ(t *testing.T, cfg Config) *Queue {
	t.Helper()
	q, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func mustPush(t *testing.T, q *Queue, now time.Time, r *Request) {
	t.Helper()
	if err := q.Push(now, r); err != nil {
		t.Fatalf("push %d: %v", r.ID, err)
	}
}

func query(id uint64, method string, deadline time.Time) *Request {
	return &Request{ID: id, Kind: Query, Method: method, Arrival: t0, Deadline: deadline}
}

func update(id uint64, method string, deadline time.Time, watermark uint64) *Request {
	return &Request{ID: id, Kind: Update, Method: method, Arrival: t0, Deadline: deadline, Watermark: watermark}
}

func ids(rs []*Request) []uint64 {
	out := make([]uint64, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

func TestEDFOrderWithTiesInPushOrder(t *testing.T) {
	q := newQ(t, testConfig())
	deadlines := map[uint64]float64{1: 50, 2: 20, 3: 90, 4: 20, 5: 10, 6: 70}
	for id := uint64(1); id <= 6; id++ {
		mustPush(t, q, t0, query(id, []string{"a", "b"}[id%2], at(deadlines[id])))
	}
	var got []uint64
	for q.Len() > 0 {
		next, shed, _ := q.Pop(t0, 0)
		if len(shed) > 0 || next == nil {
			t.Fatalf("shed %v next %v", ids(shed), next)
		}
		got = append(got, next.ID)
	}
	want := []uint64{5, 2, 4, 1, 6, 3}
	if len(got) != len(want) {
		t.Fatalf("popped %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("popped %v, want %v", got, want)
		}
	}
	if next, shed, wake := q.Pop(t0, 0); next != nil || shed != nil || !wake.IsZero() {
		t.Fatalf("empty queue popped %v %v %v", next, shed, wake)
	}
}

func TestPushAdmission(t *testing.T) {
	cfg := testConfig()
	cfg.MaxQueue = 2
	q := newQ(t, cfg)
	// est 1ms + margin 2ms: 3ms left is just enough, less is not.
	if err := q.Push(t0, query(1, "a", at(3))); err != nil {
		t.Fatalf("exactly enough time refused: %v", err)
	}
	if err := q.Push(t0, query(2, "a", at(2.999))); !errors.Is(err, ErrDeadlineUnmeetable) {
		t.Fatalf("err %v, want ErrDeadlineUnmeetable", err)
	}
	if err := q.Push(t0, query(3, "a", at(-5))); !errors.Is(err, ErrDeadlineUnmeetable) {
		t.Fatalf("deadline in the past: %v", err)
	}
	// The estimate is per method: a slow method needs more time.
	q.Observe("slow", ms(30))
	if err := q.Push(t0, query(4, "slow", at(20))); !errors.Is(err, ErrDeadlineUnmeetable) {
		t.Fatalf("slow method: %v", err)
	}
	mustPush(t, q, t0, query(5, "slow", at(40)))
	if err := q.Push(t0, query(6, "a", at(100))); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("err %v, want ErrQueueFull", err)
	}
	// Unmeetable is reported before full: the client learns the real reason.
	if err := q.Push(t0, query(7, "a", at(1))); !errors.Is(err, ErrDeadlineUnmeetable) {
		t.Fatalf("err %v, want ErrDeadlineUnmeetable", err)
	}
	if err := q.Push(t0, nil); !errors.Is(err, ErrNilRequest) {
		t.Fatalf("nil: %v", err)
	}
	q.Pop(t0, 0)
	mustPush(t, q, t0, query(8, "a", at(100)))
	st := q.Stats()
	if st.Admitted != 3 || st.ShedAtPush != 4 || st.RejectedFull != 1 || st.Queued != 2 || st.MaxQueued != 2 || st.Popped != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestPushRefusesWhatTheBacklogCannotFit: under EDF a newcomer runs after
// every queued request with an earlier or equal deadline, ready or held, of
// any method; if their estimates plus its own and the margin do not fit
// before its deadline, it is refused at once instead of at its point of no
// return.
func TestPushRefusesWhatTheBacklogCannotFit(t *testing.T) {
	q := newQ(t, testConfig())
	q.Observe("a", ms(5))
	// Same deadline 30 ms: the k-th (from 0) expects to start at 5k ms and
	// needs 5 + 2 ms: 5k+7 <= 30 holds for k <= 4.
	for id := uint64(1); id <= 5; id++ {
		r := query(id, "a", at(30))
		mustPush(t, q, t0, r)
		if want := at(float64(5 * id)); !r.RunsUntil.Equal(want) {
			t.Fatalf("request %d RunsUntil %v, want %v", id, r.RunsUntil, want)
		}
	}
	err := q.Push(t0, query(6, "a", at(30)))
	if !errors.Is(err, ErrDeadlineUnmeetable) {
		t.Fatalf("6th request behind 25 ms of work with 30 ms left: %v", err)
	}
	if got := q.Backlog(at(30)); got != ms(25) {
		t.Fatalf("Backlog(30ms) = %v, want 25ms", got)
	}
	// An urgent newcomer runs first: the lax backlog does not count.
	mustPush(t, q, t0, query(7, "a", at(8)))
	// A lax one waits behind everything: 6 queued x 5 ms + 5 + 2 <= 100.
	mustPush(t, q, t0, query(8, "a", at(100)))
	// Held updates of another method count too, by that method's estimate.
	q.Observe("u", ms(10))
	mustPush(t, q, t0, update(9, "u", at(20), 99))
	if got, want := q.Backlog(at(20)), ms(5+10); got != want { // request 7 and update 9
		t.Fatalf("Backlog(20ms) = %v, want %v", got, want)
	}
	if err := q.Push(t0, query(10, "a", at(21))); !errors.Is(err, ErrDeadlineUnmeetable) {
		t.Fatalf("behind 15 ms of work (one held update) with 21 ms left: %v", err)
	}
	// The estimate is read when asked: a faster "a" makes room. With
	// 35 ms left, 6 x 5 + 10 + 5 + 2 = 47 ms does not fit; after the
	// estimate drops to 3 ms, 6 x 3 + 10 + 3 + 2 = 33 ms does.
	q.Observe("a", ms(1)) // EWMA 0.5: est 3 ms
	if got, want := q.Backlog(at(35)), 6*ms(3)+ms(10); got != want {
		t.Fatalf("Backlog(35ms) after Observe = %v, want %v", got, want)
	}
	mustPush(t, q, t0, query(11, "a", at(35)))
	// Serving and shedding remove requests from the backlog.
	next, _, _ := q.Pop(t0, 0)
	if next.ID != 7 {
		t.Fatalf("popped %d, want 7", next.ID)
	}
	if got, want := q.Backlog(at(20)), ms(10); got != want {
		t.Fatalf("Backlog(20ms) after Pop = %v, want %v", got, want)
	}
	st := q.Stats()
	if st.ShedBacklog != 2 || st.ShedAtPush != 2 {
		t.Fatalf("stats %+v, want 2 refused for the backlog", st)
	}
	for q.Len() > 0 {
		q.Pop(at(1000), ^uint64(0))
	}
	if got := q.Backlog(at(1e6)); got != 0 {
		t.Fatalf("empty queue has backlog %v", got)
	}
}

// TestTailMovesDeadlineChecksButNotBacklog: an update's answer waits for
// its op-log write after the handler ran. That tail must fit before the
// deadline (admission and shedding count it), but it runs off the
// scheduler, so it does not delay the requests behind (Backlog ignores it).
func TestTailMovesDeadlineChecksButNotBacklog(t *testing.T) {
	q := newQ(t, testConfig()) // margin 2 ms
	q.Observe("u", ms(1))
	q.ObserveTail("u", ms(4))
	if got := q.Tail("u"); got != ms(4) {
		t.Fatalf("first tail observation: %v, want 4ms", got)
	}
	q.ObserveTail("u", ms(2)) // EWMA 0.5
	if got := q.Tail("u"); got != ms(3) {
		t.Fatalf("tail EWMA: %v, want 3ms", got)
	}
	// 1 + 3 + 2 = 6 ms needed.
	if err := q.Push(t0, query(1, "u", at(5.9))); !errors.Is(err, ErrDeadlineUnmeetable) {
		t.Fatalf("5.9 ms left for 6 ms of run, tail and margin: %v", err)
	}
	mustPush(t, q, t0, query(2, "u", at(6)))
	mustPush(t, q, t0, query(3, "u", at(7)))
	if got := q.Backlog(at(7)); got != ms(2) {
		t.Fatalf("Backlog = %v, want 2ms (run estimates only)", got)
	}
	// Shedding counts the tail: request 3's PNR is 7 - 6 = 1 ms.
	if next, shed, _ := q.Pop(at(1.5), 0); next != nil || len(shed) != 2 {
		t.Fatalf("at 1.5 ms: next %v, shed %v; want both shed", next, ids(shed))
	}
	if q.Tail("never") != 0 {
		t.Fatal("tail of an unobserved method is not 0")
	}
}

// TestAgeUnsticksAStaleEstimate: after a slow spell every tight request is
// refused, so nothing runs and the estimate would never come down; Age
// brings unobserved estimates back toward their priors, and leaves observed
// ones alone.
func TestAgeUnsticksAStaleEstimate(t *testing.T) {
	q := newQ(t, testConfig()) // InitialEstimate 1 ms, alpha 0.5, margin 2 ms
	q.Observe("slow", ms(41))
	q.ObserveTail("slow", ms(40))
	q.Observe("busy", ms(9))
	if err := q.Push(t0, query(1, "slow", at(10))); !errors.Is(err, ErrDeadlineUnmeetable) {
		t.Fatalf("10 ms budget after an 81 ms spell: %v", err)
	}
	q.Age() // both observed since the start: nothing changes
	if q.Estimate("slow") != ms(41) || q.Tail("slow") != ms(40) {
		t.Fatalf("Age changed fresh estimates: %v, %v", q.Estimate("slow"), q.Tail("slow"))
	}
	q.Observe("busy", ms(9))
	q.Age() // "slow" stale: 1 + 40/2 = 21 ms, tail 20 ms; "busy" fresh
	if q.Estimate("slow") != ms(21) || q.Tail("slow") != ms(20) || q.Estimate("busy") != ms(9) {
		t.Fatalf("after one Age: slow %v + %v, busy %v", q.Estimate("slow"), q.Tail("slow"), q.Estimate("busy"))
	}
	for range 6 {
		q.Age()
	}
	// est 1 + 40/128 ms, tail 40/128 ms: a 10 ms budget fits again.
	mustPush(t, q, t0, query(2, "slow", at(10)))
	q.Observe("fast", ms(0.1))
	for range 10 {
		q.Age()
	}
	if q.Estimate("fast") != ms(0.1) {
		t.Fatalf("Age raised an estimate below the prior: %v", q.Estimate("fast"))
	}
}

// TestPopShedsWhatCannotStartAfterTheRunningOne: the scheduler runs one
// request at a time, so a request whose point of no return falls inside the
// popped request's run is refused at that Pop, not after the run.
func TestPopShedsWhatCannotStartAfterTheRunningOne(t *testing.T) {
	q := newQ(t, testConfig()) // margin 2 ms
	q.Observe("a", ms(5))
	q.Observe("b", ms(1))
	mustPush(t, q, t0, query(1, "a", at(10))) // PNR 3
	mustPush(t, q, t0, query(2, "b", at(7)))  // PNR 4, earliest deadline: runs first
	mustPush(t, q, t0, query(3, "b", at(40))) // PNR 37
	// EDF pops 2 first (deadline 7); it runs until 1 ms; 1's PNR is 3: fine.
	next, shed, _ := q.Pop(t0, 0)
	if next.ID != 2 || len(shed) != 0 {
		t.Fatalf("first Pop: next %d shed %v", next.ID, ids(shed))
	}
	mustPush(t, q, at(1), query(4, "b", at(9))) // PNR 6, behind 1 (deadline 9 < 10)
	// At 1 ms: 4 (deadline 9) runs first, until 2 ms; 1's PNR is 3: fine.
	if next, shed, _ := q.Pop(at(1), 0); next.ID != 4 || len(shed) != 0 {
		t.Fatalf("second Pop: next %v shed %v", next, ids(shed))
	}
	// At 2.5 ms, 1 runs until 7.5 ms; nothing else is hopeless by then.
	if next, shed, _ := q.Pop(at(2.5), 0); next.ID != 1 || len(shed) != 0 {
		t.Fatalf("third Pop: next %v shed %v", next, ids(shed))
	}
	mustPush(t, q, at(3), query(5, "a", at(12)))   // PNR 5
	mustPush(t, q, at(3), query(6, "b", at(10.5))) // PNR 7.5
	// Popped at 4.5 ms, 6 (deadline 10.5) runs until 5.5 ms, past 5's PNR
	// (5 ms): 5 is refused now, although at 4.5 ms it is still admissible.
	next, shed, _ = q.Pop(at(4.5), 0)
	if next.ID != 6 || len(shed) != 1 || shed[0].ID != 5 {
		t.Fatalf("fourth Pop: next %v shed %v, want 6 and [5]", next, ids(shed))
	}
	if st := q.Stats(); st.ShedAhead != 1 || st.ShedInQueue != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRankSetCountsAgainstASortedSlice(t *testing.T) {
	var s rankSet
	var items []*item
	for i := range 500 {
		// Many equal deadlines: ties are ordered by push sequence.
		it := &item{req: &Request{Deadline: at(float64((i * 7919) % 37))}, seq: uint64(i + 1)}
		items = append(items, it)
		s.add(it)
	}
	check := func() {
		t.Helper()
		for _, p := range items {
			want := 0
			for _, o := range items {
				if o != p && byDeadline(o, p) {
					want++
				}
			}
			if got := s.countBefore(p); got != want {
				t.Fatalf("countBefore(seq %d) = %d, want %d", p.seq, got, want)
			}
		}
	}
	check()
	kept := items[:0:0]
	for i, it := range items {
		if i%3 == 0 {
			s.remove(it)
		} else {
			kept = append(kept, it)
		}
	}
	items = kept
	check()
	if s.len() != len(items) {
		t.Fatalf("len %d, want %d", s.len(), len(items))
	}
}

func TestPushSetsZeroArrival(t *testing.T) {
	q := newQ(t, testConfig())
	r := &Request{ID: 1, Kind: Update, Method: "a", Deadline: at(1000), Watermark: 99}
	mustPush(t, q, at(5), r)
	if !r.Arrival.Equal(at(5)) {
		t.Fatalf("arrival %v", r.Arrival)
	}
	if _, _, wake := q.Pop(at(5), 0); !wake.Equal(at(55)) {
		t.Fatalf("wake %v, want arrival+MaxHold", wake)
	}
}

func TestShedsEveryHopelessRequest(t *testing.T) {
	q := newQ(t, testConfig())
	q.Observe("slow", ms(20))
	mustPush(t, q, t0, query(1, "fast", at(30))) // PNR 27
	mustPush(t, q, t0, query(2, "slow", at(40))) // PNR 18: behind 1 in EDF order, hopeless first
	mustPush(t, q, t0, query(3, "fast", at(10))) // PNR 7
	mustPush(t, q, t0, query(4, "fast", at(60))) // PNR 57

	// At the point of no return a request is still served...
	next, shed, _ := q.Pop(at(7), 0)
	if next == nil || next.ID != 3 || len(shed) != 0 {
		t.Fatalf("at PNR: next %v shed %v", next, ids(shed))
	}
	// ...past it, it is shed even when it is not the EDF head.
	next, shed, wake := q.Pop(at(18.5), 0)
	if next == nil || next.ID != 1 || len(shed) != 1 || shed[0].ID != 2 {
		t.Fatalf("next %v shed %v, want 1 served and 2 shed", next, ids(shed))
	}
	if !wake.Equal(at(57).Add(time.Nanosecond)) {
		t.Fatalf("wake %v, want just past 4's PNR", wake)
	}
	next, shed, wake = q.Pop(at(57).Add(time.Nanosecond), 0)
	if next != nil || len(shed) != 1 || shed[0].ID != 4 || !wake.IsZero() || q.Len() != 0 {
		t.Fatalf("next %v shed %v wake %v len %d", next, ids(shed), wake, q.Len())
	}
	if st := q.Stats(); st.ShedInQueue != 2 || st.Popped != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// A method becoming slower moves its requests' points of no return earlier.
func TestSheddingFollowsEstimate(t *testing.T) {
	q := newQ(t, testConfig())
	mustPush(t, q, t0, query(1, "a", at(20)))
	mustPush(t, q, t0, query(2, "b", at(25)))
	q.Observe("a", ms(15)) // a's PNR: 20-15-2 = 3
	next, shed, _ := q.Pop(at(4), 0)
	if next == nil || next.ID != 2 || len(shed) != 1 || shed[0].ID != 1 {
		t.Fatalf("next %v shed %v", next, ids(shed))
	}
}

func TestHoldReleasedByStableWatermark(t *testing.T) {
	q := newQ(t, testConfig())
	mustPush(t, q, t0, update(1, "a", at(1000), 10))
	next, _, wake := q.Pop(at(1), 9)
	if next != nil {
		t.Fatalf("update returned before stable reached its watermark")
	}
	if !wake.Equal(at(50)) {
		t.Fatalf("wake %v, want MaxHold expiry %v", wake, at(50))
	}
	if st := q.Stats(); st.Held != 1 || st.HeldNow != 1 {
		t.Fatalf("stats %+v", st)
	}
	next, _, _ = q.Pop(at(2), 10)
	if next == nil || next.ID != 1 {
		t.Fatalf("stable watermark did not release the update: %v", next)
	}
	if st := q.Stats(); st.ReleasedStable != 1 || st.HeldNow != 0 || st.Held != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestHoldReleasedByMaxHold(t *testing.T) {
	q := newQ(t, testConfig())
	mustPush(t, q, t0, update(1, "a", at(1000), 10))
	if next, _, _ := q.Pop(at(50).Add(-time.Nanosecond), 0); next != nil {
		t.Fatal("released before MaxHold")
	}
	next, _, _ := q.Pop(at(50), 0)
	if next == nil || q.Stats().ReleasedMaxHold != 1 {
		t.Fatalf("not released at Arrival+MaxHold: %v %+v", next, q.Stats())
	}
}

func TestHoldReleasedByDeadlinePressure(t *testing.T) {
	cfg := testConfig()
	cfg.MaxHold = time.Hour
	q := newQ(t, cfg)
	// deadline 20, est 1, margin 2, slack 1: released at 16, PNR 17.
	mustPush(t, q, t0, update(1, "a", at(20), 10))
	next, _, wake := q.Pop(at(15), 0)
	if next != nil || !wake.Equal(at(16)) {
		t.Fatalf("next %v wake %v, want held until 16ms", next, wake)
	}
	next, shed, _ := q.Pop(at(16), 0)
	if next == nil || len(shed) != 0 || q.Stats().ReleasedPressure != 1 {
		t.Fatalf("pressure did not release: next %v shed %v stats %+v", next, ids(shed), q.Stats())
	}
	// Held past its PNR (the caller came late): released and shed, never returned.
	mustPush(t, q, at(16), update(2, "a", at(40), 10))
	next, shed, _ = q.Pop(at(37.5), 0)
	if next != nil || len(shed) != 1 || shed[0].ID != 2 {
		t.Fatalf("late pop: next %v shed %v", next, ids(shed))
	}
}

func TestQueriesAreNeverHeld(t *testing.T) {
	q := newQ(t, testConfig())
	mustPush(t, q, t0, update(1, "w", at(10), 100)) // more urgent, but held
	mustPush(t, q, t0, query(2, "r", at(30)))
	next, _, wake := q.Pop(at(1), 0)
	if next == nil || next.ID != 2 {
		t.Fatalf("next %v, want the query while the update is held", next)
	}
	if !wake.Equal(at(6)) {
		t.Fatalf("wake %v, want the update's pressure release at 6ms", wake)
	}
	if next, _, _ := q.Pop(at(1), 0); next != nil {
		t.Fatalf("held update returned: %v", next)
	}
	// Once released, EDF applies to updates and queries alike.
	mustPush(t, q, at(1), query(3, "r", at(30)))
	next, _, _ = q.Pop(at(1), 100)
	if next == nil || next.ID != 1 {
		t.Fatalf("next %v, want the released, more urgent update", next)
	}
}

func TestWakeIsAfterNow(t *testing.T) {
	q := newQ(t, testConfig())
	mustPush(t, q, t0, query(1, "a", at(10)))
	mustPush(t, q, t0, update(2, "a", at(100), 5))
	mustPush(t, q, t0, update(3, "b", at(30), 5))
	for now := at(0); q.Len() > 0; now = now.Add(ms(0.5)) {
		_, _, wake := q.Pop(now, 0)
		if q.Len() > 0 && !wake.After(now) {
			t.Fatalf("at %v wake %v is not after now", now.Sub(t0), wake.Sub(t0))
		}
		if q.Len() == 0 && !wake.IsZero() {
			t.Fatalf("empty queue woke at %v", wake)
		}
	}
}

func TestEstimateEWMA(t *testing.T) {
	q := newQ(t, testConfig()) // alpha 0.5
	if q.Estimate("x") != ms(1) {
		t.Fatalf("initial %v", q.Estimate("x"))
	}
	q.Observe("x", ms(10))
	if q.Estimate("x") != ms(10) {
		t.Fatalf("first observation must replace the initial guess: %v", q.Estimate("x"))
	}
	q.Observe("x", ms(20))
	if q.Estimate("x") != ms(15) {
		t.Fatalf("ewma %v, want 15ms", q.Estimate("x"))
	}
	q.Observe("x", -ms(5)) // counts as 0
	if q.Estimate("x") != ms(7.5) {
		t.Fatalf("ewma %v, want 7.5ms", q.Estimate("x"))
	}
	if q.Estimate("y") != ms(1) {
		t.Fatal("estimates leak across methods")
	}
	// Pushing and draining an unobserved method leaves no state behind;
	// observed methods keep their estimate.
	mustPush(t, q, t0, query(1, "z", at(100)))
	q.Pop(t0, 0)
	if len(q.methods) != 1 {
		t.Fatalf("%d methods kept, want only the observed one", len(q.methods))
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*Config){
		"queue":  func(c *Config) { c.MaxQueue = 0 },
		"hold":   func(c *Config) { c.MaxHold = -1 },
		"margin": func(c *Config) { c.Margin = -1 },
		"slack":  func(c *Config) { c.HoldSlack = -1 },
		"est":    func(c *Config) { c.InitialEstimate = -1 },
		"alpha0": func(c *Config) { c.EstimateAlpha = 0 },
		"alpha2": func(c *Config) { c.EstimateAlpha = 1.5 },
	} {
		c := DefaultConfig()
		mutate(&c)
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v", name, err)
		}
		if _, err := New(c); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("New with %s: %v", name, err)
		}
	}
}

// TestDrainReturnsEveryQueuedRequest: held and ready requests of several
// methods all come back, the queue is empty after, and it still works.
func TestDrainReturnsEveryQueuedRequest(t *testing.T) {
	q := newQ(t, testConfig())
	mustPush(t, q, t0, query(1, "a", at(40)))
	mustPush(t, q, t0, query(2, "a", at(30)))
	mustPush(t, q, t0, update(3, "b", at(45), 99)) // held: watermark 99 not stable
	mustPush(t, q, t0, query(4, "c", at(20)))
	got := ids(q.Drain())
	if len(got) != 4 || q.Len() != 0 {
		t.Fatalf("Drain returned %v, Len %d after: want all 4 requests and an empty queue", got, q.Len())
	}
	pos := map[uint64]int{}
	for i, id := range got {
		pos[id] = i
	}
	for _, id := range []uint64{1, 2, 3, 4} {
		if _, ok := pos[id]; !ok {
			t.Fatalf("Drain returned %v: request %d missing", got, id)
		}
	}
	if pos[2] > pos[1] {
		t.Fatalf("Drain returned %v: within method a, deadline 30 must come before 40", got)
	}
	if st := q.Stats(); st.ReleasedMaxHold+st.ReleasedStable+st.ReleasedPressure != 0 {
		t.Fatalf("Drain counted releases: %+v", st)
	}
	mustPush(t, q, t0, query(5, "a", at(40)))
	if next, _, _ := q.Pop(t0, 0); next == nil || next.ID != 5 {
		t.Fatalf("after Drain, Pop = %v", next)
	}
}
