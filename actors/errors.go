package actors

import (
	"errors"
	"fmt"
	"net/http"
)

// Errors returned by the runtime. The gateway maps each to an HTTP status and
// code (see knownErrors).
var (
	ErrUnknownService    = errors.New("unknown service")
	ErrUnknownMethod     = errors.New("unknown method")
	ErrDeadlineUnmeet    = errors.New("deadline cannot be met")
	ErrDeadlineExceeded  = errors.New("deadline exceeded")
	ErrOverloaded        = errors.New("overloaded")
	ErrNoClone           = errors.New("no clone ready")
	ErrUnknownActor      = errors.New("unknown actor")
	ErrNodeStopped       = errors.New("node stopped")
	ErrChaosDisabled     = errors.New("chaos API disabled")
	ErrPersistenceFailed = errors.New("persistence failed")
)

// errCloneStopping answers requests a clone had queued when it stopped or
// restarted; they never ran, so Node.Call retries them on another clone.
var errCloneStopping = fmt.Errorf("clone stopping before the request ran: %w", ErrNoClone)

var knownErrors = []struct {
	err    error
	status int
	code   string
}{
	{ErrUnknownService, http.StatusNotFound, "unknown_service"},
	{ErrUnknownMethod, http.StatusNotFound, "unknown_method"},
	{ErrDeadlineUnmeet, http.StatusServiceUnavailable, "deadline_unmeetable"},
	{ErrOverloaded, http.StatusServiceUnavailable, "overloaded"},
	{ErrNoClone, http.StatusServiceUnavailable, "no_clone_ready"},
	{ErrDeadlineExceeded, http.StatusGatewayTimeout, "deadline_exceeded"},
	{ErrUnknownActor, http.StatusNotFound, "unknown_actor"},
	{ErrNodeStopped, http.StatusServiceUnavailable, "node_stopped"},
	{ErrChaosDisabled, http.StatusForbidden, "chaos_disabled"},
	{ErrPersistenceFailed, http.StatusInternalServerError, "persistence_failed"},
}
