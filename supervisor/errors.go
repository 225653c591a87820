package supervisor

import "errors"

// Sentinel errors of the package. Functions wrap them with %w; test with errors.Is.
var (
	// ErrInvalidConfig is returned by BackoffConfig.Validate for a configuration
	// that cannot work (negative durations, Max < Initial, Jitter outside [0,1], ...).
	ErrInvalidConfig = errors.New("supervisor: invalid config")
)
