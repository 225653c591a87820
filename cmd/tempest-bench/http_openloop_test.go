package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestScheduleIsEvenAndCoversTheDuration(t *testing.T) {
	for _, tc := range []struct {
		rate float64
		d    time.Duration
		n    int
	}{{500, 2 * time.Second, 1000}, {1600, 8 * time.Second, 12800}, {3, time.Second, 3}, {0.5, time.Second, 1}, {333, 3 * time.Second, 999}} {
		n := scheduleCount(tc.rate, tc.d)
		if n != tc.n {
			t.Errorf("scheduleCount(%v, %v) = %d, want %d", tc.rate, tc.d, n, tc.n)
		}
		gap := time.Duration(float64(time.Second) / tc.rate)
		for i := 1; i < n; i++ {
			if step := intendedOffset(tc.rate, i) - intendedOffset(tc.rate, i-1); step < gap-1 || step > gap+1 {
				t.Fatalf("rate %v: request %d is %v after the previous, want %v", tc.rate, i, step, gap)
			}
		}
		if last := intendedOffset(tc.rate, n-1); n > 1 && last >= tc.d {
			t.Errorf("rate %v: last request due at %v, after the run's %v", tc.rate, last, tc.d)
		}
		// The schedule does not drift: request i is due at exactly i/rate.
		if got, want := intendedOffset(tc.rate, n-1), time.Duration(float64(n-1)/tc.rate*1e9); got-want > time.Microsecond || want-got > time.Microsecond {
			t.Errorf("rate %v: drift %v", tc.rate, got-want)
		}
	}
}

func TestAccountingLatenessAndGoodput(t *testing.T) {
	const budget = 30 * time.Millisecond
	msd := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	outs := []outcome{
		{status: 200, lat: msd(5)},                                           // on time
		{status: 200, lat: msd(30)},                                          // exactly the budget: on time
		{status: 200, lat: msd(30.5), lag: msd(2)},                           // late, not by more than 1 ms
		{status: 200, lat: msd(40)},                                          // late by more than 1 ms
		{status: 503, code: "deadline_unmeetable", lat: msd(0.5)},            // refusal on time
		{status: 503, code: "overloaded", lat: msd(31.5)},                    // refusal late by > 1 ms
		{status: 504, code: "deadline_exceeded", lat: msd(32)},               // 504 late by > 1 ms
		{status: 400, code: "bad_request", lat: msd(1)},                      // other status
		{status: statusClientTimeout, lat: msd(1030)},                        // client timeout: late
		{status: statusTransport, code: "connection reset", lat: msd(2)},     // transport error
		{status: statusNotSent},                                              // interrupted: not counted
		{status: statusInterrupted, lat: msd(100)},                           // interrupted: not counted
		{status: 201, lat: msd(29.9), lag: msd(0.1), query: true},            // 2xx of another kind
		{status: 500, code: "handler_panic", lat: msd(1), lag: msd(1000000)}, // huge send lag
	}
	r := account(outs, 1000, 100*time.Millisecond, budget)
	check := func(name string, got, want int) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
	check("scheduled", r.Scheduled, 14)
	check("sent", r.Sent, 12)
	check("answers", r.Answers, 10)
	check("client timeouts", r.ClientTimeouts, 1)
	check("transport errors", r.TransportErrors, 1)
	check("on-time 2xx", r.OnTime2xx, 3)
	check("late 2xx", r.Late2xx, 2)
	check("late any", r.LateAny, 5)                            // 30.5, 40, 31.5, 32, 1030 ms, not the 30 ms one
	check("late > 1 ms", r.LateOver1ms, 4)                     // 40, 31.5, 32, 1030
	check("late > 1 ms from write", r.LateOver1msFromWrite, 4) // 30.5 with 2 ms of send lag is on time from the write
	check("2xx latencies", r.OK.Count, 5)
	check("503 latencies", r.Refused.Count, 2)
	check("504 latencies", r.Timeout.Count, 1)
	check("other latencies", r.Other.Count, 4)
	check("send lags", r.SendLag.Count, 12)
	if got, want := r.GoodputPerS, 30.0; math.Abs(got-want) > 1e-9 {
		t.Errorf("goodput %v/s, want %v/s (3 on time in 0.1 s)", got, want)
	}
	if got, want := r.OnTimeFraction, 3.0/12; math.Abs(got-want) > 1e-9 {
		t.Errorf("on-time fraction %v, want %v", got, want)
	}
	for code, want := range map[string]int{"200": 4, "201": 1, "503 overloaded": 1, "503 deadline_unmeetable": 1,
		"504 deadline_exceeded": 1, "400 bad_request": 1, "500 handler_panic": 1, "client timeout": 1, "transport error": 1} {
		check("code "+code, r.Codes[code], want)
	}
	for kind, want := range map[string]int{"200": 1, "503 overloaded": 1, "504 deadline_exceeded": 1, "client timeout": 1} {
		check("late > 1 ms of kind "+kind, r.LateOver1msByKind[kind], want)
	}
	if len(r.LateOver1msByKind) != 4 || len(r.LateOver1msPerSecond) != 1 || r.LateOver1msPerSecond[0] != 4 {
		t.Errorf("late > 1 ms by kind %v, per second %v", r.LateOver1msByKind, r.LateOver1msPerSecond)
	}
	if r.TransportErrorSample != "connection reset" {
		t.Errorf("transport error sample %q", r.TransportErrorSample)
	}
	if r.SendLag.MaxMs != 1e6 || r.OK.MaxMs != 40 || r.Refused.P50Ms != 0.5 {
		t.Errorf("summaries: send lag max %v, 2xx max %v, 503 p50 %v", r.SendLag.MaxMs, r.OK.MaxMs, r.Refused.P50Ms)
	}
}

func TestAchievedSendRate(t *testing.T) {
	const rate = 100.0
	outs := make([]outcome, 101)
	for i := range outs {
		outs[i] = outcome{status: 200}
	}
	if r := account(outs, rate, time.Second, time.Second); math.Abs(r.AchievedSendPerS-rate) > 1e-6 {
		t.Errorf("on schedule: achieved %v/s, want %v/s", r.AchievedSendPerS, rate)
	}
	// A generator that falls behind, each request 1 ms later than the one
	// before it: 100 gaps of 11 ms.
	for i := range outs {
		outs[i].lag = time.Duration(i) * time.Millisecond
	}
	if r, want := account(outs, rate, time.Second, time.Second), 100/1.1; math.Abs(r.AchievedSendPerS-want) > 1e-6 {
		t.Errorf("behind: achieved %v/s, want %v/s", r.AchievedSendPerS, want)
	}
}

func TestPercentilesIncludeTheTail(t *testing.T) {
	ds := make([]time.Duration, 1000)
	for i := range ds {
		ds[len(ds)-1-i] = time.Duration(i+1) * time.Millisecond // unsorted: 1000 ms .. 1 ms
	}
	s := summarizeLat(ds)
	if s.Count != 1000 || s.P50Ms != 500 || s.P99Ms != 990 || s.P999Ms != 999 || s.MaxMs != 1000 {
		t.Errorf("got %+v", s)
	}
	if s := summarizeLat(nil); s != (latStats{}) {
		t.Errorf("empty: %+v", s)
	}
}

// fakeServer is a model of a node: everything on time up to its capacity,
// then a collapse (or a graceful plateau).
func fakeServer(capacity float64, collapse bool) func(rate float64) float64 {
	return func(rate float64) float64 {
		switch {
		case rate <= capacity:
			return 1
		case collapse:
			return 0.1 * capacity / rate
		default:
			return capacity / rate
		}
	}
}

func TestCapacitySearchAgainstAModel(t *testing.T) {
	for _, tc := range []struct {
		capacity, start, max float64
		collapse             bool
	}{
		{1600, 250, 1e5, true},
		{1600, 250, 1e5, false},
		{2400, 100, 1e5, true},
		{37, 250, 1e5, true},   // start above capacity: halve first
		{9000, 250, 1e5, true}, // many doublings
		{1000, 1000, 1e5, false},
	} {
		model := fakeServer(tc.capacity, tc.collapse)
		var tried []float64
		probe := func(rate float64) (bool, error) {
			tried = append(tried, rate)
			return model(rate) >= capacityCriterion, nil
		}
		got, capped, err := searchCapacity(probe, tc.start, tc.max, 0.05, 14)
		if err != nil || capped {
			t.Fatalf("capacity %v: err %v capped %v (tried %v)", tc.capacity, err, capped, tried)
		}
		if got > tc.capacity || got < tc.capacity/1.05-1 {
			t.Errorf("capacity %v: found %v (tried %v)", tc.capacity, got, tried)
		}
		if len(tried) > 14 {
			t.Errorf("capacity %v: %d probes", tc.capacity, len(tried))
		}
		for _, r := range tried {
			if r != math.Round(r) || r <= 0 {
				t.Errorf("capacity %v: tried rate %v", tc.capacity, r)
			}
		}
	}
}

func TestCapacitySearchLimits(t *testing.T) {
	always := func(float64) (bool, error) { return true, nil }
	if got, capped, err := searchCapacity(always, 250, 3000, 0.05, 14); err != nil || !capped || got != 3000 {
		t.Errorf("every rate passes up to --max-rate 3000: got %v capped %v err %v", got, capped, err)
	}
	never := func(float64) (bool, error) { return false, nil }
	if _, _, err := searchCapacity(never, 250, 1e5, 0.05, 14); err == nil {
		t.Error("no rate passes: want an error")
	}
	boom := errors.New("interrupted")
	n := 0
	failing := func(float64) (bool, error) {
		if n++; n == 3 {
			return false, boom
		}
		return true, nil
	}
	if _, _, err := searchCapacity(failing, 250, 1e5, 0.05, 14); !errors.Is(err, boom) {
		t.Errorf("probe error: got %v", err)
	}
	steps := 0
	counting := func(r float64) (bool, error) { steps++; return fakeServer(5000, true)(r) >= capacityCriterion, nil }
	if got, _, err := searchCapacity(counting, 250, 1e5, 0.0001, 6); err != nil || steps != 6 || got < 2000 || got > 5000 {
		t.Errorf("6 steps at most: %d steps, got %v, err %v", steps, got, err)
	}
}

func TestTooNoisy(t *testing.T) {
	busy, calm := 0.6, 0.1
	if !tooNoisy(openRun{OthersCPUUtil: &busy}, 0.25) || tooNoisy(openRun{OthersCPUUtil: &calm}, 0.25) ||
		tooNoisy(openRun{OthersCPUUtil: &busy}, 0) || tooNoisy(openRun{}, 0.25) {
		t.Error("tooNoisy")
	}
}

func TestRatioTo1x(t *testing.T) {
	runs := []openRun{{Multiple: 1, GoodputPerS: 1000}, {Multiple: 2, GoodputPerS: 950}, {Multiple: 3, GoodputPerS: 100}}
	setRatioTo1x(runs)
	for i, want := range []float64{1, 0.95, 0.1} {
		if got := runs[i].GoodputRatioTo1x; got == nil || math.Abs(*got-want) > 1e-9 {
			t.Errorf("run %d: ratio %v, want %v", i, got, want)
		}
	}
	none := []openRun{{Multiple: 2, GoodputPerS: 950}}
	if setRatioTo1x(none); none[0].GoodputRatioTo1x != nil {
		t.Error("no 1x run: want no ratio")
	}
}

func TestParseFlagsOfTheOpenLoop(t *testing.T) {
	if p, err := parseCPUs("node=0,gen=1"); err != nil || p.node != "0" || p.gen != "1" {
		t.Errorf("node=0,gen=1: %+v %v", p, err)
	}
	if p, err := parseCPUs("gen=2-3"); err != nil || p.gen != "2-3" || p.node != "" {
		t.Errorf("gen=2-3: %+v %v", p, err)
	}
	for _, bad := range []string{"node", "node=x", "cpu=1", "node=3-1", "node=-1"} {
		if _, err := parseCPUs(bad); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
	if set, n := cpuListSet("1-3"); n != 3 || set.Count() != 3 || !set.IsSet(2) || set.IsSet(0) {
		t.Errorf("1-3: %v %d", set, n)
	}
	if m, err := parseMultiples("1, 2,3.5"); err != nil || len(m) != 3 || m[2] != 3.5 {
		t.Errorf("multiples: %v %v", m, err)
	}
	for _, bad := range []string{"0", "x", "1,,2", "-1"} {
		if _, err := parseMultiples(bad); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
	stat := "4242 (tempest node) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 12 0 99 0 0"
	if s, err := parseProcStatCPU(stat); err != nil || s != 3.25 {
		t.Errorf("/proc stat: %v %v", s, err)
	}
	if s, err := parseSystemBusy("cpu  100 5 50 9000 40 3 2 10 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n"); err != nil || s != 1.7 {
		t.Errorf("/proc/stat busy: %v %v", s, err)
	}
	if _, err := parseProcStatCPU("4242 (x) S 1"); err == nil {
		t.Error("short /proc stat: want an error")
	}
}

func TestOpenLoopFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"--rate", "100", "--find-capacity"}, "--rate is one run"},
		{[]string{"--overload", "1,2"}, "needs --find-capacity or --capacity"},
		{[]string{"--find-capacity", "--capacity", "10"}, "not both"},
		{[]string{"--capacity", "10", "--overload", "0"}, "not a positive multiple"},
		{[]string{"--rate", "100", "--cpus", "cpu=1"}, "unknown key"},
		{[]string{"--rate", "100", "--addr", "127.0.0.1:1", "--node-process"}, "--addr names a running node"},
	} {
		var out, errOut bytes.Buffer
		err := runHTTP(tc.args, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.err)
		}
	}
}

// TestOpenLoopRunInProcess sends a short open-loop run through an
// in-process node and checks the JSON adds up. No figure is asserted.
func TestOpenLoopRunInProcess(t *testing.T) {
	defer goleak.VerifyNone(t)
	var out, errOut bytes.Buffer
	if err := runHTTP([]string{"--rate", "200", "--duration", "500ms", "--json", "--clones", "1"}, &out, &errOut); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	var res openResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if res.Mode != "open_loop" || res.BudgetMs != 30 || len(res.Runs) != 1 {
		t.Fatalf("got %+v", res)
	}
	r := res.Runs[0]
	total := 0
	for _, n := range r.Codes {
		total += n
	}
	if r.Scheduled != 100 || r.Sent != 100 || total != 100 || r.Answers+r.ClientTimeouts+r.TransportErrors != 100 ||
		r.OK.Count+r.Refused.Count+r.Timeout.Count+r.Other.Count != 100 || r.NodeCPUSPerRequest == nil {
		t.Errorf("figures do not add up: %+v", r)
	}
	// The node's own counts come from its status. (Its written-late count
	// may exceed the client's late one: its budget starts up to a kernel
	// tick before the client's write.)
	if r.NodeRefusals == nil || r.NodeWrittenLate == nil {
		t.Errorf("node counts: refusals %v, written late %v; want both from /v1/status", r.NodeRefusals, r.NodeWrittenLate)
	}
	if !strings.Contains(errOut.String(), "rate 200/s") {
		t.Errorf("no progress on stderr: %q", errOut.String())
	}
}

// TestStallSeconds: a second counts as a stall when more than 1% of the
// requests due in it missed (not 2xx within budget), and the longest run
// of consecutive stall seconds is reported.
func TestStallSeconds(t *testing.T) {
	const rate, budget = 200.0, 100 * time.Millisecond
	outs := make([]outcome, 5*int(rate)) // 5 s
	for i := range outs {
		outs[i] = outcome{status: 200, lat: time.Millisecond}
	}
	sec := func(s, k int) *outcome { return &outs[s*int(rate)+k] }
	*sec(0, 3) = outcome{status: 200, lat: 2 * budget}                                                    // 1 of 200 = 0.5%: not a stall
	*sec(1, 0), *sec(1, 1), *sec(1, 2) = outcome{status: 503}, outcome{status: 503}, outcome{status: 503} // 1.5%
	for k := range 100 {                                                                                  // half of second 2
		*sec(2, k) = outcome{status: statusClientTimeout, lat: time.Second}
	}
	*sec(4, 0), *sec(4, 1), *sec(4, 9) = outcome{status: 504}, outcome{status: 504}, outcome{status: 504}
	r := account(outs, rate, 5*time.Second, budget)
	if r.StallSeconds != 3 || r.LongestStallS != 2 {
		t.Errorf("stall seconds %d, longest %d s; want 3 and 2 (seconds 1, 2 and 4)", r.StallSeconds, r.LongestStallS)
	}
	if math.Abs(r.WorstSecondMissFraction-0.5) > 1e-9 {
		t.Errorf("worst second's miss fraction %v, want 0.5", r.WorstSecondMissFraction)
	}
}

// TestRefusalDelta: the node's refusals during a run are the histogram
// after minus before; p99 is the upper bound of the bucket holding it.
func TestRefusalDelta(t *testing.T) {
	before := []uint64{0, 0, 5, 100}              // 105 refusals before the run
	after := []uint64{0, 0, 5, 1090, 0, 0, 0, 10} // +990 in [4,8) µs, +10 in [64,128) µs
	n, p99 := refusalDelta(before, after)
	if n == nil || *n != 1000 || p99 == nil || *p99 != 128 {
		t.Fatalf("delta: count %v p99 %v, want 1000 and 128 µs", n, p99)
	}
	if n, p99 := refusalDelta(after, after); *n != 0 || p99 != nil {
		t.Fatalf("no refusals: count %d p99 %v", *n, p99)
	}
}

// TestLatenessFromWrite: an answer late only because the generator sent it
// late counts late from the intended send time, not from the write.
func TestLatenessFromWrite(t *testing.T) {
	msd := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	outs := []outcome{
		{status: 200, lat: msd(35), lag: msd(10)}, // 25 ms from the write
		{status: 503, lat: msd(33), lag: msd(1)},  // 32 ms from the write: late both ways
	}
	r := account(outs, 100, time.Second, 30*time.Millisecond)
	if r.LateOver1ms != 2 || r.LateOver1msFromWrite != 1 {
		t.Fatalf("late > 1 ms: %d from intended, %d from write; want 2 and 1", r.LateOver1ms, r.LateOver1msFromWrite)
	}
}

func TestParseTiming(t *testing.T) {
	a, w, h, ok := parseTiming("1000,3000,2000")
	if !ok || a.UnixNano() != 1000 || w.UnixNano() != 3000 || h.UnixNano() != 2000 {
		t.Fatalf("three fields: %v %v %v %v", a, w, h, ok)
	}
	a, w, h, ok = parseTiming("1000,3000")
	if !ok || a.UnixNano() != 1000 || w.UnixNano() != 3000 || h.UnixNano() != 1000 {
		t.Fatalf("two fields: headers must be the arrival: %v %v %v %v", a, w, h, ok)
	}
	for _, bad := range []string{"", "1", "1,x", "1,2,3,4", "a,b,c"} {
		if _, _, _, ok := parseTiming(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}

// FuzzParseTiming: any Tempest-Timing value from the node parses or is
// refused, never panics, and what parses is what was sent.
func FuzzParseTiming(f *testing.F) {
	f.Add("1000,3000,2000")
	f.Add("1000,3000")
	f.Add(",,")
	f.Fuzz(func(t *testing.T, v string) {
		a, w, h, ok := parseTiming(v)
		if !ok {
			return
		}
		f := strings.Split(v, ",")
		if a.UnixNano() != mustInt(t, f[0]) {
			t.Fatalf("%q: arrived %d", v, a.UnixNano())
		}
		if w.UnixNano() != mustInt(t, f[1]) || (len(f) == 3 && h.UnixNano() != mustInt(t, f[2])) {
			t.Fatalf("%q: answered %d headers %d", v, w.UnixNano(), h.UnixNano())
		}
	})
}

func mustInt(t *testing.T, s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("%q parsed as timing but is not an integer: %v", s, err)
	}
	return n
}
