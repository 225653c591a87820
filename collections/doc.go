// Package collections holds one replica's state of a replicated service:
// collections that feel like Go containers (Map, List, Set, Counter) whose
// every mutation is an operation (a tempestpb.Op) that the runtime
// persists and multicasts to the other clones of the service.
//
// It is a pure core: it imports the op messages (and the protobuf runtime,
// for encoded sizes) and the standard library only — no actors, no
// network, no disk — and it is driven by one goroutine through Store
// (Update, Deliver, Heartbeat, ObserveHeartbeat, Compact, Snapshot,
// Restore, BeginSnapshot, RestoreStream).
//
// # Consistency model
//
// Per-item sequential consistency: every replica applies the ops on one
// item in the same order, (timestamp, origin, seq), where the timestamp
// comes from a hybrid logical clock (HLC) and ties are broken by origin
// id. An item is a map entry, a set element, a whole list or a counter.
// There is no order across items and no transaction.
//
// Application is optimistic. An op is applied as soon as it arrives; an op
// that arrives after ops ordered later than it is inserted at its place in
// the item's history, and the item is rolled back (through an undo log)
// and replayed. User ops are registered by name and must be deterministic
// so that every replica can re-run them. Hence: whatever the delivery
// order, duplication or delay, replicas that delivered the same ops hold
// the same values (the Digest proves it) — which the property tests check
// with collections/check.
//
// # Stability
//
// Each origin numbers its ops contiguously and stamps them with strictly
// increasing timestamps, and sends heartbeats when idle. A replica knows
// origin o's stream up to the horizon: the timestamp of the last op of its
// contiguous delivered prefix, or a heartbeat's time once the prefix
// reaches the heartbeat's seq. The stable point is the minimum horizon
// over the service's origins (SetOrigins): no op at or before it can still
// arrive, so those ops are final. They are folded into the item's base
// (dropping their undo records) and reported, in order, to
// Config.OnStable. Reads say whether an item still has tentative ops
// (Map.Stable, List.Stable, ...). An op arriving at or before the stable
// point means an origin broke its promise; it is counted (Stats.LateOps)
// and applied at its place among the tentative ops.
//
// # Failed mutations
//
// Mutators (Map.Put, Map.Do, Set.Add, List.Append, Counter.Incr, ...)
// return an error rather than panic when a mutation cannot be made: a key,
// value or argument that does not encode (ErrCodec), an unregistered user
// op (ErrUnknownOp), a user op that panics (ErrUserOpPanic) or whose result
// does not encode. The failure fails the enclosing Store.Update even if the
// handler ignores it: every op of the update is retracted and Update
// returns the error, so one bad request costs its own update only.
// Mutating outside Update (ErrReadOnly) is a programming error and panics.
//
// # Clocks
//
// The HLC follows remote clocks so that an op issued after seeing another
// is ordered after it, but never more than MaxDrift (default 10 s) ahead
// of the local physical clock, so one bad clock cannot drag the cluster
// into the future (see DefaultMaxDrift for the trade-off). The replica's
// own past readings (own ops and heartbeats coming back from its log or a
// peer) are followed without the cap: an origin's timestamps must
// increase.
//
// # Costs
//
// In-order delivery is O(log n) (binary search in the item's history, heap
// of items by oldest tentative op). An op late by k positions costs k
// reverts and k re-applications. Folding is O(log items) per op, digests
// are incremental (only items changed since the last Digest are
// rehashed), snapshots are O(state). A snapshot stream (BeginSnapshot)
// spreads that cost: O(origins) to begin, then chunks of bounded size and
// work, interleaved with updates; an item changed before its turn copies
// its state once (see snapshot_stream.go). See the benchmarks (go test
// -bench .).
package collections
