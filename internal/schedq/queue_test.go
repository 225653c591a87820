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
