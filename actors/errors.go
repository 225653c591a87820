package actors

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/tempestrt/tempest/collections"
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

// errNotAdmitted marks a refusal by a clone's queue at admission (deadline
// unmeetable behind its backlog, or queue full): the request never ran, so
// Node.Call tries the next clone, whose queue may be shorter.
var errNotAdmitted = errors.New("not admitted")

// markNotAdmitted appends nothing to a message but makes errors.Is see
// errNotAdmitted (format "%w%w" with it).
var markNotAdmitted = silentErr{errNotAdmitted}

type silentErr struct{ err error }

func (e silentErr) Error() string { return "" }
func (e silentErr) Unwrap() error { return e.err }

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
	// A mutation the update handler could not make (Store.Update failed
	// and retracted the update), unless the handler returned its own
	// *Error: a value that does not encode, an unregistered user op, a
	// user op that panicked. A bug in the service, triggered by this
	// request only: the clone keeps serving.
	{collections.ErrCodec, http.StatusInternalServerError, "codec_error"},
	{collections.ErrUnknownOp, http.StatusInternalServerError, "unknown_user_op"},
	{collections.ErrUserOpPanic, http.StatusInternalServerError, "user_op_panic"},
}
