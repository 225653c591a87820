package schedq

import (
	"errors"
	"fmt"
	"time"
)

// Config configures a Queue. Durations are wall-clock durations.
type Config struct {
	// MaxQueue is the admission limit: Push fails with ErrQueueFull while
	// this many requests are queued. Must be >= 1. Default 10000.
	MaxQueue int
	// MaxHold bounds hold-back: an update is released at Arrival+MaxHold even
	// if the stable watermark has not reached it. 0 disables hold-back.
	// Must be >= 0. Default 50ms.
	MaxHold time.Duration
	// Margin is the safety slack kept before a deadline: a request is
	// admissible at now while Deadline-now >= estimate(method)+Margin, and is
	// shed once that no longer holds. Must be >= 0. Default 2ms.
	Margin time.Duration
	// HoldSlack releases a held update this long before its point of no
	// return (Deadline-estimate-Margin), so it still has a chance to be
	// picked before it must be shed. Must be >= 0. Default 1ms.
	HoldSlack time.Duration
	// InitialEstimate is a method's service-time estimate until its first
	// Observe. Must be >= 0. Default 1ms.
	InitialEstimate time.Duration
	// EstimateAlpha is the EWMA weight of a new service-time observation,
	// in (0, 1]; 1 keeps only the last observation. Default 0.2.
	EstimateAlpha float64
}

// DefaultConfig: 10000 queued requests, updates held at most 50ms, 2ms margin,
// 1ms hold slack, 1ms initial estimate, EWMA weight 0.2.
func DefaultConfig() Config {
	return Config{
		MaxQueue:        10000,
		MaxHold:         50 * time.Millisecond,
		Margin:          2 * time.Millisecond,
		HoldSlack:       time.Millisecond,
		InitialEstimate: time.Millisecond,
		EstimateAlpha:   0.2,
	}
}

// Validate reports every problem of c, wrapped in ErrInvalidConfig.
func (c Config) Validate() error {
	var errs []error
	if c.MaxQueue < 1 {
		errs = append(errs, fmt.Errorf("MaxQueue must be >= 1, got %d", c.MaxQueue))
	}
	if c.MaxHold < 0 {
		errs = append(errs, fmt.Errorf("MaxHold must be >= 0, got %v", c.MaxHold))
	}
	if c.Margin < 0 {
		errs = append(errs, fmt.Errorf("Margin must be >= 0, got %v", c.Margin))
	}
	if c.HoldSlack < 0 {
		errs = append(errs, fmt.Errorf("HoldSlack must be >= 0, got %v", c.HoldSlack))
	}
	if c.InitialEstimate < 0 {
		errs = append(errs, fmt.Errorf("InitialEstimate must be >= 0, got %v", c.InitialEstimate))
	}
	if !(c.EstimateAlpha > 0 && c.EstimateAlpha <= 1) {
		errs = append(errs, fmt.Errorf("EstimateAlpha must be in (0,1], got %v", c.EstimateAlpha))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
}
