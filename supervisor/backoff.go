package supervisor

import (
	"math"
	"math/rand/v2"
	"time"
)

// Delay returns the delay before restart number n (0-based) of a run of
// failures: min(Max, Initial*Multiplier^n), shortened by a random fraction
// of at most Jitter drawn from rng. The result is always in
// ((1-Jitter)*capped, capped] where capped = min(Max, Initial*Multiplier^n),
// so it never exceeds Max. A nil rng disables jitter (the result is then
// exactly capped). cfg is assumed valid (see BackoffConfig.Validate).
//
// Jitter only shortens: applying it symmetrically would either exceed Max or,
// if clamped, pile every capped delay onto exactly Max, which brings back the
// lock-step restarts jitter is there to prevent.
func Delay(cfg BackoffConfig, n int, rng *rand.Rand) time.Duration {
	if n < 0 {
		n = 0
	}
	capped := float64(cfg.Max)
	base := float64(cfg.Initial) * math.Pow(cfg.Multiplier, float64(n))
	if !(base < capped) { // also catches +Inf and NaN
		base = capped
	}
	if cfg.Jitter > 0 && rng != nil {
		base *= 1 - cfg.Jitter*rng.Float64()
	}
	return time.Duration(base)
}

// Verdict is what Backoff decides about one failure.
type Verdict struct {
	// Restart is false when the failure exhausted the restart budget.
	Restart bool
	// Delay is how long to wait before restarting (only when Restart).
	Delay time.Duration
	// Attempt is the 1-based number of this restart within the current run
	// of failures; the run starts again at 1 after a quiet ResetAfter.
	Attempt int
	// Failures is the number of failures inside Window, this one included.
	Failures int
}

// Backoff is the restart bookkeeping of one supervised child (or, for
// all-for-one, of one group of siblings). It is a pure state machine: the
// caller passes the time of each failure, so tests drive it with a fake
// clock. Not safe for concurrent use.
//
// Invariants: failures holds the times of the failures inside Window, oldest
// first; step is the exponent of the next delay; restartAt is when the last
// scheduled restart takes effect (failure time + delay), from which the
// quiet period of ResetAfter is measured.
type Backoff struct {
	cfg       BackoffConfig
	step      int
	failures  []time.Time
	restartAt time.Time
}

// NewBackoff returns the bookkeeping for a child that has not failed yet.
// cfg is assumed valid (see BackoffConfig.Validate).
func NewBackoff(cfg BackoffConfig) *Backoff {
	return &Backoff{cfg: cfg}
}

// Failure records a failure at now and decides: restart after Verdict.Delay,
// or give up because more than MaxRestarts failures fell inside Window.
// Giving up resets the state (a child restarted later by other means starts
// from scratch). rng supplies jitter (nil: none).
func (b *Backoff) Failure(now time.Time, rng *rand.Rand) Verdict {
	keep := b.failures[:0]
	for _, t := range b.failures {
		if now.Sub(t) < b.cfg.Window {
			keep = append(keep, t)
		}
	}
	b.failures = append(keep, now)
	if !b.restartAt.IsZero() && now.Sub(b.restartAt) >= b.cfg.ResetAfter {
		b.step = 0 // it ran long enough: start again from Initial
	}
	n := len(b.failures)
	if n > b.cfg.MaxRestarts {
		b.Reset()
		return Verdict{Failures: n}
	}
	d := Delay(b.cfg, b.step, rng)
	b.step++
	b.restartAt = now.Add(d)
	return Verdict{Restart: true, Delay: d, Attempt: b.step, Failures: n}
}

// Idle reports whether the state carries no information any more at now:
// no failure inside Window and the last restart at least ResetAfter ago. An
// idle Backoff behaves exactly like a new one, so it may be dropped.
func (b *Backoff) Idle(now time.Time) bool {
	if n := len(b.failures); n > 0 && now.Sub(b.failures[n-1]) < b.cfg.Window {
		return false
	}
	return b.restartAt.IsZero() || now.Sub(b.restartAt) >= b.cfg.ResetAfter
}

// Reset forgets every failure.
func (b *Backoff) Reset() {
	b.step = 0
	b.failures = b.failures[:0]
	b.restartAt = time.Time{}
}
