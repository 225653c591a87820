package supervisor

import (
	"errors"
	"fmt"
	"time"
)

// BackoffConfig configures restart delays and the restart budget of a
// strategy. All durations are wall-clock durations.
//
// The delay of the n-th restart (n = 0 for the first restart after a quiet
// period) is
//
//	min(Max, Initial * Multiplier^n) * (1 - Jitter*u),  u uniform in [0, 1)
//
// so it never exceeds Max and never falls below (1-Jitter) times the capped
// exponential value.
type BackoffConfig struct {
	// Initial is the delay before the first restart of a run of failures.
	// Must be > 0. Default 100ms.
	Initial time.Duration
	// Max caps every delay (jitter included). Must be >= Initial. Default 30s.
	Max time.Duration
	// Multiplier is the growth factor between consecutive delays. Must be
	// >= 1 (1 gives a constant delay). Default 2.
	Multiplier float64
	// Jitter is the fraction (0..1) by which a delay is randomly shortened,
	// so actors that failed together do not restart in lock step. 0 disables
	// jitter. Default 0.2.
	Jitter float64
	// MaxRestarts is the restart budget: a failure that makes more than
	// MaxRestarts failures inside Window exhausts it and the supervisor gives
	// up (escalates or stops, see WithGiveUp). 0 means never restart. Default 10.
	MaxRestarts int
	// Window is the sliding window over which failures are counted against
	// MaxRestarts. Must be > 0. Default 1m.
	Window time.Duration
	// ResetAfter: a child that ran this long after its last restart without
	// failing starts again from Initial. Must be > 0. Default 1m.
	ResetAfter time.Duration
}

// DefaultBackoffConfig is for production: 100ms doubling up to 30s, 20%
// jitter, at most 10 failures a minute, delays reset after a minute of
// uptime. A child that crash-loops is given up on after about 50s of trying.
func DefaultBackoffConfig() BackoffConfig {
	return BackoffConfig{
		Initial:     100 * time.Millisecond,
		Max:         30 * time.Second,
		Multiplier:  2,
		Jitter:      0.2,
		MaxRestarts: 10,
		Window:      time.Minute,
		ResetAfter:  time.Minute,
	}
}

// TestBackoffConfig has tiny delays for tests: 1ms doubling up to 20ms, 10%
// jitter, at most 5 failures a second, reset after 200ms of uptime.
func TestBackoffConfig() BackoffConfig {
	return BackoffConfig{
		Initial:     time.Millisecond,
		Max:         20 * time.Millisecond,
		Multiplier:  2,
		Jitter:      0.1,
		MaxRestarts: 5,
		Window:      time.Second,
		ResetAfter:  200 * time.Millisecond,
	}
}

// Validate reports every problem of c, wrapped in ErrInvalidConfig.
func (c BackoffConfig) Validate() error {
	var errs []error
	if c.Initial <= 0 {
		errs = append(errs, fmt.Errorf("Initial must be > 0, got %v", c.Initial))
	}
	if c.Max < c.Initial {
		errs = append(errs, fmt.Errorf("Max (%v) must be >= Initial (%v)", c.Max, c.Initial))
	}
	if !(c.Multiplier >= 1) { // also rejects NaN
		errs = append(errs, fmt.Errorf("Multiplier must be >= 1, got %v", c.Multiplier))
	}
	if !(c.Jitter >= 0 && c.Jitter <= 1) {
		errs = append(errs, fmt.Errorf("Jitter must be in [0,1], got %v", c.Jitter))
	}
	if c.MaxRestarts < 0 {
		errs = append(errs, fmt.Errorf("MaxRestarts must be >= 0, got %d", c.MaxRestarts))
	}
	if c.Window <= 0 {
		errs = append(errs, fmt.Errorf("Window must be > 0, got %v", c.Window))
	}
	if c.ResetAfter <= 0 {
		errs = append(errs, fmt.Errorf("ResetAfter must be > 0, got %v", c.ResetAfter))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
}
