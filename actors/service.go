package actors

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"time"

	"github.com/tempestrt/tempest/collections"
)

// Service is the definition of a replicated service: its name and a setup
// function that declares the service's collections and handlers. The runtime
// calls setup once for every clone, and again whenever a clone's scheduler is
// restarted, each time with a fresh replica store, so handlers close over the
// collections of their own clone.
//
//	svc := actors.NewService("cart", func(b *actors.Builder) {
//		carts := collections.NewMap[string, Cart](b.Store(), "carts")
//		actors.Update(b, "add", func(c *actors.Ctx, r AddReq) (AddResp, error) { ... carts.Put(...) ... })
//		actors.Query(b, "get", func(c *actors.Ctx, r GetReq) (GetResp, error) { ... carts.Get(...) ... })
//	})
//
// Query handlers only read the local replica. Update handlers may read and
// mutate collections; every mutation becomes an operation that is applied
// locally at once, persisted, and multicast to the other clones. An update
// handler that returns an error leaves no trace: its operations are retracted.
// A handler runs once, on the clone that took the request, and the operations
// it makes carry their values, so handlers may read clocks or random numbers.
// Registered user ops (collections.RegisterOp) are different: every replica
// re-runs them, so they must be deterministic.
type Service struct {
	name  string
	setup func(*Builder)
}

var serviceName = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

// NewService defines a service. name must match ^[a-z][a-z0-9_-]{0,62}$
// (it appears in URLs and clone ids); NewService panics otherwise, since a
// bad name is a programming error found at start-up.
func NewService(name string, setup func(b *Builder)) *Service {
	if !serviceName.MatchString(name) {
		panic(fmt.Sprintf("actors: invalid service name %q", name))
	}
	if setup == nil {
		panic("actors: nil setup for service " + name)
	}
	return &Service{name: name, setup: setup}
}

// Name returns the service's name.
func (s *Service) Name() string { return s.name }

// Methods builds the service once against a scratch store and lists its
// methods, sorted. It validates the definition: setup must register at least
// one method and must not panic.
func (s *Service) Methods() (methods []MethodInfo, err error) {
	b, err := s.build(collections.Config{Service: s.name, Replica: s.name + "/probe"})
	if err != nil {
		return nil, err
	}
	for _, name := range slices.Sorted(maps.Keys(b.methods)) {
		m := b.methods[name]
		methods = append(methods, MethodInfo{Name: name, Update: m.update, Deadline: m.deadline, HoldBack: m.holdBack, Priority: m.priority})
	}
	return methods, nil
}

// MethodInfo describes one method of a service.
type MethodInfo struct {
	Name     string        `json:"name"`
	Update   bool          `json:"update"`
	Deadline time.Duration `json:"default_deadline_ns,omitempty"` // 0 = the node's default
	HoldBack bool          `json:"hold_back,omitempty"`
	Priority int           `json:"priority,omitempty"` // admission class: 0 most important
}

// build runs setup against a new store.
func (s *Service) build(cfg collections.Config) (b *Builder, err error) {
	store, err := collections.NewStore(cfg)
	if err != nil {
		return nil, fmt.Errorf("service %s: %w", s.name, err)
	}
	b = &Builder{service: s.name, store: store, methods: map[string]*method{}}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("service %s: setup panicked: %v", s.name, r)
		}
	}()
	s.setup(b)
	if b.err != nil {
		return nil, b.err
	}
	if len(b.methods) == 0 {
		return nil, fmt.Errorf("service %s: setup registered no methods", s.name)
	}
	return b, nil
}

// Builder collects a service's collections and handlers while its setup
// function runs.
type Builder struct {
	service string
	store   *collections.Store
	methods map[string]*method
	err     error
}

// Store is the replica store in which the service declares its collections.
func (b *Builder) Store() *collections.Store { return b.store }

// Ctx is what a handler knows about the call it serves.
type Ctx struct {
	Service  string
	Method   string
	Clone    string    // id of the clone running the handler, e.g. "cart/2"
	Deadline time.Time // the request's deadline
}

// MethodOption configures a method.
type MethodOption func(*method)

// WithDeadline sets the method's default deadline, used when a request does
// not carry its own (HTTP header Tempest-Timeout-Ms).
func WithDeadline(d time.Duration) MethodOption {
	return func(m *method) { m.deadline = d }
}

// WithHoldBack makes an update wait, before its handler runs, until the
// replica's stable point has reached the update's arrival time — so the
// handler decides on state that no earlier operation can still change — but
// never longer than its deadline allows (then it runs optimistically on
// tentative state). Use it for decisions such as "reserve a seat if free".
func WithHoldBack() MethodOption {
	return func(m *method) { m.holdBack = true }
}

// WithPriority sets the method's admission class: 0 (the default) is the
// most important; under overload the node refuses higher classes first and
// keeps a reserve of its capacity for lower ones (see Config.Admission,
// Shares).
func WithPriority(class int) MethodOption {
	return func(m *method) { m.priority = max(class, 0) }
}

type method struct {
	name     string
	update   bool
	deadline time.Duration
	holdBack bool
	priority int
	invoke   func(c *Ctx, body []byte) ([]byte, error)
}

var methodName = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_-]{0,62}$`)

// Query registers a read-only handler. Req is decoded from the request's
// JSON body; Resp is encoded as the JSON answer.
func Query[Req, Resp any](b *Builder, name string, fn func(c *Ctx, req Req) (Resp, error), opts ...MethodOption) {
	register(b, name, false, fn, opts)
}

// Update registers a handler that may mutate collections.
func Update[Req, Resp any](b *Builder, name string, fn func(c *Ctx, req Req) (Resp, error), opts ...MethodOption) {
	register(b, name, true, fn, opts)
}

func register[Req, Resp any](b *Builder, name string, update bool, fn func(*Ctx, Req) (Resp, error), opts []MethodOption) {
	if b.err != nil {
		return
	}
	switch {
	case !methodName.MatchString(name):
		b.err = fmt.Errorf("service %s: invalid method name %q", b.service, name)
		return
	case b.methods[name] != nil:
		b.err = fmt.Errorf("service %s: method %q registered twice", b.service, name)
		return
	case fn == nil:
		b.err = fmt.Errorf("service %s: nil handler for %q", b.service, name)
		return
	}
	m := &method{name: name, update: update}
	for _, o := range opts {
		o(m)
	}
	if m.holdBack && !update {
		b.err = fmt.Errorf("service %s: WithHoldBack on query %q", b.service, name)
		return
	}
	m.invoke = func(c *Ctx, body []byte) ([]byte, error) {
		var req Req
		if len(body) > 0 {
			if err := json.Unmarshal(body, &req); err != nil {
				return nil, &Error{Status: http.StatusBadRequest, Code: "bad_request", Message: "request body: " + err.Error()}
			}
		}
		resp, err := fn(c, req)
		if err != nil {
			return nil, err
		}
		out, err := json.Marshal(resp)
		if err != nil {
			return nil, fmt.Errorf("encode %s response: %w", name, err)
		}
		return out, nil
	}
	b.methods[name] = m
}

// Error is an error with an HTTP status and a stable machine-readable code.
// Handlers return it for expected failures (bad input, conflicts); the
// gateway answers {"error":{"code":…,"message":…}} with Status.
type Error struct {
	Status  int
	Code    string
	Message string
	// RetryAfter, when > 0, is how long the client should wait before it
	// tries again (the gateway sends it as Retry-After).
	RetryAfter time.Duration
	cause      error
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// HTTPStatus is the HTTP status the gateway answers with.
func (e *Error) HTTPStatus() int { return e.Status }

// ErrorCode is the machine-readable code of the error.
func (e *Error) ErrorCode() string { return e.Code }

// ErrorMessage is the human-readable message of the error.
func (e *Error) ErrorMessage() string { return e.Message }

// RetryAfterHint is RetryAfter, for the gateway.
func (e *Error) RetryAfterHint() time.Duration { return e.RetryAfter }

// Unwrap returns the sentinel this error refines, if any.
func (e *Error) Unwrap() error { return e.cause }

// Errorf builds an *Error.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// BadRequest is an *Error with status 400 and code "bad_request".
func BadRequest(format string, args ...any) *Error {
	return Errorf(http.StatusBadRequest, "bad_request", format, args...)
}

// Conflict is an *Error with status 409 and code "conflict".
func Conflict(format string, args ...any) *Error {
	return Errorf(http.StatusConflict, "conflict", format, args...)
}

// NotFound is an *Error with status 404 and code "not_found".
func NotFound(format string, args ...any) *Error {
	return Errorf(http.StatusNotFound, "not_found", format, args...)
}

// AsError turns any error into an *Error: runtime sentinels get their status
// and code, anything else is an internal error. AsError(nil) is nil.
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	for _, k := range knownErrors {
		if errors.Is(err, k.err) {
			e := &Error{Status: k.status, Code: k.code, Message: err.Error(), cause: k.err}
			var ra retryAfter
			if errors.As(err, &ra) {
				e.RetryAfter = ra.after
			}
			return e
		}
	}
	return &Error{Status: http.StatusInternalServerError, Code: "internal", Message: err.Error(), cause: err}
}
