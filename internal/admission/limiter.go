// Package admission is the node's front door: it decides, before a
// request's body is read or any actor sees it, whether the node takes the
// request or refuses it at once. It is a pure core (no clock, no I/O, no
// goroutines): the caller passes the time in and holds a lock around it.
//
// # Why a concurrency limit driven by queueing delay
//
// A node past its capacity that accepts everything collapses: every
// request's goroutine, JSON decoding and actor messages compete for the same
// CPUs, so every request is slow, most miss their deadlines, and the work
// done for them is wasted (goodput falls to a fraction of capacity). The
// scheduler's own admission cannot prevent this: it sees a request only once
// the HTTP stack and the actor mailbox have spent time and CPU on it, and
// that time counts nowhere.
//
// So the node bounds how many requests it holds at once (in flight: from
// admission at the gateway to the answer written), and refuses the rest at
// the door, where a refusal costs microseconds. The bound is not a constant
// to tune per machine and workload: it follows the measured queueing delay,
// the time from a request's arrival (headers read) to the moment its handler
// starts. That delay is the signal of overload that does not depend on the
// request mix (Breakwater, OSDI 2020; Facebook's CoDel on request queues).
// What delay is too much depends on the request: a request may wait
// TargetShare of its own budget (at least MinTarget), so a node serving
// 30 ms requests keeps its queues short and one serving 1 s requests may
// buffer more. While few requests wait longer than that and the requests in
// flight come near the limit (GrowAt of it: the limit keeps headroom for
// bursts), the limit grows additively (it doubles, as in TCP's slow start,
// when it was reached while the queues stayed nearly empty: QuietShare);
// when more than OverShare of an
// interval's requests waited longer (or never started in time), the limit
// shrinks multiplicatively.
// This is AIMD, as in TCP and Envoy's and Netflix's adaptive concurrency
// limits; its equilibrium keeps the admitted load near what the node serves
// within those targets, so admitted requests still meet their deadlines
// while the rest are refused cheaply.
//
// Alternatives rejected:
//   - A fixed concurrency or rate limit: right for one machine, one mix and
//     one fsync policy only; wrong after any change.
//   - Server-driven client credits (Breakwater proper): needs clients that
//     speak the protocol; HTTP clients do not. Retry-After carries the
//     backoff hint instead.
//   - Gradient of latency (Netflix gradient2): needs a stable "no load"
//     latency to compare with, which a mix of queries and fsync'd updates
//     does not have; queueing delay excludes service time, so it needs none.
//
// The runtime's scheduling latency is a second overload signal, judged
// against the budgets too (SchedTarget, SchedShare).
//
// # Bursts
//
// AIMD sizes the limit for the recent past. A pause (a compaction or a GC
// holding the CPU for tens of milliseconds) piles up more requests than that
// past needed, and refusing them is wrong when they would all still start
// in time. So past the limit a request is admitted if the requests in
// flight, at the node's measured completion rate, would start within its
// own queueing target (Little's law: wait = in flight / throughput; see
// AcquireWithin). Long budgets absorb bursts; short ones get what the limit
// gives.
//
// # Priorities
//
// Requests carry a class: 0 is the most important. Class c is admitted
// only while in flight < limit × Shares[c] (Shares[0] = 1), so under
// pressure the least important requests are refused first and the most
// important keep a reserve.
//
// # Invariants
//
//   - MinLimit <= limit <= MaxLimit at all times.
//   - InFlight counts Acquire successes not yet Released; it never goes
//     below zero (a Release without an Acquire is ignored).
//   - The limit changes only at interval boundaries, at most once per
//     Interval, so one burst of slow samples moves it one step.
package admission

import (
	"errors"
	"fmt"
	"time"
)

// ErrInvalidConfig is returned by Config.Validate and New.
var ErrInvalidConfig = errors.New("admission: invalid config")

// Config configures a Limiter.
type Config struct {
	// TargetShare is the share of its budget an admitted request may spend
	// queued (arrival to handler start) before it counts as delayed too
	// long, in (0, 1). Default 0.2: 6 ms of a 30 ms budget, leaving the rest
	// for the handler, the fsync and the way back.
	TargetShare float64
	// MinTarget is the least delay that counts as too long, whatever the
	// budget: below it, delays are scheduling noise. Default 2 ms.
	MinTarget time.Duration
	// SchedTarget: an interval in which the runtime's scheduling latency
	// (p99 of the time goroutines wait to run, see ObserveScheduling)
	// exceeded max(SchedTarget, SchedShare × the shortest budget of the
	// interval's requests) counts as overloaded, whatever the requests' own
	// delays say: under CPU saturation the requests the HTTP server has not
	// yet handed over wait too, unmeasured. 0 ignores the signal. Default
	// 5 ms.
	SchedTarget time.Duration
	// SchedShare scales the scheduling signal's threshold with the
	// requests' budgets, in [0, 1): a node serving 200 ms requests need not
	// refuse because goroutines waited 6 ms to run (they all still finish
	// in time), while one serving 30 ms requests must. Default 0.15 (30 ms
	// budgets: 4.5 ms, so SchedTarget; 200 ms budgets: 30 ms). 0: the
	// threshold is SchedTarget alone.
	SchedShare float64
	// Interval is how often the limit is adjusted from the samples of the
	// interval just ended. Default 20 ms.
	Interval time.Duration
	// OverShare is the share of an interval's samples that may exceed their
	// target before the interval counts as overloaded (so one GC pause
	// does not halve the limit). In [0, 1). Default 0.05.
	OverShare float64
	// Decrease multiplies the limit after an overloaded interval, in (0, 1):
	// the mildest cut. When the interval's delays overshoot their targets
	// further (mean of delay/target above 1/Decrease), the limit is cut by
	// the inverse of that mean instead, down to half.
	// Default 0.8.
	Decrease float64
	// Increase is added to the limit after an interval that was not
	// overloaded and in which there was demand near the limit (see
	// GrowAt), as a fraction of the limit, at least 1. Default 0.05.
	Increase float64
	// GrowAt is the share of the limit that, reached in flight in an
	// interval that was not overloaded and in which the CPU had room (the
	// scheduling latency stayed under half its threshold), lets the limit
	// grow, in (0, 1]. Reaching the limit itself always does.
	// Below 1 the limit keeps headroom above what healthy intervals hold:
	// a burst (an fsync or a GC pause that lets requests pile up for a few
	// milliseconds) is admitted instead of refused while delays stay
	// within their targets. With 1 the limit grows only once requests were
	// refused at it, so every burst above the recent peak is refused
	// although nothing is overloaded (measured: 0.3% of requests refused,
	// in bursts, at 75% of one CPU with 200 ms budgets). On a saturated
	// CPU the headroom would only admit work that ends late, hence the
	// scheduling condition. Default 0.5 (Netflix's AIMD limit grows at the
	// same point).
	GrowAt float64
	// QuietShare: an interval in which in flight reached the limit while
	// the requests' queueing delays averaged at most QuietShare of their
	// targets and the CPU had room (scheduling latency under half its
	// threshold) doubles the limit instead of growing it by Increase: the
	// limit, not the node, held the requests back (a limit sized for a
	// quiet spell meeting a load the node serves with empty queues: the
	// start of a load, or a rise after a lull). Measured before it: the
	// first 0.3 s of a 2,000/s load after a small preload refused 15
	// requests (limit 16, climbing one step per interval) with queueing
	// delays near 0.1 ms of a 40 ms target. Like TCP's slow
	// start, one doubling too many shows in the next interval's delays,
	// which cut it. In [0, 1); 0 turns it off. Default 0.1.
	QuietShare float64
	// QuietAfter is how long after an overloaded interval the limit may
	// double again (QuietShare). A node near its capacity drains its queue
	// between cuts, so its intervals at the limit can look quiet: doubling
	// there overshoots, and the requests admitted past what it serves end
	// late (measured under a 2x flood, 15 s runs: 652 and 718 answers 504
	// without it, against 52 and 107 before the doubling and 71 and 131
	// with it). Default 1 s.
	QuietAfter time.Duration
	// InitialLimit, MinLimit, MaxLimit bound the requests in flight.
	// Defaults 16, 4, 10000. The initial limit is low on purpose: a node
	// that starts under a flood must not queue more than it can serve in
	// their targets; the limit grows by 5% per interval (about 2.4x per
	// second) while there is demand and delays stay low, and doubles per
	// interval while it is reached with queues nearly empty (QuietShare).
	InitialLimit, MinLimit, MaxLimit int
	// Shares[c] is the fraction of the limit that class c may use; Shares[0]
	// must be 1 and the shares must not increase. Classes beyond the last
	// use the last share. Default [1, 0.9, 0.75].
	Shares []float64
	// RateWindow is the time over which the node's completion rate is
	// averaged for the burst allowance (see AcquireWithin); 0 turns the
	// allowance off. Default 1 s: a pause of tens of milliseconds barely
	// moves it.
	RateWindow time.Duration
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{
		TargetShare:  0.2,
		MinTarget:    2 * time.Millisecond,
		SchedTarget:  5 * time.Millisecond,
		SchedShare:   0.15,
		Interval:     20 * time.Millisecond,
		OverShare:    0.05,
		Decrease:     0.8,
		Increase:     0.05,
		GrowAt:       0.5,
		QuietShare:   0.1,
		QuietAfter:   time.Second,
		InitialLimit: 16,
		MinLimit:     4,
		MaxLimit:     10000,
		Shares:       []float64{1, 0.9, 0.75},
		RateWindow:   time.Second,
	}
}

// Validate reports every problem of c, wrapped in ErrInvalidConfig.
func (c Config) Validate() error {
	var errs []error
	if !(c.TargetShare > 0 && c.TargetShare < 1) {
		errs = append(errs, fmt.Errorf("TargetShare must be in (0,1), got %v", c.TargetShare))
	}
	if c.SchedTarget < 0 {
		errs = append(errs, fmt.Errorf("SchedTarget must be >= 0, got %v", c.SchedTarget))
	}
	if !(c.SchedShare >= 0 && c.SchedShare < 1) {
		errs = append(errs, fmt.Errorf("SchedShare must be in [0,1), got %v", c.SchedShare))
	}
	if !(c.GrowAt > 0 && c.GrowAt <= 1) {
		errs = append(errs, fmt.Errorf("GrowAt must be in (0,1], got %v", c.GrowAt))
	}
	if !(c.QuietShare >= 0 && c.QuietShare < 1) {
		errs = append(errs, fmt.Errorf("QuietShare must be in [0,1), got %v", c.QuietShare))
	}
	if c.QuietAfter < 0 {
		errs = append(errs, fmt.Errorf("QuietAfter must be >= 0, got %v", c.QuietAfter))
	}
	if c.RateWindow < 0 {
		errs = append(errs, fmt.Errorf("RateWindow must be >= 0, got %v", c.RateWindow))
	}
	if c.MinTarget <= 0 {
		errs = append(errs, fmt.Errorf("MinTarget must be > 0, got %v", c.MinTarget))
	}
	if c.Interval <= 0 {
		errs = append(errs, fmt.Errorf("Interval must be > 0, got %v", c.Interval))
	}
	if !(c.OverShare >= 0 && c.OverShare < 1) {
		errs = append(errs, fmt.Errorf("OverShare must be in [0,1), got %v", c.OverShare))
	}
	if !(c.Decrease > 0 && c.Decrease < 1) {
		errs = append(errs, fmt.Errorf("Decrease must be in (0,1), got %v", c.Decrease))
	}
	if !(c.Increase > 0) {
		errs = append(errs, fmt.Errorf("Increase must be > 0, got %v", c.Increase))
	}
	if c.MinLimit < 1 || c.MaxLimit < c.MinLimit || c.InitialLimit < c.MinLimit || c.InitialLimit > c.MaxLimit {
		errs = append(errs, fmt.Errorf("limits must satisfy 1 <= MinLimit (%d) <= InitialLimit (%d) <= MaxLimit (%d)", c.MinLimit, c.InitialLimit, c.MaxLimit))
	}
	if len(c.Shares) == 0 || c.Shares[0] != 1 {
		errs = append(errs, fmt.Errorf("Shares must start with 1, got %v", c.Shares))
	}
	for i := 1; i < len(c.Shares); i++ {
		if !(c.Shares[i] > 0 && c.Shares[i] <= c.Shares[i-1]) {
			errs = append(errs, fmt.Errorf("Shares must be in (0,1] and not increase, got %v", c.Shares))
			break
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
}

// Limiter is the admission state. It is not safe for concurrent use: the
// caller serialises calls (a mutex held for a few instructions).
type Limiter struct {
	cfg      Config
	limit    float64
	inFlight int

	// The interval being measured.
	start                time.Time
	samples, over        int
	reached              bool          // in flight reached the limit
	near                 bool          // in flight reached GrowAt of the limit
	sumDelay             time.Duration // of the samples, for RetryAfter
	sumRatio             float64       // of delay/target of the samples
	minBudget            time.Duration // shortest budget of the samples (0: none)
	lastMinBudget        time.Duration // of the last interval with samples
	sched                time.Duration // highest scheduling reading of the interval
	lastSched            time.Duration // the last ObserveScheduling reading
	schedOverIntervals   uint64
	lastDelay            time.Duration // mean delay of the last interval with samples
	overloadedIntervals  uint64
	completed            int     // Releases in the interval
	rate                 float64 // completions per second, averaged over RateWindow (0: not measured yet)
	burstAdmitted        uint64  // admitted above the limit by the burst allowance
	admitted, refused    uint64
	refusedByClass       []uint64
	increases, decreases uint64
	doublings            uint64    // increases that doubled the limit (QuietShare)
	lastOverloaded       time.Time // when the last overloaded interval closed (zero: never)
}

// New returns a Limiter, or the configuration's problems.
func New(cfg Config) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Limiter{cfg: cfg, limit: float64(cfg.InitialLimit), refusedByClass: make([]uint64, len(cfg.Shares))}, nil
}

// share returns the share of the limit class may use.
func (l *Limiter) share(class int) float64 {
	return l.cfg.Shares[min(max(class, 0), len(l.cfg.Shares)-1)]
}

// Acquire admits a request of class at now, or refuses it: AcquireWithin
// without a budget (no burst allowance).
func (l *Limiter) Acquire(now time.Time, class int) (ok bool, retryAfter time.Duration) {
	return l.AcquireWithin(now, class, 0)
}

// AcquireWithin admits a request of class whose budget is budget (0:
// unknown) at now, or refuses it. A refused request gets retryAfter: how
// long the client should wait before trying again (at least Interval; the
// recent queueing delay when larger).
//
// Below the limit a request is admitted. At or above it, the burst
// allowance still admits it if the requests in flight, at the rate the node
// has been completing requests (Little's law), plus the last scheduling
// latency reading, would be done within its queueing target: a pause of a
// few tens of milliseconds (a compaction's turn on the CPU, a GC) that let
// requests pile up past a limit sized for the quiet before is served in
// time instead of refused, while a request whose budget the queue already
// exceeds is still refused. The limit stays the bound for requests whose
// targets are short, and the allowance never admits more than a node
// completing at its recent rate can start in time.
func (l *Limiter) AcquireWithin(now time.Time, class int, budget time.Duration) (ok bool, retryAfter time.Duration) {
	l.advance(now)
	if allowed := l.limit * l.share(class); float64(l.inFlight) >= allowed {
		if class == 0 || float64(l.inFlight) >= l.limit {
			l.reached = true // demand for more than the limit
		}
		l.near = true
		if !l.burstFits(class, budget) {
			l.refused++
			l.refusedByClass[min(max(class, 0), len(l.refusedByClass)-1)]++
			return false, max(l.cfg.Interval, l.lastDelay)
		}
		l.burstAdmitted++
	}
	l.inFlight++
	l.admitted++
	if float64(l.inFlight) >= l.limit {
		l.reached = true
	}
	if float64(l.inFlight) >= l.limit*l.cfg.GrowAt {
		l.near = true
	}
	return true, 0
}

// burstFits is the burst allowance (see AcquireWithin).
func (l *Limiter) burstFits(class int, budget time.Duration) bool {
	if l.rate <= 0 || budget <= 0 || l.cfg.RateWindow == 0 || l.inFlight >= l.cfg.MaxLimit {
		return false
	}
	wait := time.Duration(float64(l.inFlight+1)/l.rate*float64(time.Second)) + l.lastSched
	return float64(wait) <= float64(l.target(budget))*l.share(class)
}

// target is the queueing delay a request with budget may have.
func (l *Limiter) target(budget time.Duration) time.Duration {
	return max(l.cfg.MinTarget, time.Duration(l.cfg.TargetShare*float64(budget)))
}

// Release ends an admitted request (answered, refused inside the node, or
// timed out).
func (l *Limiter) Release(now time.Time) {
	l.advance(now)
	if l.inFlight > 0 {
		l.inFlight--
		l.completed++
	}
}

// Observe records the queueing delay of an admitted request whose handler
// started: from its arrival to the start; budget is the request's whole
// budget. A request that never started before its deadline is observed with
// the delay it had when it gave up (its whole budget), which counts as too
// long.
func (l *Limiter) Observe(now time.Time, delay, budget time.Duration) {
	l.advance(now)
	target := l.target(budget)
	delay = max(delay, 0)
	if l.minBudget == 0 || budget < l.minBudget {
		l.minBudget = budget
	}
	l.samples++
	l.sumDelay += delay
	l.sumRatio += float64(delay) / float64(target)
	if delay > target {
		l.over++
	}
}

// ObserveScheduling records the runtime's scheduling latency (p99 of the
// time runnable goroutines waited) measured over the last interval. It is
// judged when the interval closes, against the budgets of its requests.
func (l *Limiter) ObserveScheduling(now time.Time, p99 time.Duration) {
	l.advance(now)
	l.lastSched = p99
	l.sched = max(l.sched, p99)
}

// schedThreshold is the scheduling latency above which the interval
// closing counts as overloaded: SchedTarget, or more for long budgets (the
// interval's shortest; the last known if it had no requests).
func (l *Limiter) schedThreshold() time.Duration {
	budget := l.minBudget
	if budget == 0 {
		budget = l.lastMinBudget
	}
	return max(l.cfg.SchedTarget, time.Duration(l.cfg.SchedShare*float64(budget)))
}

// quiet reports whether the interval closing had its requests' queues
// nearly empty (QuietShare) and the CPU room to spare: a limit reached in
// it was too low, whatever it was sized for.
func (l *Limiter) quiet(now time.Time, threshold time.Duration) bool {
	return l.cfg.QuietShare > 0 && l.samples > 0 && l.sumRatio/float64(l.samples) <= l.cfg.QuietShare && l.sched <= threshold/2 &&
		(l.lastOverloaded.IsZero() || now.Sub(l.lastOverloaded) >= l.cfg.QuietAfter)
}

// advance closes the measured interval if now is past its end and adjusts
// the limit from it. Intervals without traffic change nothing.
func (l *Limiter) advance(now time.Time) {
	if l.start.IsZero() {
		l.start = now
		return
	}
	elapsed := now.Sub(l.start)
	if elapsed < l.cfg.Interval {
		return
	}
	if l.cfg.RateWindow > 0 {
		rate := float64(l.completed) / elapsed.Seconds()
		if l.rate == 0 {
			l.rate = rate
		} else {
			l.rate += min(1, float64(elapsed)/float64(l.cfg.RateWindow)) * (rate - l.rate)
		}
	}
	l.completed = 0
	overloaded := l.samples > 0 && float64(l.over) > l.cfg.OverShare*float64(l.samples)
	threshold := l.schedThreshold()
	if l.cfg.SchedTarget > 0 && l.sched > threshold {
		overloaded = true
		l.schedOverIntervals++
	}
	switch {
	case overloaded:
		// The further the delays overshoot their targets, the harder the
		// cut (as in Breakwater): by 1/(mean delay/target), but at least by
		// Decrease and at most by half, so one interval cannot empty the
		// node.
		factor := l.cfg.Decrease
		if l.samples == 0 {
			// Overloaded by the scheduling signal alone: the mild cut.
		} else if mean := l.sumRatio / float64(l.samples); mean > 0 {
			factor = min(factor, max(0.5, 1/mean))
		}
		l.limit = max(float64(l.cfg.MinLimit), l.limit*factor)
		l.overloadedIntervals++
		l.lastOverloaded = now
		l.decreases++
	case l.reached && l.quiet(now, threshold):
		l.limit = min(float64(l.cfg.MaxLimit), 2*l.limit)
		l.increases++
		l.doublings++
	case l.reached || l.near && l.sched <= threshold/2:
		l.limit = min(float64(l.cfg.MaxLimit), l.limit+max(1, l.limit*l.cfg.Increase))
		l.increases++
	}
	if l.samples > 0 {
		l.lastDelay = l.sumDelay / time.Duration(l.samples)
		l.lastMinBudget = l.minBudget
	}
	l.start = now
	l.samples, l.over, l.sumDelay, l.sumRatio, l.sched, l.minBudget = 0, 0, 0, 0, 0, 0
	l.reached = float64(l.inFlight) >= l.limit
	l.near = float64(l.inFlight) >= l.limit*l.cfg.GrowAt
}

// Stats is a snapshot of a Limiter for status.
type Stats struct {
	Limit               int           `json:"limit"`
	InFlight            int           `json:"in_flight"`
	Admitted            uint64        `json:"admitted"`
	Refused             uint64        `json:"refused"`
	RefusedByClass      []uint64      `json:"refused_by_class"`
	LastMeanDelay       time.Duration `json:"last_mean_delay_ns"`
	OverloadedIntervals uint64        `json:"overloaded_intervals"`
	Increases           uint64        `json:"increases"`
	Doublings           uint64        `json:"doublings"` // of Increases, those that doubled the limit (QuietShare)
	Decreases           uint64        `json:"decreases"`
	SchedP99            time.Duration `json:"sched_p99_ns"`               // the last scheduling-latency reading
	SchedOverIntervals  uint64        `json:"sched_overloaded_intervals"` // intervals overloaded by it
	BurstAdmitted       uint64        `json:"burst_admitted"`             // admitted above the limit by the burst allowance
	CompletionRate      float64       `json:"completion_rate_per_s"`      // the rate the allowance uses
}

// Stats returns the current figures.
func (l *Limiter) Stats() Stats {
	return Stats{
		Limit: int(l.limit), InFlight: l.inFlight, Admitted: l.admitted, Refused: l.refused,
		RefusedByClass: append([]uint64(nil), l.refusedByClass...), LastMeanDelay: l.lastDelay,
		OverloadedIntervals: l.overloadedIntervals, Increases: l.increases, Doublings: l.doublings, Decreases: l.decreases,
		SchedP99: l.lastSched, SchedOverIntervals: l.schedOverIntervals,
		BurstAdmitted: l.burstAdmitted, CompletionRate: l.rate,
	}
}
