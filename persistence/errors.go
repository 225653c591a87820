package persistence

import "errors"

// Sentinel errors. Functions wrap them with %w and add detail, so test them
// with errors.Is.
var (
	// ErrClosed is returned by every operation on a DB (or one of its
	// CloneLogs) after Close has begun. An Append that was already queued
	// when Close began is still committed; one submitted later gets ErrClosed.
	ErrClosed = errors.New("persistence: database closed")

	// ErrInvalidOptions is returned by Options.Validate and Open.
	ErrInvalidOptions = errors.New("persistence: invalid options")

	// ErrInvalidID is returned for a clone id, origin or metadata key that is
	// empty or longer than MaxIDLen bytes.
	ErrInvalidID = errors.New("persistence: invalid id")

	// ErrInvalidRecord is returned by Append for an empty call or a record
	// with Seq 0 or an invalid Origin. Nothing of that call is stored.
	ErrInvalidRecord = errors.New("persistence: invalid record")

	// ErrCorrupt is returned when a stored key or value fails to decode
	// (wrong length, bad checksum, broken invariant). The store never panics
	// on corrupt data.
	ErrCorrupt = errors.New("persistence: corrupt data")

	// ErrIncompatible is returned by Open when the directory holds a pebble
	// database written by something else or by an unknown format version.
	ErrIncompatible = errors.New("persistence: incompatible database format")

	// ErrInDoubt is returned by Append when its context ended after the
	// committer had already taken the records into a batch: they may or may
	// not be stored. Appending the same records again is safe (idempotent).
	ErrInDoubt = errors.New("persistence: append outcome unknown")

	// ErrPruned is returned by Replay when records after the requested
	// position were removed by Prune (load the snapshot first), and by Range
	// when some sequence numbers of the requested range were pruned.
	ErrPruned = errors.New("persistence: records pruned")

	// ErrNotCovered is returned by Prune when the latest snapshot does not
	// cover the requested prefix of the log: pruning it would lose data.
	ErrNotCovered = errors.New("persistence: log prefix not covered by a snapshot")

	// ErrStaleSnapshot is returned by SaveSnapshot when the clone already
	// has a snapshot covering a later log position; by the chunks of a
	// snapshot read (SnapshotChunks, SnapshotChain) that was replaced since
	// it was listed; and (through a Writer's callback) for the chunks and
	// end of a chunked snapshot that a SaveSnapshot or Writer.Snapshot
	// replaced while it was being written.
	ErrStaleSnapshot = errors.New("persistence: snapshot older than the stored one")

	// ErrWriterBroken is returned for every write through a Writer at or
	// after its first failed write: none of them is stored, so the log has
	// no hole. Open a new Writer after reloading.
	ErrWriterBroken = errors.New("persistence: ordered writer broken by an earlier failure")

	// ErrPosOutOfRange is returned by SaveSnapshot for a position beyond the
	// last record of the clone's log.
	ErrPosOutOfRange = errors.New("persistence: log position out of range")

	// ErrNoSnapshot is returned (through a Writer's callback) for a
	// snapshot chunk or end with no snapshot begun on that clone, and for a
	// delta snapshot begun (SnapshotDeltaBegin) on a clone with no stored
	// snapshot to build on.
	ErrNoSnapshot = errors.New("persistence: no chunked snapshot begun")
)
