package admission

import (
	"errors"
	"slices"
	"testing"
	"time"
)

var t0 = time.Unix(1_000_000, 0)

func ms(n float64) time.Duration { return time.Duration(n * float64(time.Millisecond)) }

func newL(t *testing.T, mutate ...func(*Config)) *Limiter {
	t.Helper()
	c := DefaultConfig()
	c.InitialLimit, c.MinLimit, c.MaxLimit = 10, 2, 20
	for _, f := range mutate {
		f(&c)
	}
	l, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestAdmitsUpToTheLimitAndReleaseFreesASlot(t *testing.T) {
	l := newL(t)
	for i := 0; i < 10; i++ {
		if ok, _ := l.Acquire(t0, 0); !ok {
			t.Fatalf("request %d refused below the limit of 10", i)
		}
	}
	if ok, retry := l.Acquire(t0, 0); ok || retry < DefaultConfig().Interval {
		t.Fatalf("11th request: admitted %v, retry after %v; want refused with retry >= Interval", ok, retry)
	}
	l.Release(t0)
	if ok, _ := l.Acquire(t0, 0); !ok {
		t.Fatal("refused after a release freed a slot")
	}
	if st := l.Stats(); st.InFlight != 10 || st.Admitted != 11 || st.Refused != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestLowerClassesAreRefusedFirst(t *testing.T) {
	l := newL(t) // limit 10, shares 1, 0.9, 0.75
	for i := 0; i < 7; i++ {
		l.Acquire(t0, 0)
	}
	if ok, _ := l.Acquire(t0, 2); !ok {
		t.Fatal("class 2 refused at 7 of 10 (its share is 7.5)")
	}
	if ok, _ := l.Acquire(t0, 2); ok {
		t.Fatal("class 2 admitted at 8 of 10, over its 0.75 share")
	}
	if ok, _ := l.Acquire(t0, 1); !ok {
		t.Fatal("class 1 refused at 8 of 10 (its share is 9)")
	}
	if ok, _ := l.Acquire(t0, 0); !ok {
		t.Fatal("class 0 refused at 9 of 10")
	}
	if ok, _ := l.Acquire(t0, 7); ok {
		t.Fatal("a class beyond the last share must use the last share")
	}
	if st := l.Stats(); !slices.Equal(st.RefusedByClass, []uint64{0, 0, 2}) {
		t.Fatalf("refused by class %v, want [0 0 2]", st.RefusedByClass)
	}
}

// interval feeds one interval of n samples of which over exceed the target,
// then crosses into the next interval.
func interval(l *Limiter, at time.Time, n, over int) time.Time {
	for i := 0; i < n; i++ {
		d := ms(1)
		if i < over {
			d = ms(50)
		}
		l.Observe(at, d, ms(30)) // target 6 ms
	}
	next := at.Add(l.cfg.Interval)
	l.advance(next)
	return next
}

func TestOverloadedIntervalShrinksTheLimitDownToMin(t *testing.T) {
	l := newL(t)
	at := t0
	l.advance(at)
	at = interval(l, at, 100, 10) // 10% over the target: overloaded
	if got := l.Stats().Limit; got != 8 {
		t.Fatalf("limit %d after an overloaded interval, want 10*0.8 = 8", got)
	}
	for i := 0; i < 20; i++ {
		at = interval(l, at, 10, 10)
	}
	if got := l.Stats().Limit; got != 2 {
		t.Fatalf("limit %d after many overloaded intervals, want MinLimit 2", got)
	}
}

func TestAFewSlowSamplesDoNotShrinkIt(t *testing.T) {
	l := newL(t)
	l.advance(t0)
	interval(l, t0, 100, 5) // 5%: not more than OverShare
	if got := l.Stats().Limit; got != 10 {
		t.Fatalf("limit %d after 5 slow samples of 100, want 10 unchanged", got)
	}
}

func TestLimitGrowsOnlyWhenReachedAndDelaysAreLow(t *testing.T) {
	l := newL(t)
	at := t0
	l.advance(at)
	at = interval(l, at, 50, 0) // fast, but the limit was never reached
	if got := l.Stats().Limit; got != 10 {
		t.Fatalf("limit %d without demand, want 10 unchanged", got)
	}
	for i := 0; i < 10; i++ {
		l.Acquire(at, 0)
	}
	at = interval(l, at, 50, 0)
	if got := l.Stats().Limit; got != 11 {
		t.Fatalf("limit %d after a fast interval at the limit, want 10+max(1, 5%%) = 11", got)
	}
	for i := 0; i < 30; i++ {
		l.Acquire(at, 0)
		at = interval(l, at, 5, 0)
	}
	if got := l.Stats().Limit; got != 20 {
		t.Fatalf("limit %d, want capped at MaxLimit 20", got)
	}
}

func TestRetryAfterFollowsTheRecentDelay(t *testing.T) {
	l := newL(t, func(c *Config) { c.InitialLimit, c.MinLimit = 2, 1 })
	l.advance(t0)
	for i := 0; i < 10; i++ {
		l.Observe(t0, ms(70), ms(30))
	}
	at := t0.Add(l.cfg.Interval)
	l.Acquire(at, 0)
	l.Acquire(at, 0)
	if ok, retry := l.Acquire(at, 0); ok || retry != ms(70) {
		t.Fatalf("refused with retry %v, want the last interval's mean delay 70ms", retry)
	}
}

func TestReleaseWithoutAcquireIsIgnored(t *testing.T) {
	l := newL(t)
	l.Release(t0)
	if st := l.Stats(); st.InFlight != 0 {
		t.Fatalf("in flight %d", st.InFlight)
	}
}

func TestConfigValidation(t *testing.T) {
	bad := map[string]func(*Config){
		"target":   func(c *Config) { c.TargetShare = 0 },
		"min":      func(c *Config) { c.MinTarget = 0 },
		"interval": func(c *Config) { c.Interval = 0 },
		"share":    func(c *Config) { c.OverShare = 1 },
		"decrease": func(c *Config) { c.Decrease = 1 },
		"increase": func(c *Config) { c.Increase = 0 },
		"growAt0":  func(c *Config) { c.GrowAt = 0 },
		"growAt>1": func(c *Config) { c.GrowAt = 1.5 },
		"schedSh":  func(c *Config) { c.SchedShare = 1 },
		"limits":   func(c *Config) { c.InitialLimit = c.MaxLimit + 1 },
		"shares0":  func(c *Config) { c.Shares = []float64{0.9} },
		"sharesUp": func(c *Config) { c.Shares = []float64{1, 0.5, 0.7} },
		"rateWin":  func(c *Config) { c.RateWindow = -1 },
		"quiet<0":  func(c *Config) { c.QuietShare = -0.1 },
		"quiet1":   func(c *Config) { c.QuietShare = 1 },
		"quietAft": func(c *Config) { c.QuietAfter = -time.Second },
	}
	for name, f := range bad {
		c := DefaultConfig()
		f(&c)
		if _, err := New(c); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: New = %v, want ErrInvalidConfig", name, err)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestHoldsGoodputAtThreeTimesCapacity runs the control law against a
// simulated node (one server, FIFO, fixed service time, virtual clock) fed
// at 3x its capacity. Without admission the queue grows without bound and
// nearly every request misses a 30 ms budget; with it (burst allowance
// included), the node serves about its capacity, and the admitted requests
// wait little.
func TestHoldsGoodputAtThreeTimesCapacity(t *testing.T) {
	const (
		service  = 500 * time.Microsecond // capacity 2000/s
		budget   = 30 * time.Millisecond
		duration = 5 * time.Second
	)
	arrivalEvery := service / 3 // 6000/s offered
	for _, admit := range []bool{false, true} {
		c := DefaultConfig()
		l, err := New(c)
		if err != nil {
			t.Fatal(err)
		}
		type req struct{ arrived time.Time }
		var queue []req
		var busyUntil time.Time
		onTime, late, refused := 0, 0, 0
		var delays []time.Duration
		for now := t0; now.Before(t0.Add(duration)); now = now.Add(arrivalEvery) {
			// Serve everything whose start falls before now.
			for len(queue) > 0 {
				start := maxTime(busyUntil, queue[0].arrived)
				if start.After(now) {
					break
				}
				r := queue[0]
				queue = queue[1:]
				delay := start.Sub(r.arrived)
				busyUntil = start.Add(service)
				if admit {
					l.Observe(start, delay, budget)
					l.Release(busyUntil)
				}
				if delay+service <= budget {
					onTime++
					delays = append(delays, delay)
				} else {
					late++
				}
			}
			if admit {
				if ok, _ := l.AcquireWithin(now, 0, budget); !ok {
					refused++
					continue
				}
			}
			queue = append(queue, req{arrived: now})
		}
		goodput := float64(onTime) / duration.Seconds()
		slices.Sort(delays)
		p99 := time.Duration(0)
		if len(delays) > 0 {
			p99 = delays[len(delays)*99/100]
		}
		t.Logf("admission %v: goodput %.0f/s of capacity 2000/s, late %d, refused %d, p99 delay of on-time %v, final %+v",
			admit, goodput, late, refused, p99, l.Stats())
		if !admit {
			if goodput > 0.5*2000 {
				t.Fatalf("without admission the simulated node kept %.0f/s: the scenario does not overload it", goodput)
			}
			continue
		}
		if goodput < 0.9*2000 {
			t.Fatalf("goodput %.0f/s at 3x load, want >= 90%% of capacity 2000/s", goodput)
		}
		if late > onTime/1000 {
			t.Fatalf("%d admitted requests late, %d on time: want < 0.1%%", late, onTime)
		}
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// TestSchedulingLatencyAloneShrinksTheLimit: an interval whose requests all
// started quickly still counts as overloaded when the runtime reports that
// runnable goroutines waited longer than SchedTarget (the requests the HTTP
// server has not handed over yet are among them).
func TestSchedulingLatencyAloneShrinksTheLimit(t *testing.T) {
	l := newL(t)
	l.advance(t0)
	l.ObserveScheduling(t0, ms(4)) // under the 5 ms target
	at := interval(l, t0, 50, 0)
	if got := l.Stats().Limit; got != 10 {
		t.Fatalf("limit %d after a calm interval, want 10", got)
	}
	l.ObserveScheduling(at, ms(12))
	interval(l, at, 50, 0)
	if st := l.Stats(); st.Limit != 8 || st.SchedOverIntervals != 1 || st.SchedP99 != ms(12) {
		t.Fatalf("after a 12 ms scheduling p99: %+v, want limit 8, one sched-overloaded interval", st)
	}
	off := newL(t, func(c *Config) { c.SchedTarget = 0 })
	off.advance(t0)
	off.ObserveScheduling(t0, ms(100))
	interval(off, t0, 50, 0)
	if got := off.Stats().Limit; got != 10 {
		t.Fatalf("SchedTarget 0: limit %d, want the signal ignored", got)
	}
}

// TestLimitKeepsHeadroomAboveHealthyPeaks: in an interval that was not
// overloaded, in flight reaching half the limit is demand enough to grow
// it, so a burst twice the recent peak is admitted, not refused; below half
// the limit stays. With GrowAt 1 the limit grows only once reached.
func TestLimitKeepsHeadroomAboveHealthyPeaks(t *testing.T) {
	l := newL(t) // limit 10, GrowAt 0.5
	at := t0
	l.advance(at)
	for i := 0; i < 4; i++ {
		l.Acquire(at, 0)
	}
	at = interval(l, at, 50, 0)
	if got := l.Stats().Limit; got != 10 {
		t.Fatalf("limit %d after a peak of 4 in flight, want 10 unchanged (4 < half of 10)", got)
	}
	l.Acquire(at, 0) // 5 in flight: half the limit
	at = interval(l, at, 50, 0)
	if got := l.Stats().Limit; got != 11 {
		t.Fatalf("limit %d after a peak of 5 in flight, want 11 (grown at half the limit)", got)
	}
	strict := newL(t, func(c *Config) { c.GrowAt = 1 })
	strict.advance(t0)
	for i := 0; i < 9; i++ {
		strict.Acquire(t0, 0)
	}
	interval(strict, t0, 50, 0)
	if got := strict.Stats().Limit; got != 10 {
		t.Fatalf("GrowAt 1: limit %d after a peak of 9 of 10, want 10 unchanged", got)
	}
	// A saturated CPU (scheduling p99 over half its 5 ms threshold) gives
	// no headroom: 6 of 11 in flight grows nothing; 11 of 11 still does.
	l.Acquire(at, 0)
	l.ObserveScheduling(at, ms(3))
	at = interval(l, at, 50, 0)
	if got := l.Stats().Limit; got != 11 {
		t.Fatalf("limit %d after 6 of 11 in flight with a 3 ms scheduling p99, want 11 unchanged", got)
	}
	for range 5 {
		l.Acquire(at, 0)
	}
	l.ObserveScheduling(at, ms(3))
	at = interval(l, at, 50, 0)
	if got := l.Stats().Limit; got != 12 {
		t.Fatalf("limit %d after 11 of 11 in flight with a 3 ms scheduling p99, want 12", got)
	}
	// Overloaded intervals still cut it, headroom or not.
	interval(l, at, 100, 50)
	if got := l.Stats().Limit; got >= 12 {
		t.Fatalf("limit %d after an overloaded interval, want cut below 12", got)
	}
}

// TestSchedulingThresholdFollowsTheBudgets: a 12 ms scheduling p99 is
// overload for 30 ms requests (threshold SchedTarget 5 ms) but not for 200 ms
// ones (threshold 0.15 x 200 = 30 ms), which a 40 ms p99 is. An interval
// without requests is judged by the last budgets seen.
func TestSchedulingThresholdFollowsTheBudgets(t *testing.T) {
	long := func(l *Limiter, at time.Time, sched time.Duration) time.Time {
		l.ObserveScheduling(at, sched)
		for i := 0; i < 50; i++ {
			l.Observe(at, ms(1), ms(200))
		}
		next := at.Add(l.cfg.Interval)
		l.advance(next)
		return next
	}
	l := newL(t)
	l.advance(t0)
	at := long(l, t0, ms(12))
	if st := l.Stats(); st.Limit != 10 || st.SchedOverIntervals != 0 {
		t.Fatalf("200 ms budgets, 12 ms scheduling p99: %+v, want no overload", st)
	}
	at = long(l, at, ms(40))
	if st := l.Stats(); st.Limit != 8 || st.SchedOverIntervals != 1 {
		t.Fatalf("200 ms budgets, 40 ms scheduling p99: %+v, want limit 8, one sched-overloaded interval", st)
	}
	l.ObserveScheduling(at, ms(20)) // no requests in this interval
	l.advance(at.Add(l.cfg.Interval))
	if st := l.Stats(); st.SchedOverIntervals != 1 {
		t.Fatalf("an empty interval after 200 ms budgets, 20 ms p99: %+v, want judged by 200 ms (no overload)", st)
	}
	off := newL(t, func(c *Config) { c.SchedShare = 0 })
	off.advance(t0)
	long(off, t0, ms(12))
	if st := off.Stats(); st.SchedOverIntervals != 1 {
		t.Fatalf("SchedShare 0: %+v, want 12 ms over the fixed 5 ms target", st)
	}
}

// steady runs a second of quiet traffic at perSec requests a second, each
// answered 1 ms after it came (one in flight at a time): the completion
// rate the burst allowance uses. It returns the time after it.
func steady(l *Limiter, at time.Time, perSec int) time.Time {
	gap := time.Second / time.Duration(perSec)
	for range perSec {
		l.AcquireWithin(at, 0, ms(200))
		l.Observe(at, ms(0.1), ms(200))
		l.Release(at.Add(ms(1)))
		at = at.Add(gap)
	}
	return at
}

// pile offers n requests of class with budget at once (a pause let them
// pile up) and returns how many were admitted.
func pile(l *Limiter, at time.Time, n, class int, budget time.Duration) int {
	admitted := 0
	for range n {
		if ok, _ := l.AcquireWithin(at, class, budget); ok {
			admitted++
		}
	}
	return admitted
}

// TestBurstAllowanceAdmitsWhatCanStartInTime: past a quiet second at 2000
// requests/s (the limit stays at its initial 10: nothing came near it), 60
// requests pile up at once (a pause). With 200 ms budgets (40 ms queueing
// target) a node completing ~2000/s starts the 60th within 30 ms: all are
// admitted. With 30 ms budgets (6 ms target) only what starts within 6 ms
// is: 11. A lower class gets its share of the target; without a measured
// rate, without a budget, or with a scheduling latency that eats the
// target, the limit holds.
func TestBurstAllowanceAdmitsWhatCanStartInTime(t *testing.T) {
	wide := func(c *Config) { c.MaxLimit = 1000 }
	cases := []struct {
		name   string
		class  int
		budget time.Duration
		sched  time.Duration
		want   int
	}{
		{"200ms", 0, ms(200), 0, 60},
		{"30ms", 0, ms(30), 0, 11},           // (in flight + 1) / 1963/s <= 6 ms
		{"200ms class 2", 2, ms(200), 0, 58}, // 0.75 of the 40 ms target
		{"200ms, sched 35ms", 0, ms(200), ms(35), 10},
		{"no budget", 0, 0, 0, 10},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := newL(t, wide)
			at := steady(l, t0, 2000)
			if c.sched > 0 {
				l.ObserveScheduling(at, c.sched)
			}
			got := pile(l, at, 60, c.class, c.budget)
			st := l.Stats()
			if got != c.want || st.Limit != 10 {
				t.Fatalf("admitted %d of the pile, want %d (rate %.0f/s, limit %d)", got, c.want, st.CompletionRate, st.Limit)
			}
			if st.BurstAdmitted != uint64(max(0, got-int(10*l.share(c.class)+0.999))) {
				t.Fatalf("burst admitted %d of %d", st.BurstAdmitted, got)
			}
		})
	}
	// A node with no rate measured yet (it just started) holds the limit.
	l := newL(t, wide)
	if got := pile(l, t0, 60, 0, ms(200)); got != 10 {
		t.Fatalf("fresh limiter admitted %d, want its initial limit 10", got)
	}
	if st := l.Stats(); st.BurstAdmitted != 0 || st.Refused != 50 {
		t.Fatalf("stats %+v", st)
	}
	// MaxLimit bounds the allowance too.
	l = newL(t)
	at := steady(l, t0, 2000)
	if got := pile(l, at, 60, 0, ms(200)); got != 20 {
		t.Fatalf("admitted %d past MaxLimit 20", got)
	}
}

// TestQuietIntervalAtTheLimitDoublesIt: a limit reached while the queues
// stayed nearly empty (delays at most QuietShare of their targets) and the
// CPU had room doubles; with delays above that share, or a busy CPU, it
// grows by Increase as before; QuietShare 0 turns the doubling off.
func TestQuietIntervalAtTheLimitDoublesIt(t *testing.T) {
	quietInterval := func(l *Limiter, at time.Time, sched time.Duration) time.Time {
		for range l.Stats().Limit {
			l.Acquire(at, 0)
		}
		for range 50 {
			l.Observe(at, ms(0.1), ms(30)) // 0.1 ms of a 6 ms target
		}
		l.ObserveScheduling(at, sched)
		next := at.Add(l.cfg.Interval)
		l.advance(next)
		return next
	}
	wide := func(c *Config) { c.MaxLimit = 1000 }
	l := newL(t, wide)
	l.advance(t0)
	at := quietInterval(l, t0, 0)
	if got := l.Stats().Limit; got != 20 {
		t.Fatalf("limit %d after a quiet interval at the limit, want 10 doubled = 20", got)
	}
	at = quietInterval(l, at, ms(3)) // over half the 5 ms scheduling threshold
	if got := l.Stats().Limit; got != 21 {
		t.Fatalf("limit %d after an interval at the limit with a busy CPU, want 20+1 = 21", got)
	}
	quietInterval(l, at, 0)
	if got, st := l.Stats().Limit, l.Stats(); got != 42 || st.Doublings != 2 {
		t.Fatalf("limit %d after another quiet interval, want 42; stats %+v", got, st)
	}
	off := newL(t, wide, func(c *Config) { c.QuietShare = 0 })
	off.advance(t0)
	quietInterval(off, t0, 0)
	if got := off.Stats().Limit; got != 11 {
		t.Fatalf("QuietShare 0: limit %d after a quiet interval at the limit, want 11", got)
	}
	// Within QuietAfter of an overloaded interval, a quiet one at the limit
	// grows it by Increase only; after it, it doubles again.
	burnt := newL(t, wide)
	burnt.advance(t0)
	at = interval(burnt, t0, 100, 50) // overloaded: 10 cut to 5
	at = quietInterval(burnt, at, 0)
	if got := burnt.Stats().Limit; got != 6 {
		t.Fatalf("limit %d after a quiet interval 20 ms after an overloaded one, want 5+1 = 6", got)
	}
	at = at.Add(time.Second)
	burnt.advance(at) // closes the second-long interval since (no samples)
	before := burnt.Stats().Limit
	quietInterval(burnt, at, 0)
	if got := burnt.Stats().Limit; got != 2*before {
		t.Fatalf("limit %d after a quiet interval a second after the overloaded one, want %d doubled", got, before)
	}
	capped := newL(t) // MaxLimit 20
	capped.advance(t0)
	at = quietInterval(capped, t0, 0)
	quietInterval(capped, at, 0)
	if got := capped.Stats().Limit; got != 20 {
		t.Fatalf("limit %d, want capped at MaxLimit 20", got)
	}
}

// TestLoadAfterALullIsNotRefused: the node idles at the initial limit, then
// a load it serves with room to spare starts, in bursts (a client's
// connections firing together) of more requests than the initial limit.
// The limit must catch up within a few intervals (doubling each: 16, 32,
// 64), after which nothing is refused. Without the doubling (QuietShare 0)
// the limit climbs one request per interval and bursts are refused for a
// quarter of a second: the scenario exercises what it checks.
func TestLoadAfterALullIsNotRefused(t *testing.T) {
	const (
		service = 200 * time.Microsecond // one CPU: capacity 5000/s
		burst   = 40                     // requests arriving together...
		every   = 20 * time.Millisecond  // ...50 times a second: 2000/s
		budget  = 200 * time.Millisecond
	)
	// run returns the refusals and when the last one was, from the start.
	run := func(quiet float64) (refused int, last time.Duration) {
		c := DefaultConfig()
		c.QuietShare = quiet
		l, err := New(c)
		if err != nil {
			t.Fatal(err)
		}
		var busyUntil time.Time
		type req struct{ arrived, start, done time.Time }
		var inFlight []req
		l.advance(t0)
		begin := t0.Add(time.Minute)
		for at := begin; at.Before(begin.Add(time.Second)); at = at.Add(every) {
			// Finish what is done by now (the single CPU serves in order).
			for len(inFlight) > 0 && !inFlight[0].done.After(at) {
				r := inFlight[0]
				inFlight = inFlight[1:]
				l.Observe(r.start, r.start.Sub(r.arrived), budget)
				l.Release(r.done)
			}
			for i := range burst {
				arrived := at.Add(time.Duration(i) * time.Microsecond)
				if ok, _ := l.AcquireWithin(arrived, 0, budget); !ok {
					refused, last = refused+1, at.Sub(begin)
					continue
				}
				start := maxTime(busyUntil, arrived)
				busyUntil = start.Add(service)
				inFlight = append(inFlight, req{arrived, start, busyUntil})
			}
		}
		return refused, last
	}
	refused, last := run(DefaultConfig().QuietShare)
	offRefused, offLast := run(0)
	t.Logf("first second after a lull, 2000 sent: %d refused, the last %v after the start (without the doubling: %d, the last after %v)",
		refused, last, offRefused, offLast)
	if limit := 3 * DefaultConfig().Interval; last > limit {
		t.Fatalf("a request refused %v after the start of a load the node serves easily: want none after %v", last, limit)
	}
	if offLast < 10*DefaultConfig().Interval {
		t.Fatalf("without the doubling the last refusal was %v after the start: the scenario does not exercise the cold limit", offLast)
	}
}
