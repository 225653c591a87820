package collections

import "errors"

// Sentinel errors. Functions wrap them with %w and add context (collection,
// origin, seq, ...); test for them with errors.Is.
var (
	// ErrReadOnly is raised (as a panic) when a collection is mutated
	// outside Store.Update, or from inside a registered user op while it
	// runs. It is a programming error, not a runtime condition: unlike the
	// errors a mutator returns (ErrCodec, ErrUnknownOp, ErrUserOpPanic),
	// no request can cause it in a correct service.
	ErrReadOnly = errors.New("collections: mutation outside Store.Update")

	// ErrUnknownCollection: an op or snapshot names a collection this store
	// has not declared.
	ErrUnknownCollection = errors.New("collections: unknown collection")

	// ErrUnknownOp: an OP_USER op names a user op that was not registered
	// on its map, or Map.Do was called with an unregistered name (returned
	// by Do; the Update fails).
	ErrUnknownOp = errors.New("collections: unknown user op")

	// ErrBadOp: an op is malformed or does not fit its collection (wrong
	// service, missing origin or seq, kind not accepted by the collection,
	// undecodable key, value or arguments, non-canonical key).
	ErrBadOp = errors.New("collections: bad op")

	// ErrDuplicateCollection is raised (as a panic) when two collections
	// of one store are declared with the same name.
	ErrDuplicateCollection = errors.New("collections: duplicate collection")

	// ErrDuplicateOp is raised (as a panic) when a user op name is
	// registered twice on one map.
	ErrDuplicateOp = errors.New("collections: duplicate user op")

	// ErrSnapshot: a snapshot cannot be restored (malformed, inconsistent,
	// for another service, or the store is not fresh).
	ErrSnapshot = errors.New("collections: bad snapshot")

	// ErrConfig: Config.Validate failed.
	ErrConfig = errors.New("collections: bad config")

	// ErrInUpdate: Update, Deliver or Restore was called while an Update
	// is running (the store is driven by one goroutine at a time).
	ErrInUpdate = errors.New("collections: store is inside Update")

	// ErrCodec is returned by a mutator (and fails its Update) when a key,
	// value or user-op argument cannot be encoded, e.g. a NaN float under
	// JSON, or a user op's result cannot be.
	ErrCodec = errors.New("collections: cannot encode")

	// ErrUserOpPanic is returned by Map.Do (and fails its Update) when the
	// user op's function panicked as Do applied it.
	ErrUserOpPanic = errors.New("collections: user op panicked")
)
