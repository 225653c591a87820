package schedq

import "errors"

// Sentinel errors of the package; returned errors wrap them (use errors.Is).
var (
	// ErrDeadlineUnmeetable: the request's deadline is closer than the
	// method's service-time estimate plus Margin, or than that plus the
	// queued work that runs before it, so it cannot be answered in time.
	// Answer the client at once instead of late.
	ErrDeadlineUnmeetable = errors.New("schedq: deadline cannot be met")
	// ErrQueueFull: MaxQueue requests are queued already (back-pressure).
	ErrQueueFull = errors.New("schedq: queue full")
	// ErrNilRequest: Push was given a nil request.
	ErrNilRequest = errors.New("schedq: nil request")
	// ErrInvalidConfig: Config.Validate found a configuration that cannot work.
	ErrInvalidConfig = errors.New("schedq: invalid config")
)
