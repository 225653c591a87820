package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tempestrt/tempest/ricochet/ricochettest"
)

// Open loop: requests leave on a fixed schedule (request i at start + i/rate)
// whatever the server does, each on its own goroutine, and every latency is
// measured from the request's intended send time, so a stalled server or a
// late generator shows in the figures instead of slowing the load down
// (no coordinated omission). Every outcome counts: 2xx, 503, 504, other
// statuses, transport errors and client-side timeouts.

// The outcome of one request that did not get an HTTP status.
const (
	statusClientTimeout = 0  // no answer within the client timeout (budget + clientGrace)
	statusTransport     = -1 // connection refused/reset, ...
	statusInterrupted   = -2 // the run was interrupted before it ended: not counted
	statusNotSent       = -3 // never sent (run interrupted): not counted
)

// clientGrace is how much longer than the budget the client waits, so late
// answers are still measured (and counted late) rather than cut off.
const clientGrace = time.Second

// settle is the pause between runs, so one run's backlog does not start the next.
const settle = time.Second

// outcome is what happened to one scheduled request.
type outcome struct {
	status int           // HTTP status, or one of the status* constants above
	code   string        // the error code of a non-2xx JSON answer
	lag    time.Duration // actual send - intended send (the generator's own lateness)
	lat    time.Duration // answer fully read (or failure) - intended send
	query  bool
	// With the node's Tempest-Timing answer header (timed): the request's
	// time before the node read its headers (from its write), in the node
	// (from the budget's start to the answer's write), after (to the answer
	// fully read), and from its write to the budget's start (uncounted: the
	// part of the client's wait the node's clock missed).
	timed                      bool
	pre, node, post, uncounted time.Duration
}

// latencyParts splits outcomes' latencies where the node reported its
// timing (see outcome): before the node read the headers, in the node
// (from the budget's start to the answer's write), after (the answer's way
// back), and uncounted (the client's write to the budget's start).
type latencyParts struct {
	Before    latStats `json:"before_node"`
	InNode    latStats `json:"in_node"`
	After     latStats `json:"after_node"`
	Uncounted latStats `json:"uncounted"` // write to the budget's start (negative: the node started it earlier)
}

func summarizeParts(os []outcome) *latencyParts {
	var pre, node, post, unc []time.Duration
	for _, o := range os {
		if o.timed {
			pre, node, post, unc = append(pre, o.pre), append(node, o.node), append(post, o.post), append(unc, o.uncounted)
		}
	}
	if len(pre) == 0 {
		return nil
	}
	return &latencyParts{Before: summarizeLat(pre), InNode: summarizeLat(node), After: summarizeLat(post), Uncounted: summarizeLat(unc)}
}

// scheduleCount is the number of requests a run of d at rate sends.
func scheduleCount(rate float64, d time.Duration) int {
	return max(1, int(math.Floor(rate*d.Seconds()+1e-9)))
}

// intendedOffset is when request i is due, after the start of the run.
func intendedOffset(rate float64, i int) time.Duration {
	return time.Duration(float64(i) * float64(time.Second) / rate)
}

// latStats summarizes latencies, in milliseconds.
type latStats struct {
	Count  int     `json:"count"`
	P50Ms  float64 `json:"p50_ms"`
	P99Ms  float64 `json:"p99_ms"`
	P999Ms float64 `json:"p99_9_ms"`
	MaxMs  float64 `json:"max_ms"`
}

// summarizeLat sorts ds in place and summarizes it with the percentile
// shared with the other benchmarks (nearest rank).
func summarizeLat(ds []time.Duration) latStats {
	if len(ds) == 0 {
		return latStats{}
	}
	slices.Sort(ds)
	return latStats{
		Count:  len(ds),
		P50Ms:  ms(ricochettest.Percentile(ds, 0.50)),
		P99Ms:  ms(ricochettest.Percentile(ds, 0.99)),
		P999Ms: ms(ricochettest.Percentile(ds, 0.999)),
		MaxMs:  ms(ds[len(ds)-1]),
	}
}

// openRun is the figures of one open-loop run at one rate.
type openRun struct {
	Multiple    float64 `json:"multiple,omitempty"` // of the capacity (--overload)
	OfferedPerS float64 `json:"offered_per_s"`
	DurationS   float64 `json:"duration_s"` // of the schedule
	Scheduled   int     `json:"scheduled"`
	Sent        int     `json:"sent"`
	// AchievedSendPerS: (sent-1) / (last actual send - first actual send).
	AchievedSendPerS float64 `json:"achieved_send_per_s"`
	// Answers: requests that got an HTTP status (any); the rest are
	// ClientTimeouts and TransportErrors.
	Answers         int `json:"answers"`
	ClientTimeouts  int `json:"client_timeouts"`
	TransportErrors int `json:"transport_errors"`
	// OnTime2xx: 2xx answered within the budget, from the intended send.
	OnTime2xx      int     `json:"on_time_2xx"`
	OnTimeFraction float64 `json:"on_time_fraction"` // of sent
	GoodputPerS    float64 `json:"goodput_per_s"`    // on_time_2xx / duration_s
	// GoodputRatio: goodput / capacity, when the capacity is known.
	GoodputRatio *float64 `json:"goodput_ratio_to_capacity,omitempty"`
	// GoodputRatioTo1x: goodput / the goodput of the 1x run, when there is
	// one (issue 7's goal: >= 0.9 at 2x and 3x).
	GoodputRatioTo1x *float64 `json:"goodput_ratio_to_1x,omitempty"`
	// Late2xx: 2xx after the budget. LateAny: any outcome after the budget
	// (every status, client timeouts and transport errors included).
	// LateOver1ms: any outcome more than 1 ms after the budget.
	Late2xx     int `json:"late_2xx"`
	LateAny     int `json:"late_any"`
	LateOver1ms int `json:"late_over_1ms"`
	// LateOver1msFromWrite: the same, with latency counted from when the
	// request was about to be written instead of its intended send time:
	// what is left when the generator's own send lag is taken out.
	LateOver1msFromWrite int `json:"late_over_1ms_from_write"`
	// LateOver1msByKind splits LateOver1ms by outcome (status and code, as
	// in Codes), and LateOver1msPerSecond by second of the schedule (JSON
	// only): whether the late answers are one kind, or one moment.
	LateOver1msByKind    map[string]int `json:"late_over_1ms_by_kind,omitempty"`
	LateOver1msPerSecond []int          `json:"late_over_1ms_per_second,omitempty"`
	// Parts and LateParts split the latency of every answer, and of the
	// answers more than 1 ms late, into before/in/after the node (from the
	// node's Tempest-Timing header; same machine, same clock).
	Parts     *latencyParts `json:"latency_parts,omitempty"`
	LateParts *latencyParts `json:"late_over_1ms_parts,omitempty"`
	// Latency from the intended send time, by kind of outcome.
	OK      latStats `json:"latency_2xx"`
	Refused latStats `json:"latency_503"`
	Timeout latStats `json:"latency_504"`
	Other   latStats `json:"latency_other"` // other statuses, client timeouts, transport errors
	// SendLag: actual send - intended send, over every sent request.
	SendLag latStats       `json:"send_lag"`
	Codes   map[string]int `json:"codes"`
	// TransportErrorSample is one transport error's text, if any.
	TransportErrorSample string `json:"transport_error_sample,omitempty"`
	// Node CPU over the run (from the start of the schedule until the last
	// answer): seconds per sent request, and as a fraction of one CPU.
	NodeCPUSPerRequest *float64 `json:"node_cpu_s_per_request,omitempty"`
	NodeCPUUtil        *float64 `json:"node_cpu_util,omitempty"`
	// GenCPUUtil: the generator's CPU as a fraction of one CPU (only when
	// the node is a separate process).
	GenCPUUtil *float64 `json:"gen_cpu_util,omitempty"`
	// OthersCPUUtil: CPU the rest of the machine used during the run, in
	// CPUs (busy time in /proc/stat minus the node's and the bench's own):
	// other processes competing with the measurement.
	OthersCPUUtil *float64 `json:"others_cpu_util,omitempty"`
	// NoisyRepeats: earlier tries of this run not counted because others
	// used more than --max-others-cpu.
	NoisyRepeats int `json:"noisy_repeats"`
	// Dials: new TCP connections the client opened during the run (not
	// counting those opened before it, rawClient.prefill).
	Dials int64 `json:"dials"`
	// StartedAt: when the schedule started (second 0 of the per-second
	// figures), to line them up with the node's log. WallS: from then to
	// the last outcome.
	StartedAt time.Time `json:"started_at"`
	WallS     float64   `json:"wall_s"`
	// Per second of the schedule (by intended send time): a stall second is
	// one in which more than 1% of the requests sent missed (were not 2xx
	// within budget). LongestStallS is the longest run of them.
	StallSeconds int `json:"stall_seconds"`
	// NodeRefusals and NodeRefusalP99Us: the 503s of the node's front door
	// during the run and the p99 of the node's own time to write them (from
	// the headers read to the answer written), from the difference of
	// /v1/status refusal_time histograms before and after the run (p99 is a
	// bucket's upper bound, at most 2x high). Absent when the node does not
	// report them.
	NodeRefusals     *uint64 `json:"node_refusals,omitempty"`
	NodeRefusalP99Us *int64  `json:"node_refusal_p99_us,omitempty"`
	// NodeWrittenLate: answers the node itself counted as handed to the
	// write after their deadline during the run (/v1/status
	// deadlines.written_late, before and after): the node's view of the
	// late answers the client counts. Absent when the node does not say.
	NodeWrittenLate         *uint64 `json:"node_written_late,omitempty"`
	LongestStallS           int     `json:"longest_stall_s"`
	WorstSecondMissFraction float64 `json:"worst_second_miss_fraction"`
	// MissedPerSecond: the requests sent in each second of the schedule
	// that missed (JSON only: where in the run the misses are).
	MissedPerSecond []int `json:"missed_per_second,omitempty"`
}

// stallShare is the share of a second's requests that must miss for the
// second to count as a stall.
const stallShare = 0.01

// secondStats fills in the per-second stall figures from each second's
// sent and missed counts.
func (r *openRun) secondStats(sent, missed []int) {
	r.MissedPerSecond = missed
	run := 0
	for i := range sent {
		if sent[i] == 0 {
			continue
		}
		f := float64(missed[i]) / float64(sent[i])
		r.WorstSecondMissFraction = max(r.WorstSecondMissFraction, f)
		if f > stallShare {
			r.StallSeconds++
			run++
			r.LongestStallS = max(r.LongestStallS, run)
		} else {
			run = 0
		}
	}
}

// account turns the outcomes of a run into its figures (CPU and dials
// are filled in by the caller).
func account(outs []outcome, rate float64, d, budget time.Duration) openRun {
	r := openRun{OfferedPerS: rate, DurationS: d.Seconds(), Scheduled: len(outs), Codes: map[string]int{}, LateOver1msByKind: map[string]int{}}
	var ok, refused, timeout, other, lags []time.Duration
	var lateOuts []outcome
	firstSend, lastSend := time.Duration(math.MaxInt64), time.Duration(0)
	secs := int(d/time.Second) + 1
	sentIn, missedIn, lateIn := make([]int, secs), make([]int, secs), make([]int, secs)
	for i, o := range outs {
		if o.status == statusNotSent || o.status == statusInterrupted {
			continue
		}
		r.Sent++
		sec := min(int(intendedOffset(rate, i)/time.Second), secs-1)
		sentIn[sec]++
		if o.status < 200 || o.status >= 300 || o.lat > budget {
			missedIn[sec]++
		}
		lags = append(lags, o.lag)
		actual := intendedOffset(rate, i) + o.lag
		firstSend, lastSend = min(firstSend, actual), max(lastSend, actual)
		late := o.lat > budget
		if late {
			r.LateAny++
		}
		if o.lat > budget+time.Millisecond {
			r.LateOver1ms++
			r.LateOver1msByKind[outcomeKind(o)]++
			lateIn[sec]++
			lateOuts = append(lateOuts, o)
		}
		if o.lat-o.lag > budget+time.Millisecond {
			r.LateOver1msFromWrite++
		}
		switch {
		case o.status == statusClientTimeout:
			r.ClientTimeouts++
			r.Codes["client timeout"]++
			other = append(other, o.lat)
			continue
		case o.status == statusTransport:
			r.TransportErrors++
			r.Codes["transport error"]++
			if r.TransportErrorSample == "" {
				r.TransportErrorSample = o.code
			}
			other = append(other, o.lat)
			continue
		}
		r.Answers++
		r.Codes[outcomeKind(o)]++
		switch {
		case o.status >= 200 && o.status < 300:
			ok = append(ok, o.lat)
			if late {
				r.Late2xx++
			} else {
				r.OnTime2xx++
			}
		case o.status == http.StatusServiceUnavailable:
			refused = append(refused, o.lat)
		case o.status == http.StatusGatewayTimeout:
			timeout = append(timeout, o.lat)
		default:
			other = append(other, o.lat)
		}
	}
	if r.Sent > 0 {
		r.OnTimeFraction = float64(r.OnTime2xx) / float64(r.Sent)
	}
	if d > 0 {
		r.GoodputPerS = float64(r.OnTime2xx) / d.Seconds()
	}
	if r.Sent >= 2 && lastSend > firstSend {
		r.AchievedSendPerS = float64(r.Sent-1) / (lastSend - firstSend).Seconds()
	}
	r.OK, r.Refused, r.Timeout, r.Other = summarizeLat(ok), summarizeLat(refused), summarizeLat(timeout), summarizeLat(other)
	r.SendLag = summarizeLat(lags)
	r.secondStats(sentIn, missedIn)
	if r.LateOver1ms > 0 {
		r.LateOver1msPerSecond = lateIn
	}
	r.Parts, r.LateParts = summarizeParts(outs), summarizeParts(lateOuts)
	return r
}

// outcomeKind names an outcome as the Codes map does: the status and the
// error code, or "client timeout" / "transport error".
func outcomeKind(o outcome) string {
	switch o.status {
	case statusClientTimeout:
		return "client timeout"
	case statusTransport:
		return "transport error"
	}
	key := strconv.Itoa(o.status)
	if o.code != "" {
		key += " " + o.code
	}
	return key
}

// readyFor is how many connections (and workers) a run at rate starts
// with: its requests in flight if each took the whole budget, and half as
// many again, at least 4.
func readyFor(rate float64, budget time.Duration) int {
	return max(4, int(math.Ceil(1.5*rate*budget.Seconds())))
}

// loader sends the open-loop load to one gateway.
type loader struct {
	raw     *rawClient
	path    string
	budget  time.Duration
	queries float64
	users   int
	rng     *rand.Rand
	dials   atomic.Int64
	tgt     *target
	stderr  io.Writer
}

// defaultMaxConns caps the generator's connections to the node. A good
// client keeps a bounded pool: without one, a moment's slowness of the node
// makes an open-loop client open a connection per request (every other one
// is busy), and the dials, and the connections closed by client timeouts,
// cost both sides more than the requests themselves; on one CPU the
// generator then falls behind for good (a collapse seen at 4000/s with
// 20,000 dials in 6 s). With the cap, a request that finds every
// connection busy waits in the client for one, and that wait counts in its
// latency (measured from the intended send time).
const defaultMaxConns = 512

func newLoader(tgt *target, budget time.Duration, queries float64, users, maxConns int, seed uint64, stderr io.Writer) *loader {
	l := &loader{path: "/v1/services/cart/", budget: budget, queries: queries,
		users: users, rng: rand.New(rand.NewPCG(seed, 7)), tgt: tgt, stderr: stderr}
	// As a good client would: keep-alive, a bounded pool of connections
	// (defaultMaxConns), and a timeout past the budget so late answers are
	// measured. rawClient says why not net/http's client.
	l.raw = newRawClient(tgt.addr, maxConns, budget+clientGrace, &l.dials)
	return l
}

func (l *loader) close() { l.raw.closeIdle() }

// run sends rate requests/s for d and waits for every outcome. label
// names the run in the progress line on stderr.
func (l *loader) run(ctx context.Context, rate float64, d time.Duration, label string) (openRun, error) {
	n := scheduleCount(rate, d)
	outs := make([]outcome, n)
	for i := range outs {
		outs[i].status = statusNotSent
	}
	// The connections and workers the rate needs, ready before the
	// schedule starts (rawClient.prefill): what a run at rate measures is
	// the node's answer to it, from its first request.
	ready := readyFor(rate, l.budget)
	if err := l.raw.prefill(ctx, ready); err != nil {
		return openRun{}, fmt.Errorf("opening %d connections before the run: %w", ready, err)
	}
	cpu0, cpuOK := l.tgt.cpu()
	var gen0 float64
	if l.tgt.genCPU != nil {
		gen0 = l.tgt.genCPU()
	}
	dials0 := l.dials.Load()
	node0, nodeOK := readNodeCounts(l.tgt.addr)
	sys0, sysOK := systemBusy()
	self0 := rusageSelf()
	type job struct {
		o          *outcome
		at         time.Time
		query      bool
		user, item int
	}
	var (
		wg             sync.WaitGroup
		launched, done atomic.Int64
		jobs           = make(chan job)
	)
	work := func(j job) { // j: its first job; the zero job (jobs closed) ends it
		defer wg.Done()
		for ; j.o != nil; j = <-jobs {
			l.send(ctx, j.o, j.at, j.query, j.user, j.item)
			done.Add(1)
		}
	}
	for range ready {
		wg.Add(1)
		go func() { work(<-jobs) }()
	}
	start := time.Now().Add(2 * time.Millisecond)
	stopProgress := l.progress(label, d, n, &launched, &done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for i := range outs {
		at := start.Add(intendedOffset(rate, i))
		if wait := time.Until(at); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			break
		}
		j := job{o: &outs[i], at: at, query: l.rng.Float64() < l.queries, user: l.rng.IntN(l.users), item: l.rng.IntN(20)}
		launched.Add(1)
		// A free worker takes it; when none is free, a new one does, so
		// the schedule never waits for an answer. Workers keep their grown
		// stacks, which a goroutine per request would grow every time.
		select {
		case jobs <- j:
		default:
			wg.Add(1)
			go work(j)
		}
	}
	close(jobs) // a closed channel yields the zero job: workers return
	wg.Wait()
	wall := time.Since(start)
	stopProgress()
	if ctx.Err() != nil {
		return openRun{}, ctx.Err()
	}
	r := account(outs, rate, d, l.budget)
	r.StartedAt, r.WallS = start, wall.Seconds()
	r.Dials = l.dials.Load() - dials0
	if node1, ok := readNodeCounts(l.tgt.addr); ok && nodeOK {
		r.NodeRefusals, r.NodeRefusalP99Us = refusalDelta(node0.refusalBuckets, node1.refusalBuckets)
		if node0.writtenLate != nil && node1.writtenLate != nil {
			late := *node1.writtenLate - min(*node1.writtenLate, *node0.writtenLate)
			r.NodeWrittenLate = &late
		}
	}
	cpu1, ok := l.tgt.cpu()
	if ok && cpuOK && r.Sent > 0 {
		perReq, util := (cpu1-cpu0)/float64(r.Sent), (cpu1-cpu0)/wall.Seconds()
		r.NodeCPUSPerRequest, r.NodeCPUUtil = &perReq, &util
	}
	if sys1, ok2 := systemBusy(); ok2 && sysOK && ok && cpuOK {
		ours := rusageSelf() - self0
		if l.tgt.genCPU != nil { // the node is another process
			ours += cpu1 - cpu0
		}
		others := max(0, (sys1-sys0-ours)/wall.Seconds())
		r.OthersCPUUtil = &others
	}
	if l.tgt.genCPU != nil {
		util := (l.tgt.genCPU() - gen0) / wall.Seconds()
		r.GenCPUUtil = &util
	}
	return r, nil
}

// send sends one request due at at and records its outcome in o.
func (l *loader) send(ctx context.Context, o *outcome, at time.Time, query bool, user, item int) {
	o.query = query
	method, body := "add", fmt.Sprintf(`{"user":"user-%d","item":"item-%d","qty":1}`, user, item)
	if query {
		method, body = "get", fmt.Sprintf(`{"user":"user-%d"}`, user)
	}
	headers := []string{"Tempest-Timeout-Ms", strconv.Itoa(int(l.budget / time.Millisecond)), timingHeader, "1"}
	o.lag = time.Since(at)
	a, err := l.raw.postTimed(ctx, l.path+method, headers, []byte(body))
	done := time.Now()
	o.lat = done.Sub(at)
	status, raw := a.status, a.body
	if arrived, answered, headers, ok := parseTiming(a.timing); ok && err == nil {
		o.timed = true
		o.pre, o.node, o.post, o.uncounted = headers.Sub(a.written), answered.Sub(arrived), done.Sub(answered), arrived.Sub(a.written)
	}
	var ne net.Error
	switch {
	case ctx.Err() != nil:
		o.status = statusInterrupted
	case err != nil && errors.As(err, &ne) && ne.Timeout():
		o.status = statusClientTimeout
	case err != nil:
		o.status = statusTransport
		o.code = err.Error()
	default:
		o.status = status
		if o.status < 200 || o.status >= 300 {
			var e struct {
				Error struct{ Code string } `json:"error"`
			}
			_ = json.Unmarshal(raw, &e)
			o.code = e.Error.Code
		}
	}
}

// parseTiming reads a Tempest-Timing answer header:
// "ARRIVED,ANSWERED,HEADERS" in Unix nanoseconds (HEADERS may be absent:
// then it is ARRIVED).
func parseTiming(v string) (arrived, answered, headers time.Time, ok bool) {
	f := strings.Split(v, ",")
	if len(f) < 2 || len(f) > 3 {
		return
	}
	var ns [3]int64
	for i := range f {
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return
		}
		ns[i] = n
	}
	if len(f) == 2 {
		ns[2] = ns[0]
	}
	return time.Unix(0, ns[0]), time.Unix(0, ns[1]), time.Unix(0, ns[2]), true
}

// progress prints a progress line on stderr every second until stopped.
func (l *loader) progress(label string, d time.Duration, n int, launched, done *atomic.Int64) func() {
	return progressLine(l.stderr, label, func() string {
		return fmt.Sprintf("a run of %.0fs, %d of %d launched, %d outcomes", d.Seconds(), launched.Load(), n, done.Load())
	})
}

// openResult is what an open-loop `tempest-bench http` prints as JSON.
type openResult struct {
	Mode            string          `json:"mode"` // "open_loop"
	Target          string          `json:"target"`
	CPUSource       string          `json:"node_cpu_source"`
	MaxConns        int             `json:"max_conns"` // the generator's connection pool
	QueriesFraction float64         `json:"queries_fraction"`
	Users           int             `json:"users"`
	BudgetMs        int             `json:"budget_ms"`
	ClientTimeoutMs int64           `json:"client_timeout_ms"`
	Capacity        *capacityResult `json:"capacity,omitempty"`
	Runs            []openRun       `json:"runs"`
}

// capacityResult is the capacity used for --overload: found or given.
type capacityResult struct {
	PerS      float64        `json:"per_s"`
	Found     bool           `json:"found"` // by --find-capacity (else given by --capacity)
	Criterion string         `json:"criterion,omitempty"`
	Capped    bool           `json:"capped,omitempty"` // every rate tried passed: at least this
	Steps     []capacityStep `json:"steps,omitempty"`
}

type capacityStep struct {
	RatePerS       float64 `json:"rate_per_s"`
	OnTimeFraction float64 `json:"on_time_fraction"`
	GoodputPerS    float64 `json:"goodput_per_s"`
	SendLagP99Ms   float64 `json:"send_lag_p99_ms"`
	Pass           bool    `json:"pass"`
	Retry          bool    `json:"retry,omitempty"` // the second try of a rate that failed (--confirm)
}

// capacityCriterion: the fraction of sent requests that must be answered
// 2xx within budget for a rate to be within capacity.
const capacityCriterion = 0.999

// parseMultiples parses "1,2,3".
func parseMultiples(s string) ([]float64, error) {
	if s == "" {
		return nil, nil
	}
	var out []float64
	for _, p := range strings.Split(s, ",") {
		m, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || m <= 0 || math.IsInf(m, 0) || math.IsNaN(m) {
			return nil, fmt.Errorf("--overload: %q is not a positive multiple", p)
		}
		out = append(out, m)
	}
	return out, nil
}

// runOpenLoop is `tempest-bench http` with --rate, --find-capacity,
// --capacity or --overload.
func runOpenLoop(f httpFlags, stdout, stderr io.Writer) (err error) {
	defer func() {
		if errors.Is(err, context.Canceled) {
			err = errors.New("interrupted (node stopped, temp dirs removed)")
		}
	}()
	multiples, err := parseMultiples(f.overload)
	if err != nil {
		return err
	}
	switch {
	case f.queries < 0 || f.queries > 1 || f.users < 1 || f.duration <= 0 || f.budgetMs < 1 || f.maxConns < 1:
		return errors.New("http: need --queries in [0,1], --users >= 1, --duration > 0, --timeout-ms >= 1, --max-conns >= 1")
	case f.rate < 0 || f.capacity < 0:
		return errors.New("http: --rate and --capacity must be positive")
	case f.rate > 0 && (f.findCapacity || f.capacity > 0 || len(multiples) > 0):
		return errors.New("http: --rate is one run at one rate; --find-capacity/--capacity/--overload pick the rates themselves")
	case f.findCapacity && f.capacity > 0:
		return errors.New("http: give --find-capacity or --capacity, not both")
	case len(multiples) > 0 && !f.findCapacity && f.capacity == 0:
		return errors.New("http: --overload needs --find-capacity or --capacity")
	case f.findCapacity && (f.stepDuration <= 0 || f.startRate <= 0 || f.maxRate < f.startRate):
		return errors.New("http: --find-capacity needs --step-duration > 0 and 0 < --start-rate <= --max-rate")
	}
	if f.capacity > 0 && len(multiples) == 0 {
		multiples = []float64{1}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tgt, err := startTarget(ctx, f.target, stderr)
	if err != nil {
		return err
	}
	defer tgt.close()
	budget := time.Duration(f.budgetMs) * time.Millisecond
	l := newLoader(tgt, budget, f.queries, f.users, f.maxConns, f.seed, stderr)
	defer l.close()
	res := openResult{Mode: "open_loop", Target: tgt.desc, CPUSource: tgt.cpuSource, QueriesFraction: f.queries, MaxConns: f.maxConns,
		Users: f.users, BudgetMs: f.budgetMs, ClientTimeoutMs: (budget + clientGrace).Milliseconds(), Runs: []openRun{}}
	fmt.Fprintf(stderr, "http bench: open loop against %s at %s\n", tgt.desc, tgt.addr)

	// Warm-up: connections, the node's estimates, the page cache. Not reported.
	warm := f.rate
	if warm == 0 {
		warm = f.startRate
	}
	if _, err := l.run(ctx, min(warm, 200), time.Second, "warm-up at "+fmt.Sprint(min(warm, 200))+"/s"); err != nil {
		return err
	}
	pause := func() error {
		select {
		case <-time.After(settle):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	// quietRun runs again (up to maxNoisyRepeats times) a run during which
	// other processes used more than --max-others-cpu: on a shared machine
	// they take the CPU of the node or of the generator.
	quietRun := func(rate float64, d time.Duration, label string) (openRun, error) {
		for attempt := 0; ; attempt++ {
			if attempt > 0 {
				if err := pause(); err != nil {
					return openRun{}, err
				}
			}
			r, err := l.run(ctx, rate, d, label)
			if err != nil {
				return r, err
			}
			r.NoisyRepeats = attempt
			if !tooNoisy(r, f.maxOthersCPU) || attempt == maxNoisyRepeats {
				return r, nil
			}
			fmt.Fprintf(stderr, "  other processes used %.0f%% of a CPU during that run (> --max-others-cpu %.0f%%): not counted, again\n",
				100**r.OthersCPUUtil, 100*f.maxOthersCPU)
		}
	}
	switch {
	case f.rate > 0:
		if err := pause(); err != nil {
			return err
		}
		r, err := quietRun(f.rate, f.duration, fmt.Sprintf("rate %.0f/s", f.rate))
		if err != nil {
			return err
		}
		res.Runs = append(res.Runs, r)
	default:
		capRes := &capacityResult{PerS: f.capacity}
		if f.findCapacity {
			capRes = &capacityResult{Found: true, Criterion: fmt.Sprintf(">= %.1f%% of sent requests answered 2xx within budget, steps of %s",
				capacityCriterion*100, f.stepDuration)}
			if f.confirm {
				capRes.Criterion += ", a failure confirmed by a second step"
			}
			step := 0
			once := func(rate float64, again bool) (bool, error) {
				step++
				if err := pause(); err != nil {
					return false, err
				}
				r, err := quietRun(rate, f.stepDuration, fmt.Sprintf("capacity step %d: %.0f/s", step, rate))
				if err != nil {
					return false, err
				}
				pass := r.OnTimeFraction >= capacityCriterion
				capRes.Steps = append(capRes.Steps, capacityStep{RatePerS: rate, OnTimeFraction: r.OnTimeFraction,
					GoodputPerS: r.GoodputPerS, SendLagP99Ms: r.SendLag.P99Ms, Pass: pass, Retry: again})
				verdict := "within capacity"
				switch {
				case !pass && !again && f.confirm:
					verdict = "over capacity? trying it again"
				case !pass:
					verdict = "over capacity"
				}
				fmt.Fprintf(stderr, "  %.0f/s: %.2f%% 2xx on time, goodput %.0f/s, p99 2xx %.1f ms, send lag p99 %.2f ms, others cpu %s -> %s\n",
					rate, 100*r.OnTimeFraction, r.GoodputPerS, r.OK.P99Ms, r.SendLag.P99Ms, fptrScaled(r.OthersCPUUtil, 100, "%.0f%%"), verdict)
				return pass, nil
			}
			// A rate fails only if it fails twice in a row (--confirm): one
			// stall of a noisy machine does not decide the capacity.
			probe := func(rate float64) (bool, error) {
				pass, err := once(rate, false)
				if err != nil || pass || !f.confirm {
					return pass, err
				}
				return once(rate, true)
			}
			c, capped, err := searchCapacity(probe, f.startRate, f.maxRate, 0.05, 14)
			if err != nil {
				return err
			}
			capRes.PerS, capRes.Capped = c, capped
			fmt.Fprintf(stderr, "http bench: capacity %.0f/s\n", c)
		}
		res.Capacity = capRes
		for _, m := range multiples {
			if err := pause(); err != nil {
				return err
			}
			rate := math.Round(m * capRes.PerS)
			r, err := quietRun(rate, f.duration, fmt.Sprintf("%gx capacity: %.0f/s", m, rate))
			if err != nil {
				return err
			}
			r.Multiple = m
			ratio := r.GoodputPerS / capRes.PerS
			r.GoodputRatio = &ratio
			res.Runs = append(res.Runs, r)
		}
	}
	setRatioTo1x(res.Runs)
	if f.asJSON {
		return writeJSON(stdout, res)
	}
	printOpenTable(stdout, res)
	return nil
}

// maxNoisyRepeats is how many times a run is repeated because other
// processes used the machine (then its figures are kept, with their
// others_cpu_util).
const maxNoisyRepeats = 3

// tooNoisy says whether other processes used more than limit CPUs during r
// (limit <= 0: never).
func tooNoisy(r openRun, limit float64) bool {
	return limit > 0 && r.OthersCPUUtil != nil && *r.OthersCPUUtil > limit
}

// setRatioTo1x fills GoodputRatioTo1x of every run when one run is at 1x.
func setRatioTo1x(runs []openRun) {
	i := slices.IndexFunc(runs, func(r openRun) bool { return r.Multiple == 1 })
	if i < 0 || runs[i].GoodputPerS == 0 {
		return
	}
	base := runs[i].GoodputPerS
	for j := range runs {
		v := runs[j].GoodputPerS / base
		runs[j].GoodputRatioTo1x = &v
	}
}

// searchCapacity finds the highest rate that passes probe: it doubles the
// rate from start until a rate fails (or halves it while start fails),
// then bisects between the highest pass and the lowest failure until they
// are within tol of each other. At most maxSteps probes; rates are whole
// numbers. capped: every rate tried up to max passed.
func searchCapacity(probe func(rate float64) (bool, error), start, maxRate, tol float64, maxSteps int) (capacity float64, capped bool, err error) {
	var lo, hi float64 // highest pass, lowest failure (0: none yet)
	steps := 0
	try := func(r float64) (bool, error) { steps++; return probe(r) }
	for r := math.Round(start); steps < maxSteps; {
		pass, err := try(r)
		if err != nil {
			return 0, false, err
		}
		if !pass {
			hi = r
			break
		}
		lo = r
		if r >= maxRate {
			return lo, true, nil
		}
		r = min(math.Round(r*2), maxRate)
	}
	if hi == 0 { // out of steps while everything passed
		return lo, true, nil
	}
	for lo == 0 && steps < maxSteps { // start failed: halve
		r := math.Round(hi / 2)
		if r < 1 {
			break
		}
		pass, err := try(r)
		if err != nil {
			return 0, false, err
		}
		if pass {
			lo = r
		} else {
			hi = r
		}
	}
	if lo == 0 {
		return 0, false, fmt.Errorf("capacity: even %.0f/s is not answered %.1f%% 2xx within budget", hi, capacityCriterion*100)
	}
	for steps < maxSteps && hi/lo > 1+tol {
		mid := math.Round((lo + hi) / 2)
		if mid <= lo || mid >= hi {
			break
		}
		pass, err := try(mid)
		if err != nil {
			return 0, false, err
		}
		if pass {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo, false, nil
}

// printOpenTable prints the open-loop result as text tables.
func printOpenTable(w io.Writer, res openResult) {
	fmt.Fprintf(w, "target    %s\n", res.Target)
	fmt.Fprintf(w, "load      open loop; %.0f%% cart/get, %.0f%% cart/add over %d carts; budget %d ms (Tempest-Timeout-Ms), client timeout %d ms\n",
		100*res.QueriesFraction, 100*(1-res.QueriesFraction), res.Users, res.BudgetMs, res.ClientTimeoutMs)
	fmt.Fprintf(w, "node cpu  %s (cpu columns: %% of one CPU; others: the rest of the machine, from /proc/stat)\n", res.CPUSource)
	if c := res.Capacity; c != nil {
		switch {
		case c.Found && c.Capped:
			fmt.Fprintf(w, "capacity  at least %.0f/s (every rate tried passed; raise --max-rate)\n", c.PerS)
		case c.Found:
			fmt.Fprintf(w, "capacity  %.0f/s: highest rate found with %s (%d steps:", c.PerS, c.Criterion, len(c.Steps))
			for _, s := range c.Steps {
				mark := "ok"
				if !s.Pass {
					mark = fmt.Sprintf("%.2f%%", 100*s.OnTimeFraction)
				}
				if s.Retry {
					mark = "again " + mark
				}
				fmt.Fprintf(w, " %.0f %s,", s.RatePerS, mark)
			}
			fmt.Fprintln(w, ")")
		default:
			fmt.Fprintf(w, "capacity  %.0f/s (given)\n", c.PerS)
		}
	}
	fmt.Fprintln(w, "goodput: 2xx within budget per second; /cap, /1x: its ratio to the capacity and to the 1x run's goodput;")
	fmt.Fprintln(w, "late: answers (any: every outcome, client timeouts included) after their budget, from the intended send time")
	fmt.Fprintln(w)
	tw := newTableWriter(w)
	tw.row("x cap", "offered/s", "sent/s", "goodput/s", "/cap", "/1x", "sent", "answers", "2xx late", "any late", ">1ms late", ">1ms from write",
		"node cpu/req", "node cpu", "gen cpu", "others cpu", "send lag p50/p99/max ms", "dials", "noisy reruns")
	for _, r := range res.Runs {
		tw.row(fmtMultiple(r.Multiple), f0(r.OfferedPerS), f0(r.AchievedSendPerS), f0(r.GoodputPerS), fptr(r.GoodputRatio, "%.2f"), fptr(r.GoodputRatioTo1x, "%.2f"),
			fmt.Sprint(r.Sent), fmt.Sprint(r.Answers), fmt.Sprint(r.Late2xx), fmt.Sprint(r.LateAny), fmt.Sprint(r.LateOver1ms), fmt.Sprint(r.LateOver1msFromWrite),
			fptrScaled(r.NodeCPUSPerRequest, 1e6, "%.0f µs"), fptrScaled(r.NodeCPUUtil, 100, "%.0f%%"), fptrScaled(r.GenCPUUtil, 100, "%.0f%%"), fptrScaled(r.OthersCPUUtil, 100, "%.0f%%"),
			fmt.Sprintf("%.2f/%.2f/%.1f", r.SendLag.P50Ms, r.SendLag.P99Ms, r.SendLag.MaxMs), fmt.Sprint(r.Dials), fmt.Sprint(r.NoisyRepeats))
	}
	tw.flush()
	fmt.Fprintln(w)
	fmt.Fprintln(w, "latency from the intended send time, ms: count p50/p99/p99.9/max")
	tw = newTableWriter(w)
	tw.row("x cap", "offered/s", "2xx", "503", "504", "other (client timeouts, errors)", "node's own time to a 503: count p99 µs", "node: written late")
	for _, r := range res.Runs {
		own, late := "n/a", "n/a"
		if r.NodeRefusals != nil {
			own = fmt.Sprintf("%d  %s", *r.NodeRefusals, fptrInt(r.NodeRefusalP99Us))
		}
		if r.NodeWrittenLate != nil {
			late = fmt.Sprint(*r.NodeWrittenLate)
		}
		tw.row(fmtMultiple(r.Multiple), f0(r.OfferedPerS), fmtLat(r.OK), fmtLat(r.Refused), fmtLat(r.Timeout), fmtLat(r.Other), own, late)
	}
	tw.flush()
	fmt.Fprintln(w)
	fmt.Fprintln(w, "where the time went (node's Tempest-Timing; ms, count p50/p99/p99.9/max): before the node read the headers (from the write),")
	fmt.Fprintln(w, "in the node (from the budget's start to the answer's write), after (to the answer read); uncounted: write to the budget's start")
	tw = newTableWriter(w)
	tw.row("x cap", "offered/s", "of", "before node", "in node", "after node", "uncounted")
	for _, r := range res.Runs {
		for _, p := range []struct {
			of    string
			parts *latencyParts
		}{{"all answers", r.Parts}, {">1ms late", r.LateParts}} {
			if p.parts != nil {
				tw.row(fmtMultiple(r.Multiple), f0(r.OfferedPerS), p.of, fmtLat(p.parts.Before), fmtLat(p.parts.InNode), fmtLat(p.parts.After), fmtLat(p.parts.Uncounted))
			}
		}
	}
	tw.flush()
	fmt.Fprintln(w)
	for _, r := range res.Runs {
		keys := make([]string, 0, len(r.Codes))
		for k := range r.Codes {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = fmt.Sprintf("%s: %d", k, r.Codes[k])
		}
		fmt.Fprintf(w, "codes at %s/s: %s\n", f0(r.OfferedPerS), strings.Join(parts, ", "))
		if r.TransportErrorSample != "" {
			fmt.Fprintf(w, "  a transport error: %s\n", r.TransportErrorSample)
		}
	}
}

func fmtMultiple(m float64) string {
	if m == 0 {
		return "-"
	}
	return fmt.Sprintf("%gx", m)
}

func f0(v float64) string { return fmt.Sprintf("%.0f", v) }

func fptr(p *float64, format string) string { return fptrScaled(p, 1, format) }

func fptrScaled(p *float64, scale float64, format string) string {
	if p == nil {
		return "n/a"
	}
	return fmt.Sprintf(format, *p*scale)
}

func fmtLat(s latStats) string {
	if s.Count == 0 {
		return "0"
	}
	return fmt.Sprintf("%d  %.1f/%.1f/%.1f/%.1f", s.Count, s.P50Ms, s.P99Ms, s.P999Ms, s.MaxMs)
}

// tableWriter aligns columns (text/tabwriter pads by bytes, not runes).
type tableWriter struct {
	w    io.Writer
	rows [][]string
}

func newTableWriter(w io.Writer) *tableWriter { return &tableWriter{w: w} }

func (t *tableWriter) row(cells ...string) { t.rows = append(t.rows, cells) }

func (t *tableWriter) flush() {
	var widths []int
	for _, r := range t.rows {
		for i, c := range r {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	for _, r := range t.rows {
		var b strings.Builder
		for i, c := range r {
			if i > 0 {
				b.WriteString("  ")
			}
			b.WriteString(c)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-len([]rune(c))))
			}
		}
		fmt.Fprintln(t.w, b.String())
	}
	t.rows = nil
}

// nodeCounts is what a run reads from the node's /v1/status before and
// after it.
type nodeCounts struct {
	refusalBuckets []uint64 // refusal_time's histogram
	writtenLate    *uint64  // deadlines.written_late; nil: not reported
}

// readNodeCounts reads nodeCounts from /v1/status.
func readNodeCounts(addr string) (nodeCounts, bool) {
	var st struct {
		RefusalTime *struct {
			Buckets []uint64 `json:"buckets_pow2_us"`
		} `json:"refusal_time"`
		Deadlines struct {
			WrittenLate *uint64 `json:"written_late"`
		} `json:"deadlines"`
	}
	if err := getJSON(addr, "/v1/status", &st); err != nil || st.RefusalTime == nil {
		return nodeCounts{}, false
	}
	return nodeCounts{refusalBuckets: st.RefusalTime.Buckets, writtenLate: st.Deadlines.WrittenLate}, true
}

// refusalDelta returns the count and p99 (a bucket's upper bound, in µs;
// bucket i holds [2^(i-1), 2^i) µs) of what after holds beyond before.
func refusalDelta(before, after []uint64) (*uint64, *int64) {
	d := make([]uint64, len(after))
	var n uint64
	for i, a := range after {
		if i < len(before) {
			a -= min(a, before[i])
		}
		d[i] = a
		n += a
	}
	if n == 0 {
		return &n, nil
	}
	rank, seen := uint64(0.99*float64(n)), uint64(0)
	for i, c := range d {
		if seen += c; seen > rank {
			p := int64(1) << i
			return &n, &p
		}
	}
	return &n, nil
}

func fptrInt(p *int64) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf("<= %d", *p)
}
