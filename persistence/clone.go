package persistence

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"math"

	"github.com/cockroachdb/pebble/v2"
)

// Record is one entry of a clone's op log. The store does not interpret
// Data; (Origin, Seq) identifies the record: the clone (or peer) that
// produced the op and its per-origin sequence number.
type Record struct {
	// Origin is the producing clone's id: 1 to MaxIDLen bytes.
	Origin string
	// Seq is the per-origin sequence number, >= 1.
	Seq uint64
	// Data is the opaque payload (an encoded op).
	Data []byte
}

// CloneLog is the namespace of one clone in a DB: its op log, an index of the
// log by (origin, seq), per-origin bookkeeping, its latest snapshot (a full
// one, possibly followed by deltas: see SnapshotChain) and its metadata. Log
// positions are assigned by the store: 1 for the first record, then +1 per
// stored record, never reused (not even after Prune; Drop starts over at 1).
//
// Invariants, kept by the committer and checked by the decoders:
//   - every index entry points to a log record with the same (origin, seq),
//     and every log record has its index entry (they are written and pruned
//     in the same batch);
//   - records with pos <= the prune point are gone, and the prune point is
//     <= the latest snapshot's position, the last generation of its chain
//     (Prune refuses otherwise).
//
// Methods are safe for concurrent use. Writes are ordered per DB: a write
// that returns before another is submitted is committed before it.
type CloneLog struct {
	db     *DB
	id     string
	prefix []byte
	err    error // invalid id
}

// ID returns the clone id.
func (c *CloneLog) ID() string { return c.id }

// Append stores recs at the end of the log, in order, and returns the log
// position of the last of them.
//
// Concurrent Appends (from any goroutines, to any clones of the DB) are
// coalesced by the committer into one pebble batch and one WAL write; Append
// returns when its records are durable under the DB's SyncPolicy (see the
// package documentation for what that means under each policy).
//
// Idempotence: a record whose (Origin, Seq) is already stored, or was stored
// and then removed by Prune, is skipped (its Data is not compared; the first
// copy wins). If the last record was skipped, the returned position is where
// its earlier copy is, or the prune point if it was pruned. A very old record
// of an origin whose pruned seqs form more than 64 separate runs may be stored
// again (see originState); nothing is ever skipped that was not stored.
//
// Errors: ErrInvalidRecord (empty call, Seq 0, bad Origin: nothing stored),
// ErrClosed, ctx.Err() if ctx ended before the committer took the records
// (nothing stored), ErrInDoubt wrapping ctx.Err() if it ended after (stored
// or not: append again), or a storage error. recs may be reused once Append
// returns, whatever it returns.
func (c *CloneLog) Append(ctx context.Context, recs ...Record) (uint64, error) {
	o, err := c.appendOp(recs)
	if err != nil {
		return 0, err
	}
	return c.db.submit(ctx, o)
}

// appendOp validates and encodes recs as an append.
func (c *CloneLog) appendOp(recs []Record) (*op, error) {
	if c.err != nil {
		return nil, c.err
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("%w: no records", ErrInvalidRecord)
	}
	o := &op{kind: opAppend, clone: c, recs: make([]encRecord, len(recs)), nrec: len(recs)}
	for i, r := range recs {
		if !validID(r.Origin) {
			return nil, fmt.Errorf("%w: record %d: origin of %d bytes", ErrInvalidRecord, i, len(r.Origin))
		}
		if r.Seq == 0 {
			return nil, fmt.Errorf("%w: record %d (origin %s): seq 0", ErrInvalidRecord, i, r.Origin)
		}
		e := encRecord{origin: r.Origin, seq: r.Seq, idx: indexKey(c.prefix, r.Origin, r.Seq), val: encodeRecord(r.Origin, r.Seq, r.Data)}
		o.size += len(e.idx) + len(e.val)
		o.recs[i] = e
	}
	return o, nil
}

// SaveSnapshot stores data as the clone's snapshot, a full one replacing
// the stored chain (base and deltas). pos is the log position the snapshot
// covers: replaying the records after pos on top of it must give the current
// state. pos must not exceed the last log position (ErrPosOutOfRange) nor go
// back behind the stored snapshot's (ErrStaleSnapshot). It is a group-committed write, durable on
// return under SyncAlways.
func (c *CloneLog) SaveSnapshot(data []byte, pos uint64) error {
	if c.err != nil {
		return c.err
	}
	v := encodeSnapshot(pos, data)
	_, err := c.db.submit(context.Background(), &op{kind: opSnapshot, clone: c, val: v, pos: pos, nrec: 1, size: len(v)})
	return err
}

// LoadSnapshot returns the latest snapshot and the log position it covers;
// ok is false if the clone has none. To restore a clone: LoadSnapshot, then
// Replay(pos, ...). It reads single-chunk snapshots (SaveSnapshot,
// Writer.Snapshot); a chunked one (Writer.SnapshotBegin) is read with
// SnapshotChunks, and a chain with deltas (Writer.SnapshotDeltaBegin) with
// SnapshotChain (ErrIncompatible otherwise).
func (c *CloneLog) LoadSnapshot() (data []byte, pos uint64, ok bool, err error) {
	pos, ok, chunks, err := c.SnapshotChunks()
	if err != nil || !ok {
		return nil, 0, false, err
	}
	n := 0
	for chunk, err := range chunks {
		if err != nil {
			return nil, 0, false, err
		}
		if n++; n > 1 {
			return nil, 0, false, fmt.Errorf("%w: clone %s: the snapshot at %d is chunked: read it with SnapshotChunks", ErrIncompatible, c.id, pos)
		}
		data = chunk
	}
	return data, pos, true, nil
}

// SnapshotChunks returns the clone's stored snapshot when it is a full one
// alone (no delta after it): the log position it covers, whether there is
// one, and its chunks in order (chunk 0 first; a single chunk for
// SaveSnapshot's). If the stored chain has deltas it returns an error
// wrapping ErrIncompatible: read it with SnapshotChain. Only the generation
// the clone's header names is read: chunks a crash left of an unfinished
// snapshot are not. The chunks are read when iterated, from one consistent
// view of the database; if the snapshot was replaced since SnapshotChunks
// returned, the iteration yields an error wrapping ErrStaleSnapshot.
func (c *CloneLog) SnapshotChunks() (pos uint64, ok bool, chunks iter.Seq2[[]byte, error], err error) {
	if err := c.read(); err != nil {
		return 0, false, nil, err
	}
	hdr, err := c.db.readHeader(c.db.pdb, c.prefix)
	c.db.release()
	if err != nil {
		return 0, false, nil, fmt.Errorf("clone %s: %w", c.id, err)
	}
	if !hdr.hasSnap {
		return 0, false, nil, nil
	}
	if hdr.state {
		return 0, false, nil, c.isState(hdr)
	}
	if hdr.basePos != hdr.snapPos {
		return 0, false, nil, fmt.Errorf("%w: clone %s: the snapshot at %d is a chain (a base at %d and deltas): read it with SnapshotChain",
			ErrIncompatible, c.id, hdr.snapPos, hdr.basePos)
	}
	return hdr.snapPos, true, func(yield func([]byte, error) bool) { c.readChunks(hdr.snapPos, false, true, yield) }, nil
}

// isState is the error of a chain reader for a clone whose snapshot is a
// state.
func (c *CloneLog) isState(hdr header) error {
	return fmt.Errorf("%w: clone %s: the snapshot at %d is a state: read it with OpenState", ErrIncompatible, c.id, hdr.snapPos)
}

// SnapshotPart is one generation of a clone's snapshot chain.
type SnapshotPart struct {
	// Gen is the log position the part covers.
	Gen uint64
	// Delta is false for the chain's base (a full snapshot, the first
	// part) and true for the deltas after it (Writer.SnapshotDeltaBegin).
	Delta bool
	// Chunks yields the part's chunks in order (chunk 0, the header the
	// begin was given, first). They are read when iterated, from one
	// consistent view of the database; if the part is no longer in the
	// clone's chain by then (a full snapshot replaced the chain), the
	// iteration yields an error wrapping ErrStaleSnapshot.
	Chunks iter.Seq2[[]byte, error]
	// ChunkViews is Chunks without a copy: each chunk's bytes are valid
	// only until the iteration takes its next step (they are the
	// database's). For a reader that decodes each chunk as it comes and
	// keeps nothing of it (a restart's restore: copying every chunk was 8%
	// of its CPU at 1M items).
	ChunkViews iter.Seq2[[]byte, error]
}

// SnapshotChain returns the clone's stored snapshot as a chain: the log
// position it covers (the last part's Gen), whether there is one, and its
// parts in order, the base (a full snapshot, Delta false) first, then every
// delta (Delta true) in increasing Gen. To restore a clone: apply the base's
// chunks, then each delta's in order, then Replay(pos, ...). A chain of a
// base alone is also what SnapshotChunks reads. Generations a crash left of
// an unfinished snapshot are not part of the chain. Finding the parts costs
// one seek per part; their chunks are read lazily (see SnapshotPart).
func (c *CloneLog) SnapshotChain() (pos uint64, ok bool, parts []SnapshotPart, err error) {
	if err := c.read(); err != nil {
		return 0, false, nil, err
	}
	defer c.db.release()
	view := c.db.pdb.NewSnapshot()
	defer view.Close()
	hdr, err := c.db.readHeader(view, c.prefix)
	if err != nil {
		return 0, false, nil, fmt.Errorf("clone %s: %w", c.id, err)
	}
	if !hdr.hasSnap {
		return 0, false, nil, nil
	}
	if hdr.state {
		return 0, false, nil, c.isState(hdr)
	}
	gens, err := c.chainGens(view, hdr)
	if err != nil {
		return 0, false, nil, err
	}
	parts = make([]SnapshotPart, len(gens))
	for i, gen := range gens {
		delta := i > 0
		parts[i] = SnapshotPart{Gen: gen, Delta: delta,
			Chunks:     func(yield func([]byte, error) bool) { c.readChunks(gen, delta, true, yield) },
			ChunkViews: func(yield func([]byte, error) bool) { c.readChunks(gen, delta, false, yield) }}
	}
	return hdr.snapPos, true, parts, nil
}

// chainGens returns the generations present in [hdr.basePos, hdr.snapPos]:
// one SeekGE per generation, each to the first chunk key after the previous
// generation, whatever the number of chunks. The first must be basePos and
// the last snapPos.
func (c *CloneLog) chainGens(r pebble.Reader, hdr header) ([]uint64, error) {
	_, hi := snapBounds(c.prefix)
	if hdr.snapPos < math.MaxUint64 {
		hi = snapChunkKey(c.prefix, hdr.snapPos+1, 0)
	}
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: snapChunkKey(c.prefix, hdr.basePos, 0), UpperBound: hi})
	if err != nil {
		return nil, err
	}
	var gens []uint64
	for valid := it.First(); valid; {
		p, err := decodeKey(it.Key())
		if err == nil && (p.kind != kindSnapChunk || p.clone != c.id) {
			err = corruptf("unexpected key %q in the snapshot range", it.Key())
		}
		if err != nil {
			return nil, errors.Join(fmt.Errorf("clone %s: %w", c.id, err), it.Close())
		}
		gens = append(gens, p.pos)
		if p.pos == math.MaxUint64 {
			break
		}
		valid = it.SeekGE(snapChunkKey(c.prefix, p.pos+1, 0))
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, err
	}
	if len(gens) == 0 || gens[0] != hdr.basePos {
		return nil, corruptf("clone %s: the header names a snapshot base at %d, which has no chunk", c.id, hdr.basePos)
	}
	if gens[len(gens)-1] != hdr.snapPos {
		return nil, corruptf("clone %s: the header names a snapshot at %d, which has no chunk", c.id, hdr.snapPos)
	}
	return gens, nil
}

// readChunks yields the chunks of generation gen, if it is still the chain's
// base (!delta) or one of its deltas: copies if copied, else the
// iterator's bytes (valid until its next step).
func (c *CloneLog) readChunks(gen uint64, delta, copied bool, yield func([]byte, error) bool) {
	if err := c.read(); err != nil {
		yield(nil, err)
		return
	}
	defer c.db.release()
	view := c.db.pdb.NewSnapshot()
	defer view.Close()
	hdr, err := c.db.readHeader(view, c.prefix)
	if err != nil {
		yield(nil, fmt.Errorf("clone %s: %w", c.id, err))
		return
	}
	inChain := hdr.hasSnap && !hdr.state && gen <= hdr.snapPos && gen == hdr.basePos
	if delta {
		inChain = hdr.hasSnap && !hdr.state && gen <= hdr.snapPos && gen > hdr.basePos
	}
	if !inChain {
		yield(nil, fmt.Errorf("%w: clone %s: the snapshot at %d was replaced while being read", ErrStaleSnapshot, c.id, gen))
		return
	}
	_, hi := snapBounds(c.prefix)
	if gen < math.MaxUint64 {
		hi = snapChunkKey(c.prefix, gen+1, 0)
	}
	it, err := view.NewIter(&pebble.IterOptions{LowerBound: snapChunkKey(c.prefix, gen, 0), UpperBound: hi})
	if err != nil {
		yield(nil, err)
		return
	}
	defer it.Close()
	next := uint32(0)
	for valid := it.First(); valid; valid = it.Next() {
		p, err := decodeKey(it.Key())
		if err != nil {
			yield(nil, fmt.Errorf("clone %s: %w", c.id, err))
			return
		}
		if p.kind != kindSnapChunk || p.clone != c.id || p.pos != gen || p.chunk != next {
			yield(nil, corruptf("clone %s: snapshot %d: found %q where chunk %d belongs", c.id, gen, it.Key(), next))
			return
		}
		v, err := it.ValueAndErr()
		if err != nil {
			yield(nil, err)
			return
		}
		at, data, err := decodeSnapshot(v)
		if err != nil {
			yield(nil, fmt.Errorf("clone %s: chunk %d: %w", c.id, next, err))
			return
		}
		if at != gen {
			yield(nil, corruptf("clone %s: snapshot generation %d holds a chunk of the snapshot at %d", c.id, gen, at))
			return
		}
		if copied {
			data = bytes.Clone(data)
		}
		if !yield(data, nil) {
			return
		}
		next++
	}
	if err := it.Error(); err != nil {
		yield(nil, err)
		return
	}
	if next == 0 {
		yield(nil, corruptf("clone %s: the header names a snapshot at %d, which has no chunk", c.id, gen))
	}
}

// Prune deletes the log records with pos <= keepAfter and their index
// entries; their (origin, seq) stay known, so re-delivered copies are still
// skipped by Append. keepAfter is clamped to the last log position. The
// latest snapshot must cover the pruned prefix (ErrNotCovered otherwise):
// Prune never removes the only copy of an op. Pruning less than is already
// pruned does nothing.
func (c *CloneLog) Prune(keepAfter uint64) error {
	if c.err != nil {
		return c.err
	}
	if keepAfter == 0 {
		return nil
	}
	_, err := c.db.submit(context.Background(), &op{kind: opPrune, clone: c, pos: keepAfter, nrec: 1})
	return err
}

// Drop deletes everything of the clone: log, index, snapshot, metadata. A
// later Append starts again at position 1.
func (c *CloneLog) Drop() error {
	if c.err != nil {
		return c.err
	}
	_, err := c.db.submit(context.Background(), &op{kind: opDrop, clone: c, nrec: 1})
	return err
}

// PutMeta stores val under key (1 to MaxIDLen bytes) in the clone's
// metadata, group-committed like Append.
func (c *CloneLog) PutMeta(key string, val []byte) error {
	if c.err != nil {
		return c.err
	}
	if !validID(key) {
		return fmt.Errorf("%w: meta key of %d bytes", ErrInvalidID, len(key))
	}
	k := metaKey(c.prefix, key)
	v := bytes.Clone(val)
	if v == nil {
		v = []byte{}
	}
	_, err := c.db.submit(context.Background(), &op{kind: opPutMeta, clone: c, key: k, val: v, nrec: 1, size: len(k) + len(v)})
	return err
}

// DeleteMeta removes key from the clone's metadata (no error if absent).
func (c *CloneLog) DeleteMeta(key string) error {
	if c.err != nil {
		return c.err
	}
	if !validID(key) {
		return fmt.Errorf("%w: meta key of %d bytes", ErrInvalidID, len(key))
	}
	k := metaKey(c.prefix, key)
	_, err := c.db.submit(context.Background(), &op{kind: opDeleteMeta, clone: c, key: k, nrec: 1, size: len(k)})
	return err
}

// GetMeta returns the value stored under key, and whether there is one.
func (c *CloneLog) GetMeta(key string) ([]byte, bool, error) {
	if !validID(key) {
		return nil, false, fmt.Errorf("%w: meta key of %d bytes", ErrInvalidID, len(key))
	}
	if err := c.read(); err != nil {
		return nil, false, err
	}
	defer c.db.release()
	v, closer, err := c.db.get(c.db.pdb, metaKey(c.prefix, key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer closer.Close()
	return bytes.Clone(v), true, nil
}

// Replay calls fn for every record with position > after, in position
// (= append) order, with its position. fn owns the Record it is given. An
// error from fn stops the replay and is returned as is.
//
// If records after `after` were pruned, Replay returns ErrPruned without
// calling fn: restore from LoadSnapshot first and replay after its position.
// Replay sees the log as of its start; records appended meanwhile are not
// included. fn may call Append but must not Close the DB.
func (c *CloneLog) Replay(after uint64, fn func(pos uint64, r Record) error) error {
	if err := c.read(); err != nil {
		return err
	}
	defer c.db.release()
	snap := c.db.pdb.NewSnapshot()
	defer snap.Close()
	hdr, err := c.db.readHeader(snap, c.prefix)
	if err != nil {
		return fmt.Errorf("clone %s: %w", c.id, err)
	}
	if after < hdr.prunedThrough {
		return fmt.Errorf("%w: clone %s: replay after %d, but the log is pruned through %d (restore the snapshot at %d first)",
			ErrPruned, c.id, after, hdr.prunedThrough, hdr.snapPos)
	}
	if after == math.MaxUint64 {
		return nil
	}
	_, hi := logBounds(c.prefix)
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: logKey(c.prefix, after+1), UpperBound: hi})
	if err != nil {
		return err
	}
	for valid := it.First(); valid; valid = it.Next() {
		pos, rec, err := c.decodeLogEntry(it)
		if err != nil {
			return errors.Join(err, it.Close())
		}
		if err := fn(pos, rec); err != nil {
			_ = it.Close()
			return err
		}
	}
	return errors.Join(it.Error(), it.Close())
}

func (c *CloneLog) decodeLogEntry(it *pebble.Iterator) (uint64, Record, error) {
	p, err := decodeKey(it.Key())
	if err != nil {
		return 0, Record{}, fmt.Errorf("clone %s: %w", c.id, err)
	}
	if p.kind != kindLog || p.clone != c.id {
		return 0, Record{}, corruptf("clone %s: unexpected key %q in log range", c.id, it.Key())
	}
	v, err := it.ValueAndErr()
	if err != nil {
		return 0, Record{}, err
	}
	rec, err := decodeRecord(v)
	if err != nil {
		return 0, Record{}, fmt.Errorf("clone %s pos %d: %w", c.id, p.pos, err)
	}
	rec.Data = bytes.Clone(rec.Data)
	return p.pos, rec, nil
}

// Range calls fn, in seq order, for every stored record of origin with
// fromSeq <= Seq <= toSeq (pass math.MaxUint64 for "to the end"): what a peer
// catching up on origin is sent. fn owns the Record it is given; an error
// from fn stops Range and is returned as is.
//
// Seqs that were never stored are simply absent. If some seqs of the range
// were stored but pruned, Range still serves the rest and then returns an
// error wrapping ErrPruned: this clone can no longer fill that gap from its
// log (the requester needs a snapshot or another peer).
func (c *CloneLog) Range(origin string, fromSeq, toSeq uint64, fn func(Record) error) error {
	if !validID(origin) {
		return fmt.Errorf("%w: origin of %d bytes", ErrInvalidID, len(origin))
	}
	if err := c.read(); err != nil {
		return err
	}
	defer c.db.release()
	fromSeq = max(fromSeq, 1)
	if fromSeq > toSeq {
		return nil
	}
	snap := c.db.pdb.NewSnapshot()
	defer snap.Close()
	st, err := c.db.readOriginState(snap, c.prefix, origin)
	if err != nil {
		return fmt.Errorf("clone %s origin %s: %w", c.id, origin, err)
	}
	var pruned error
	if st.prunedOverlaps(fromSeq, toSeq) {
		pruned = fmt.Errorf("%w: clone %s origin %s: seqs in [%d, %d] were pruned (%v)", ErrPruned, c.id, origin, fromSeq, toSeq, st.pruned)
	}
	upper := append(indexKey(c.prefix, origin, toSeq), 0)
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: indexKey(c.prefix, origin, fromSeq), UpperBound: upper})
	if err != nil {
		return err
	}
	for valid := it.First(); valid; valid = it.Next() {
		rec, err := c.rangeEntry(snap, it, origin)
		if err != nil {
			return errors.Join(err, it.Close())
		}
		if err := fn(rec); err != nil {
			_ = it.Close()
			return err
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return err
	}
	return pruned
}

// rangeEntry follows one index entry to its log record and cross-checks it.
func (c *CloneLog) rangeEntry(r pebble.Reader, it *pebble.Iterator, origin string) (Record, error) {
	p, err := decodeKey(it.Key())
	if err != nil {
		return Record{}, fmt.Errorf("clone %s: %w", c.id, err)
	}
	if p.kind != kindIndex || p.clone != c.id || p.origin != origin {
		return Record{}, corruptf("clone %s: unexpected key %q in index range of %s", c.id, it.Key(), origin)
	}
	v, err := it.ValueAndErr()
	if err != nil {
		return Record{}, err
	}
	pos, err := decodePos(v)
	if err != nil {
		return Record{}, fmt.Errorf("clone %s origin %s seq %d: %w", c.id, origin, p.seq, err)
	}
	lv, closer, err := c.db.get(r, logKey(c.prefix, pos))
	if errors.Is(err, pebble.ErrNotFound) {
		return Record{}, corruptf("clone %s: index entry %s/%d points to missing position %d", c.id, origin, p.seq, pos)
	}
	if err != nil {
		return Record{}, err
	}
	defer closer.Close()
	rec, err := decodeRecord(lv)
	if err != nil {
		return Record{}, fmt.Errorf("clone %s pos %d: %w", c.id, pos, err)
	}
	if rec.Origin != origin || rec.Seq != p.seq {
		return Record{}, corruptf("clone %s: index entry %s/%d points to position %d holding %s/%d", c.id, origin, p.seq, pos, rec.Origin, rec.Seq)
	}
	rec.Data = bytes.Clone(rec.Data)
	return rec, nil
}

// MaxSeq returns the highest seq ever stored for origin in this clone, 0 if
// none. Prune does not lower it; Drop resets it.
func (c *CloneLog) MaxSeq(origin string) (uint64, error) {
	if !validID(origin) {
		return 0, fmt.Errorf("%w: origin of %d bytes", ErrInvalidID, len(origin))
	}
	if err := c.read(); err != nil {
		return 0, err
	}
	defer c.db.release()
	st, err := c.db.readOriginState(c.db.pdb, c.prefix, origin)
	if err != nil {
		return 0, fmt.Errorf("clone %s origin %s: %w", c.id, origin, err)
	}
	return st.maxSeq, nil
}

// LastPos returns the position of the last record appended (0 if none);
// after a Prune of everything it is the prune point.
func (c *CloneLog) LastPos() (uint64, error) {
	if err := c.read(); err != nil {
		return 0, err
	}
	defer c.db.release()
	snap := c.db.pdb.NewSnapshot()
	defer snap.Close()
	cc, err := c.db.loadHead(snap, c.prefix)
	if err != nil {
		return 0, fmt.Errorf("clone %s: %w", c.id, err)
	}
	return cc.head, nil
}

// read checks the handle and registers a read with the DB; on success the
// caller must call c.db.release().
func (c *CloneLog) read() error {
	if c.err != nil {
		return c.err
	}
	return c.db.acquire()
}
