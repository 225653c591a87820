// Package actors is the runtime a service author writes against: define a
// service, start a node that runs several clones of it, and call it.
//
// # Defining a service
//
// A service is a name and a setup function. Setup declares the service's
// replicated collections in the Builder's store (collections.NewMap,
// NewList, NewSet, NewCounter), registers the ops its updates apply
// (collections.RegisterOp), and registers its methods with Query and
// Update. Request and answer types are JSON-encoded.
//
//	func Service() *actors.Service {
//		return actors.NewService("cart", func(b *actors.Builder) {
//			carts := collections.NewMap[string, map[string]int64](b.Store(), "carts")
//			collections.RegisterOp(carts, "add", func(cur map[string]int64, _ bool, a addArgs) (map[string]int64, bool) {
//				next := maps.Clone(cur) // never modify cur in place
//				if next == nil {
//					next = map[string]int64{}
//				}
//				next[a.Item] += a.Qty
//				return next, true
//			})
//			actors.Update(b, "add", func(_ *actors.Ctx, r AddRequest) (View, error) {
//				if r.Qty <= 0 {
//					return View{}, actors.BadRequest("qty must be positive, got %d", r.Qty)
//				}
//				if err := carts.Do(r.User, "add", addArgs{Item: r.Item, Qty: r.Qty}); err != nil {
//					return View{}, err
//				}
//				items, _ := carts.Get(r.User)
//				return View{Items: items, Stable: carts.Stable(r.User)}, nil
//			})
//			actors.Query(b, "get", func(_ *actors.Ctx, r GetRequest) (View, error) {
//				items, _ := carts.Get(r.User)
//				return View{Items: items, Stable: carts.Stable(r.User)}, nil
//			}, actors.WithDeadline(50*time.Millisecond))
//		})
//	}
//
// examples/cart and examples/chat are complete services.
//
// The runtime runs setup once for every clone, and again whenever a clone's
// scheduler restarts, each time with a fresh store, so handlers must close
// over the collections setup made and keep no state anywhere else: state
// outside collections is neither replicated, persisted nor restored.
//
// # Queries, updates and what must be deterministic
//
// A Query handler reads the local replica of the clone that took the
// request; it never waits for other clones. An Update handler may also
// mutate collections (Put, Delete, Append, Insert, RemoveAt, Set, Add,
// Remove, Incr, Do): each mutation becomes an operation, stamped with a
// hybrid-logical-clock timestamp and the clone's id, applied to the local
// replica at once, written to the clone's op log, and, once durable,
// multicast to the other clones and answered. The answer therefore shows the
// update's own writes.
//
// A handler runs once, on one clone, and the operations it makes carry
// their values, so a handler may read the clock, draw random numbers or
// look at the replica as it likes. A registered op (collections.RegisterOp)
// is different: every clone applies the operations on one item in the same
// order, (timestamp, origin), and an operation that arrives late is put in
// its place by rolling back the item's later operations and replaying them.
// So a registered op's function is re-run on every clone, and again on
// every rollback and after a restart's replay: it must be deterministic (a
// function of cur, exists and its arguments only: no clock, no randomness,
// no map iteration order, no other collection) and must not modify cur in
// place. Prefer a registered op to a read-then-Put whenever concurrent
// updates of one item must all count: a Put made on one clone overwrites a
// concurrent one made on another, while each op is re-run in its place.
//
// Consistency is per item (one map key, one set element, one list, one
// counter); there are no transactions across items.
//
// # Reads are local: stable or tentative
//
// A read sees what the local replica has applied. Each collection reports
// whether what was read is stable (Map.Stable(key), Set.Stable(v),
// List.Stable(), Counter.Stable()): stable means no operation still in flight
// from another clone can be ordered before it, so the value is final;
// tentative means it may still change when such an operation arrives. Answer
// it to clients when they need to know (the example carts return "stable").
//
// # Errors
//
// A handler returns an error to refuse a request. BadRequest (400),
// NotFound (404), Conflict (409) and Errorf(status, code, format, ...) build
// an *Error, which the HTTP gateway answers as {"error":{"code":…,"message":…}}
// with its status; any other error is a 500 "internal". A request body that
// does not decode into the request type is a 400 "bad_request" before the
// handler runs.
//
// An Update handler that returns an error leaves no trace: every operation
// it made is retracted, nothing is persisted or sent, and no other clone
// sees it. A mutation that cannot be made (a value that does not encode, an
// unregistered op, a registered op that panics) returns its error and fails
// the whole update in the same way, even if the handler ignores that error;
// unless the handler returns an *Error of its own, the answer is a 500
// "codec_error", "unknown_user_op" or "user_op_panic", and the clone keeps
// serving. Return the error as the example does. A handler that panics
// fails only its own request: it is answered 500 "handler_panic" (counted
// in /v1/status as handler_panics), an update's operations are retracted,
// the scheduler goes on serving, and the request is not retried on another
// clone (it would panic there too).
//
// # Deadlines
//
// Every request has a deadline: the client's budget (HTTP header
// Tempest-Timeout-Ms, or Node.Call's timeout argument or its context's
// deadline), else the method's WithDeadline, else Config.DefaultDeadline
// (1 s), capped by Config.MaxDeadline (1 min). Each clone runs its queue in
// earliest-deadline-first order and answers in time or refuses:
//
//   - 503 "deadline_unmeetable" at admission, at once, when the deadline
//     cannot be met (the budget is shorter than the method's estimated run
//     and answer time, or than the work queued ahead of it), or while queued,
//     as soon as it would no longer be met. A refused request never ran: the
//     node tries another clone while the budget allows, updates included.
//     503 "overloaded" at the node's front door, before the body is read,
//     when the node is at its admission limit (requests wait longer than
//     Config.Admission.TargetShare of their budgets before their handlers
//     start; the answer carries Retry-After;
//     WithPriority makes a method's requests refused later or earlier than
//     others), when a clone's request queue is full, and, for updates, when
//     its op-log write queue is full (Config.OpLogQueue: the disk is not
//     keeping up).
//   - 504 "deadline_exceeded" when no answer came in time; it is sent just
//     before the deadline (Config.AnswerLead), never after. Handlers
//     are not preempted: an update answered 504 may still have been applied,
//     so a client that must know reads it back.
//
// Queries are hedged to a second clone when the first is late by its own
// promise; updates are never sent twice.
//
// WithHoldBack makes an update wait before its handler runs until its clone
// is stable up to the update's arrival, so that the handler decides on state
// no earlier operation can still change ("reserve the seat if free"), but
// never so long that the deadline would be missed: then it runs on
// tentative state. A held-back update needs a deadline long enough for the
// clones' heartbeats to pass its arrival (a few HeartbeatIntervals).
//
// # Running a node
//
// Start runs the configured services' clones, their supervision tree, the
// node's database and, when Config.HTTPAddr is set, the HTTP gateway:
//
//	cfg := actors.DefaultConfig("/var/lib/tempest") // actors.TestConfig(t.TempDir()) in tests: short timers
//	cfg.Services = []*actors.Service{cart.Service()}
//	cfg.HTTPAddr = "127.0.0.1:8080"
//	node, err := actors.Start(cfg) // returns once every clone has reloaded its state
//	if err != nil {
//		return err
//	}
//	defer node.Stop()
//	out, err := node.Call(ctx, "cart", "get", []byte(`{"user":"ann"}`), 50*time.Millisecond)
//
// Every error from Node.Call is an *Error and unwraps to this package's
// sentinels (errors.Is(err, ErrDeadlineUnmeet)). Node.Status reports every
// clone (digest, applied and tentative ops, queue, deadline misses,
// restarts) and recent supervision events; with Gateway.EnableChaos,
// Node.Kill crashes an actor to watch it be restarted. ARCHITECTURE.md
// describes the supervision tree and the paths of a query and an update.
package actors
