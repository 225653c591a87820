package persistence

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"sync"
	"sync/atomic"
)

// Writer is one clone incarnation's ordered stream of writes: appends,
// snapshots and prunes reach the database in the order they were submitted,
// and their completions are reported in that order. It is what makes these
// two crash outcomes impossible:
//
//   - a clone's op seq n+1 durable (and so multicast and acknowledged) while
//     seq n, issued before it, is not: after a crash seq n would exist
//     nowhere, and every peer's stable point would wait for it forever;
//   - a snapshot durable while an op it contains is not: after a crash the
//     clone's state would hold an op that no log holds and no peer can get.
//
// Submission never blocks and starts no goroutine: the write is queued to
// the node's committer, which keeps submission order within the queue
// (so within each Writer) while it still groups the writes of many clones
// into one pebble batch and one fsync. The done callback runs on the
// committer goroutine once the write is durable under the DB's SyncPolicy;
// it must be quick and must not block (send a message, fill a buffered
// channel).
//
// A Writer breaks at its first failure: that write and every write submitted
// after it fail (done gets an error wrapping ErrWriterBroken and the cause;
// nothing of them is stored), so the log never has a hole. The owner is
// expected to drop its in-memory state, reload it from the log, and open a
// new Writer (after Wait on the broken one).
//
// The queue is bounded by the owner: Pending counts the records submitted
// and not yet completed, and Full reports when it has reached the limit the
// Writer was made with. Submission itself does not refuse a write when full
// (a clone cannot un-apply an op it has already applied); the owner refuses
// new work before it produces more writes (the scheduler answers new updates
// 503 overloaded at admission).
//
// The methods are safe for concurrent use, but the order of writes submitted
// concurrently is whichever the Writer sees first; a clone submits from its
// one scheduler goroutine.
type Writer struct {
	c       *CloneLog
	limit   int64
	pending atomic.Int64 // records (other writes count 1) submitted, not completed
	wg      sync.WaitGroup
	broken  atomic.Pointer[error]
}

// NewWriter opens an ordered write stream for the clone. maxPending is the
// number of pending records at which Full reports true (>= 1).
func (c *CloneLog) NewWriter(maxPending int) *Writer {
	return &Writer{c: c, limit: int64(max(maxPending, 1))}
}

// Pending returns how many records (a snapshot or prune counts 1) were
// submitted and have not completed yet.
func (w *Writer) Pending() int { return int(w.pending.Load()) }

// Full reports whether Pending has reached the Writer's limit.
func (w *Writer) Full() bool { return w.pending.Load() >= w.limit }

// Err returns the error that broke the Writer, or nil.
func (w *Writer) Err() error {
	if p := w.broken.Load(); p != nil {
		return *p
	}
	return nil
}

// Wait waits until every submitted write has completed (its done callback
// has returned).
func (w *Writer) Wait() { w.wg.Wait() }

// Append queues recs after everything submitted before through w. done gets
// the log position of the last record (see CloneLog.Append for positions and
// duplicate records) or an error. A non-nil return means the records were
// not queued and done will not be called; w is then broken.
func (w *Writer) Append(recs []Record, done func(pos uint64, err error)) error {
	o, err := w.c.appendOp(recs)
	if err != nil {
		return w.fail(err)
	}
	return w.submit(o, done)
}

// Snapshot queues data as the clone's snapshot, covering every record
// submitted through w before it (the log position is assigned when the
// committer reaches it, and given to done). Replaying the records after that
// position on top of the snapshot gives the state that follows it. A non-nil
// return means nothing was queued and done will not be called.
func (w *Writer) Snapshot(data []byte, done func(pos uint64, err error)) error {
	if w.c.err != nil {
		return w.fail(w.c.err)
	}
	v := encodeSnapshot(0, data) // position and checksum set by the committer
	return w.submit(&op{kind: opSnapshot, clone: w.c, val: v, atHead: true, nrec: 1, size: len(v)}, done)
}

// SnapshotBegin starts a chunked full snapshot: header is its chunk 0, and
// it covers every record submitted through w before it (done gets that log
// position). SnapshotChunk queues the next chunks and SnapshotEnd makes the
// whole the clone's snapshot, replacing the stored chain (base and deltas,
// deleted in the end's batch); until the end is durable, the previous chain
// stays the clone's (a crash in between loses only the partial one). Ops may
// be appended between the chunks: they follow the snapshot. If nothing was
// logged since the stored snapshot, that one stays and the new one's chunks
// are dropped (done still gets the position). Each chunk and each call count
// 1 toward Pending.
func (w *Writer) SnapshotBegin(header []byte, done func(pos uint64, err error)) error {
	return w.snapOp(opSnapBegin, false, header, done)
}

// SnapshotDeltaBegin starts a chunked delta snapshot: like SnapshotBegin
// (same SnapshotChunk and SnapshotEnd calls follow, same position, same
// "nothing logged since" case), but its chunks are meant to hold only what
// changed since the stored snapshot, and its end appends it to the stored
// chain instead of replacing it: the clone's snapshot is then the base and
// every delta in order (CloneLog.SnapshotChain), covering the delta's
// position. The bytes are the caller's; the store does not look inside. A
// clone with no stored snapshot has nothing to build on: done gets an error
// wrapping ErrNoSnapshot (and w breaks).
func (w *Writer) SnapshotDeltaBegin(header []byte, done func(pos uint64, err error)) error {
	return w.snapOp(opSnapBegin, true, header, done)
}

// SnapshotChunk queues the next chunk of the snapshot begun by SnapshotBegin
// or SnapshotDeltaBegin.
func (w *Writer) SnapshotChunk(data []byte, done func(pos uint64, err error)) error {
	return w.snapOp(opSnapChunk, false, data, done)
}

// SnapshotEnd queues the end of the snapshot: once durable, a full
// snapshot's chunks are the clone's snapshot and the previous chain is gone;
// a delta's are the last link of the chain. done gets its position. If a
// SaveSnapshot or Snapshot replaced the stored snapshot since the begin
// (deleting the chunks written so far), the next chunk or the end fails
// with ErrStaleSnapshot and nothing more of this snapshot is written.
func (w *Writer) SnapshotEnd(done func(pos uint64, err error)) error {
	return w.snapOp(opSnapEnd, false, nil, done)
}

func (w *Writer) snapOp(kind opKind, delta bool, data []byte, done func(uint64, error)) error {
	if w.c.err != nil {
		return w.fail(w.c.err)
	}
	var v []byte
	if kind != opSnapEnd {
		v = encodeSnapshot(0, data) // position and checksum set by the committer
	}
	return w.submit(&op{kind: kind, clone: w.c, val: v, delta: delta, nrec: 1, size: len(v)}, done)
}

// Prune queues a prune of the records with pos <= keepAfter (see
// CloneLog.Prune). done gets keepAfter as clamped, or an error.
func (w *Writer) Prune(keepAfter uint64, done func(pos uint64, err error)) error {
	if w.c.err != nil {
		return w.fail(w.c.err)
	}
	return w.submit(&op{kind: opPrune, clone: w.c, pos: keepAfter, nrec: 1}, done)
}

func (w *Writer) submit(o *op, done func(uint64, error)) error {
	if err := w.Err(); err != nil {
		return err
	}
	o.w = w
	o.cb = done
	w.pending.Add(int64(o.nrec))
	w.wg.Add(1)
	if err := w.c.db.enqueue(o); err != nil {
		w.pending.Add(-int64(o.nrec))
		w.wg.Done()
		return w.fail(err)
	}
	return nil
}

// fail breaks w with err (if not broken already) and returns the error that
// broke it, wrapped in ErrWriterBroken.
func (w *Writer) fail(err error) error {
	e := fmt.Errorf("%w: clone %s: %w", ErrWriterBroken, w.c.id, err)
	if errors.Is(err, ErrWriterBroken) {
		e = err
	}
	w.broken.CompareAndSwap(nil, &e)
	return w.Err()
}

// complete reports o's result to its callback; the committer calls it in
// queue order.
func (w *Writer) complete(o *op, r result) {
	if r.err != nil {
		r.err = w.fail(r.err)
	}
	w.pending.Add(-int64(o.nrec))
	defer w.wg.Done()
	if o.cb != nil {
		o.cb(r.pos, r.err)
	}
}

// setSnapshotPos fills in the covered position of a snapshot value made by
// encodeSnapshot(0, data), and its checksum.
func setSnapshotPos(v []byte, pos uint64) {
	binary.BigEndian.PutUint64(v[5:13], pos)
	binary.BigEndian.PutUint32(v[1:5], crc32.Checksum(v[5:], castagnoli))
}
