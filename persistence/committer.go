package persistence

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"
)

type opKind uint8

const (
	opAppend opKind = iota
	opSnapshot
	opPrune
	opDrop
	opPutMeta
	opDeleteMeta
	opSnapBegin // a chunked snapshot (full, or a delta if op.delta): its chunk 0, at the log's head
	opSnapChunk // its next chunk
	opSnapEnd   // it becomes the clone's snapshot
	opStateBegin
	opStateItems
	opStateEnd
)

// Op states. An op moves from queued to exactly one of taken (by the
// committer) or cancelled (by its caller's context); the CAS decides which
// side wins, so a cancelled op is never written and a taken one is never
// reported as "not written".
const (
	opQueued uint32 = iota
	opTaken
	opCancelled
)

// op is one queued write.
type op struct {
	kind  opKind
	clone *CloneLog
	recs  []encRecord    // opAppend
	items []encStateItem // opStateItems
	key   []byte         // opPutMeta, opDeleteMeta: full pebble key
	val   []byte         // opSnapshot: encoded value; opPutMeta: raw value
	pos   uint64         // opSnapshot: covered position; opPrune: keepAfter
	nrec  int            // weight against MaxBatchRecords
	size  int            // weight against MaxBatchBytes
	state atomic.Uint32
	done  chan result // Append & co.: the waiting caller

	w      *Writer             // writes through a Writer
	cb     func(uint64, error) // Writer: completion callback
	atHead bool                // opSnapshot through a Writer: covers the log as it stands
	delta  bool                // opSnapBegin: a delta snapshot, continuing the stored chain
}

// encRecord is a record encoded by the caller's goroutine, so that the
// committer only copies bytes into the batch and the caller's Data slice is
// never read after Append returns.
type encRecord struct {
	origin string
	seq    uint64
	idx    []byte // index key
	val    []byte // log value
}

type result struct {
	pos uint64
	err error
}

// barrier ops read the database to build their batch, so they must not share
// a batch with earlier writes the read would not see: they commit alone.
func (o *op) barrier() bool { return o.kind == opPrune || o.kind == opDrop }

func (db *DB) signal() {
	select {
	case db.wake <- struct{}{}:
	default:
	}
}

// submit queues o and waits for its result or ctx.
func (db *DB) submit(ctx context.Context, o *op) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	o.done = make(chan result, 1)
	if err := db.enqueue(o); err != nil {
		return 0, err
	}
	select {
	case r := <-o.done:
		return r.pos, r.err
	case <-ctx.Done():
		if o.state.CompareAndSwap(opQueued, opCancelled) {
			return 0, ctx.Err() // the committer will skip it: nothing written
		}
		select {
		case r := <-o.done:
			return r.pos, r.err
		default:
			return 0, fmt.Errorf("%w: %w", ErrInDoubt, ctx.Err())
		}
	}
}

// enqueue puts o at the end of the committer's queue.
func (db *DB) enqueue(o *op) error {
	db.beforeQueue(o)
	db.mu.Lock()
	if db.closing {
		db.mu.Unlock()
		return ErrClosed
	}
	db.queue = append(db.queue, o)
	db.mu.Unlock()
	db.signal()
	return nil
}

// beforeQueue runs the test hook, if any, for o.
func (db *DB) beforeQueue(o *op) {
	h := db.opts.Hooks
	if h == nil || h.BeforeQueue == nil {
		return
	}
	w := WriteInfo{Clone: o.clone.id, Kind: WriteOther}
	switch o.kind {
	case opAppend:
		w.Kind = WriteAppend
		for _, r := range o.recs {
			w.Records = append(w.Records, RecordID{Origin: r.origin, Seq: r.seq})
		}
	case opSnapshot, opSnapBegin, opSnapChunk, opSnapEnd, opStateBegin, opStateItems, opStateEnd:
		w.Kind = WriteSnapshot
	case opPrune:
		w.Kind = WritePrune
	}
	h.BeforeQueue(w)
}

// walNudgeDelays are, under SyncInterval, the idle times after the last
// group commit at which the committer nudges pebble's WAL flusher (see
// nudgeWAL).
var walNudgeDelays = []time.Duration{time.Millisecond, 10 * time.Millisecond, 100 * time.Millisecond}

func (db *DB) runCommitter() {
	defer close(db.committerDone)
	// Under SyncInterval, nudges counts the nudges sent since the last
	// group commit; len(walNudgeDelays) means none is due.
	nudges := len(walNudgeDelays)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		g, closing := db.take()
		if len(g) == 0 {
			if closing {
				return // a delta still being applied resumes at the next open
			}
			if len(db.applying) > 0 {
				if h := db.testHookCommit.Load(); h != nil {
					(*h)()
				}
				db.commitGroup(nil) // the queue is idle: apply staged deltas
				continue
			}
			if nudges >= len(walNudgeDelays) {
				<-db.wake
				continue
			}
			if timer == nil {
				timer = time.NewTimer(walNudgeDelays[nudges])
			} else {
				timer.Reset(walNudgeDelays[nudges])
			}
			select {
			case <-db.wake:
				timer.Stop()
			case <-timer.C:
				db.nudgeWAL()
				nudges++
			}
			continue
		}
		if h := db.testHookCommit.Load(); h != nil {
			(*h)()
		}
		if h := db.opts.Hooks; h != nil && h.BeforeCommit != nil {
			h.BeforeCommit()
		}
		db.commitGroup(g)
		if db.opts.Sync == SyncInterval {
			nudges = 0
		}
	}
}

// nudgeWAL works around a lost wake-up in pebble v2.1.7's WAL flusher under
// WALMinSyncInterval (see the package doc, SyncInterval). While fsyncs are
// rate-limited, the flusher's guard against missed signals sees an empty sync
// queue, so a commit that signals it between its "any work?" check and its
// wait leaves the commit's bytes in process memory until something signals
// again. Any signal that arrives while the flusher waits wakes it, and it
// then writes everything buffered; so a few signals spread over the first
// 100 ms of idleness bound how long an acknowledged group can stay out of
// the OS. The signal is a tiny LogData record (ignored on replay) applied
// like a group: with a sync request, without waiting for the fsync.
func (db *DB) nudgeWAL() {
	b := db.pdb.NewBatch()
	if err := b.LogData([]byte{0}, nil); err != nil {
		_ = b.Close()
		return
	}
	if err := db.pdb.ApplyNoSyncWait(b, pebble.Sync); err != nil {
		_ = b.Close()
		db.log.Warn("WAL nudge failed", zap.Error(err))
		return
	}
	db.st.walNudges.Add(1)
	db.reap <- reaped{b: b, nudge: true}
}

// take removes the next group from the queue: queued ops in order, up to
// the batch limits (the first op is always taken), a barrier op alone.
func (db *DB) take() ([]*op, bool) {
	db.mu.Lock()
	defer db.mu.Unlock()
	var g []*op
	recs, size := 0, 0
	i := 0
	for ; i < len(db.queue); i++ {
		o := db.queue[i]
		if o.state.Load() == opCancelled {
			continue
		}
		if len(g) > 0 && (o.barrier() || recs+o.nrec > db.opts.MaxBatchRecords || size+o.size > db.opts.MaxBatchBytes) {
			break
		}
		if !o.state.CompareAndSwap(opQueued, opTaken) {
			continue // cancelled just now
		}
		g = append(g, o)
		recs += o.nrec
		size += o.size
		if o.barrier() {
			i++
			break
		}
	}
	n := copy(db.queue, db.queue[i:])
	clear(db.queue[n:])
	db.queue = db.queue[:n]
	return g, db.closing
}

// cloneCache is the committer's view of one clone: what it needs to assign
// positions and detect duplicates without reading the disk (see dedup.go).
// It always equals the committed state between groups; a group that fails
// drops the caches it touched, which are then reloaded from disk.
type cloneCache struct {
	id       string
	prefix   []byte
	hdr      header
	hdrDirty bool
	head     uint64 // last assigned log position
	// origins holds every origin of the clone (loaded all at once), so an
	// origin missing here has no state on disk either.
	origins map[string]*originCache
	nRuns   int // position runs over all origins, capped by maxPosRuns
	// snap is the chunked snapshot being written (SnapshotBegin to
	// SnapshotEnd), if any.
	snap *snapInProgress
	// state is the state being written (StateBegin to StateEnd), if any;
	// apply the ended delta being applied to the stored epoch.
	state *stateInProgress
	apply *pendingApply
}

// snapInProgress is a chunked snapshot between its begin and its end: its
// generation (the log position it covers), its next chunk number and
// whether it is a delta. skip: the log has not moved since the stored
// snapshot, which stays; the new one's chunks are not written (they would
// overwrite the stored one's). overwritten: a single-value snapshot
// (opSnapshot) replaced the whole snapshot range since the begin (see
// replaced).
type snapInProgress struct {
	gen         uint64
	next        uint32
	skip        bool
	delta       bool
	overwritten bool
}

// replaced returns an error if a SaveSnapshot (or Writer.Snapshot) replaced
// the stored chain since sp's begin: its range delete took the chunks sp had
// written (and it may have taken sp's generation), and a delta's predecessor
// is gone. sp's later chunks are then not written and its end fails, so
// nothing of sp is left and no header ever names it.
func (sp *snapInProgress) replaced(clone string, h header) error {
	if !sp.overwritten {
		return nil
	}
	return fmt.Errorf("%w: clone %s: a snapshot at %d replaced the stored one while the snapshot at %d was being written",
		ErrStaleSnapshot, clone, h.snapPos, sp.gen)
}

type originCache struct {
	st    originState // persisted: maxSeq, pruned seqs
	dirty bool
	live  seqSet  // seqs of the records in the log (after the prune point)
	runs  posRuns // positions of (some of) the live records
}

// group is the state of one group commit being built.
type group struct {
	db      *DB
	b       *pebble.Batch
	touched map[string]*cloneCache
	dropped []string
	records uint64
	dups    uint64
	appends uint64
}

func (db *DB) commitGroup(ops []*op) {
	gs := &group{
		db:      db,
		b:       db.pdb.NewBatch(),
		touched: make(map[string]*cloneCache),
	}
	res := make([]result, len(ops))
	var fatal error
	for i, o := range ops {
		if res[i], fatal = gs.apply(o); fatal != nil {
			break
		}
		if res[i].err != nil && o.w != nil {
			// Break the Writer now, so its later writes in this group
			// fail too and leave no hole behind the failed one.
			o.w.fail(res[i].err)
		}
	}
	if fatal == nil {
		fatal = gs.applySteps()
	}
	if fatal == nil {
		fatal = gs.finish()
	}
	handedOff := false
	if fatal == nil && !gs.b.Empty() {
		handedOff, fatal = db.write(gs.b)
	}
	if !handedOff {
		_ = gs.b.Close()
	}
	for _, id := range gs.dropped {
		delete(db.cache, id)
	}
	if fatal != nil {
		for id := range gs.touched {
			delete(db.cache, id)
		}
		db.log.Error("group commit failed", zap.Int("ops", len(ops)), zap.Error(fatal))
		for i := range res {
			res[i] = result{err: fatal}
		}
	} else {
		db.st.records.Add(gs.records)
		db.st.dups.Add(gs.dups)
		db.st.appends.Add(gs.appends)
	}
	if len(ops) > 0 { // not a group that only applied staged deltas
		db.st.commits.Add(1)
		db.st.ops.Add(uint64(len(ops)))
	}
	for i, o := range ops {
		if o.w != nil {
			o.w.complete(o, res[i])
		} else {
			o.done <- res[i]
		}
	}
}

// write commits b under the sync policy. handedOff reports that b now
// belongs to the reaper.
func (db *DB) write(b *pebble.Batch) (handedOff bool, err error) {
	size := uint64(b.Len())
	start := time.Now()
	switch db.opts.Sync {
	case SyncAlways:
		err = db.pdb.Apply(b, pebble.Sync)
	case SyncInterval:
		// Returns once the batch is in the memtable and queued to the WAL
		// writer, which writes it to the file at once and fsyncs it when
		// WALMinSyncInterval allows; the reaper waits for that fsync.
		if err = db.pdb.ApplyNoSyncWait(b, pebble.Sync); err == nil {
			db.st.pendingSyncs.Add(1)
			db.reap <- reaped{b: b}
			handedOff = true
		}
	case SyncNone:
		err = db.pdb.Apply(b, pebble.NoSync)
	}
	if err != nil {
		return handedOff, fmt.Errorf("persistence: commit: %w", err)
	}
	lat := time.Since(start)
	db.st.lastLatency.Store(int64(lat))
	db.st.totalLatency.Add(int64(lat))
	if lat > SlowCommit {
		db.st.slowCommits.Add(1)
		db.warnSlowCommit(lat, size)
	}
	if int64(lat) > db.st.maxLatency.Load() {
		db.st.maxLatency.Store(int64(lat)) // the committer is the only writer
	}
	db.st.bytes.Add(size)
	if db.opts.Sync != SyncNone {
		db.st.syncedCommits.Add(1)
	}
	return handedOff, nil
}

// warnSlowCommit logs a commit that took longer than SlowCommit, at most
// one a second, with what pebble was doing meanwhile: flushes and
// compactions in progress, and how long ago its latest WAL file was
// created (less than the commit took: the commit waited for a memtable
// rotation). Every update waiting for durability waited that long.
func (db *DB) warnSlowCommit(lat time.Duration, size uint64) {
	act := db.activity
	now := time.Now().UnixNano()
	last := act.lastWarn.Load()
	if now-last < int64(time.Second) || !act.lastWarn.CompareAndSwap(last, now) {
		return
	}
	fields := []zap.Field{
		zap.Duration("took", lat),
		zap.Uint64("batch_bytes", size),
		zap.Stringer("sync", db.opts.Sync),
		zap.Int64("flushes_in_progress", max(act.flushes.Load(), 0)),
		zap.Int64("compactions_in_progress", max(act.compactions.Load(), 0)),
	}
	if w := act.walCreated.Load(); w != 0 {
		fields = append(fields, zap.Duration("wal_created_ago", time.Duration(now-w)))
	}
	db.log.Warn("slow group commit", fields...)
}

// runReaper waits, under SyncInterval, for each acknowledged batch's fsync
// and then releases it (pebble requires SyncWait before Close).
func (db *DB) runReaper() {
	defer close(db.reaperDone)
	for r := range db.reap {
		if err := r.b.SyncWait(); err != nil {
			db.log.Error("WAL fsync failed; acknowledged writes may be lost on power loss", zap.Error(err))
		}
		_ = r.b.Close()
		if !r.nudge {
			db.st.pendingSyncs.Add(-1)
		}
	}
}

// reaped is a batch handed to the reaper: an acknowledged group, or a WAL
// nudge (not counted in PendingSyncs).
type reaped struct {
	b     *pebble.Batch
	nudge bool
}

// clone returns the committer cache of c, loading it on first use.
func (gs *group) clone(c *CloneLog) (*cloneCache, error) {
	cc, ok := gs.db.cache[c.id]
	if !ok {
		var err error
		if cc, err = gs.db.loadClone(gs.db.pdb, c.prefix); err != nil {
			return nil, fmt.Errorf("clone %s: %w", c.id, err)
		}
		cc.id = c.id
		if h := cc.hdr; h.hasSnap && h.state && h.basePos < h.snapPos {
			// A delta state ended and not fully applied: resume it.
			a := &pendingApply{gen: h.snapPos}
			if a.items, err = loadStaged(gs.db.pdb, c.prefix, h.snapPos); err != nil {
				return nil, fmt.Errorf("clone %s: %w", c.id, err)
			}
			cc.apply = a
			gs.db.applying[c.id] = true
		}
		gs.db.cache[c.id] = cc
	}
	gs.touched[c.id] = cc
	return cc, nil
}

// origin returns the cache of one origin of cc. Every origin with a state on
// disk was loaded with the clone, so a missing one is new: nothing to read.
func (gs *group) origin(cc *cloneCache, origin string) *originCache {
	oc, ok := cc.origins[origin]
	if !ok {
		oc = &originCache{}
		cc.origins[origin] = oc
	}
	return oc
}

// apply adds o to the batch. A non-nil fatal error aborts the whole group
// (the batch may hold part of o); an error in the result fails o alone and
// guarantees o left no trace in the batch or the caches.
func (gs *group) apply(o *op) (r result, fatal error) {
	c := o.clone
	if o.w != nil {
		if err := o.w.Err(); err != nil {
			return result{err: err}, nil // behind a failed write: never written
		}
	}
	switch o.kind {
	case opAppend:
		cc, err := gs.clone(c)
		if err != nil {
			return result{err: err}, nil
		}
		var last uint64
		for i, rec := range o.recs {
			pos, err := gs.appendRecord(cc, rec, i == len(o.recs)-1)
			if err != nil {
				return result{}, fmt.Errorf("clone %s: %w", c.id, err)
			}
			last = pos
		}
		gs.appends++
		return result{pos: last}, nil

	case opSnapshot:
		cc, err := gs.clone(c)
		if err != nil {
			return result{err: err}, nil
		}
		if o.atHead {
			o.pos = cc.head
			setSnapshotPos(o.val, o.pos)
		}
		if o.pos > cc.head {
			return result{err: fmt.Errorf("%w: clone %s: snapshot at %d, last log position %d", ErrPosOutOfRange, c.id, o.pos, cc.head)}, nil
		}
		if cc.hdr.hasSnap && o.pos < cc.hdr.snapPos {
			return result{err: fmt.Errorf("%w: clone %s: snapshot at %d, stored one covers %d", ErrStaleSnapshot, c.id, o.pos, cc.hdr.snapPos)}, nil
		}
		// A full snapshot, the whole new chain: the previous chain's
		// chunks (or state) go in the same batch (see keys.go).
		if err := gs.replaceStateByChain(cc); err != nil {
			return result{}, err
		}
		lo, hi := snapBounds(c.prefix)
		if err := gs.b.DeleteRange(lo, hi, nil); err != nil {
			return result{}, err
		}
		if err := gs.b.Set(snapChunkKey(c.prefix, o.pos, 0), o.val, nil); err != nil {
			return result{}, err
		}
		cc.hdr.hasSnap, cc.hdr.snapPos, cc.hdr.basePos, cc.hdrDirty = true, o.pos, o.pos, true
		if cc.snap != nil {
			cc.snap.overwritten = true // its chunks so far are gone
		}
		return result{pos: o.pos}, nil

	case opSnapBegin, opSnapChunk, opSnapEnd:
		return gs.snapshotChunk(c, o)

	case opStateBegin, opStateItems, opStateEnd:
		return gs.stateStep(c, o)

	case opPutMeta:
		return result{}, gs.b.Set(o.key, o.val, nil)

	case opDeleteMeta:
		return result{}, gs.b.Delete(o.key, nil)

	case opPrune:
		return gs.prune(c, o.pos)

	case opDrop:
		gs.dropped = append(gs.dropped, c.id)
		lo, hi := snapBounds(c.prefix)
		if err := gs.b.DeleteRange(lo, hi, nil); err != nil {
			return result{}, err
		}
		lo, hi = stateBounds(c.prefix)
		if err := gs.b.DeleteRange(lo, hi, nil); err != nil {
			return result{}, err
		}
		return result{}, gs.b.DeleteRange(c.prefix, cloneEnd(c.prefix), nil)
	}
	return result{}, fmt.Errorf("persistence: unknown op kind %d", o.kind)
}

// appendRecord stores rec unless it is already stored (in the log, earlier in
// this group, or pruned), and returns its position. For a record skipped
// because Prune removed it, the position is the clone's prune point: the
// snapshot covering it covers the record. The position of a skipped record
// is only computed when needPos (the last record of an Append, whose position
// the caller gets); otherwise 0 is returned for it.
//
// Whether rec is stored is answered from memory (see dedup.go): no read.
// The only read left is the index Get of a duplicate's position when its
// position run was evicted from memory, and only when needPos.
func (gs *group) appendRecord(cc *cloneCache, rec encRecord, needPos bool) (uint64, error) {
	oc := gs.origin(cc, rec.origin)
	switch {
	case oc.live.contains(rec.seq):
		gs.dups++
		if !needPos {
			return 0, nil
		}
		pos, ok := oc.runs.lookup(rec.seq)
		if !ok {
			// Evicted run: the record was committed by an earlier group
			// (this group's runs are never evicted before it ends).
			v, closer, err := gs.db.get(gs.db.pdb, rec.idx)
			if err != nil {
				if errors.Is(err, pebble.ErrNotFound) {
					err = corruptf("origin %s seq %d: in the log by the committer's cache, but no index entry", rec.origin, rec.seq)
				}
				return 0, fmt.Errorf("origin %s seq %d: %w", rec.origin, rec.seq, err)
			}
			pos, err = decodePos(v)
			_ = closer.Close()
			if err != nil {
				return 0, fmt.Errorf("origin %s seq %d: %w", rec.origin, rec.seq, err)
			}
		}
		return pos, nil
	case oc.st.prunedContains(rec.seq):
		gs.dups++
		return cc.hdr.prunedThrough, nil
	}
	cc.head++
	pos := cc.head
	if err := gs.b.Set(logKey(cc.prefix, pos), rec.val, nil); err != nil {
		return 0, err
	}
	if err := gs.b.Set(rec.idx, encodePos(pos), nil); err != nil {
		return 0, err
	}
	oc.st.maxSeq = max(oc.st.maxSeq, rec.seq)
	oc.dirty = true
	oc.live.add(rec.seq)
	if oc.runs.add(rec.seq, pos) {
		cc.nRuns++
	}
	gs.records++
	return pos, nil
}

// prune deletes the log records with pos <= keepAfter and their index
// entries, and records their seqs in the origins' pruned sets. It runs alone
// in its group (a barrier), so reading the database sees everything before it.
func (gs *group) prune(c *CloneLog, keepAfter uint64) (result, error) {
	cc, err := gs.clone(c)
	if err != nil {
		return result{err: err}, nil
	}
	keep := min(keepAfter, cc.head)
	if keep <= cc.hdr.prunedThrough {
		return result{pos: cc.hdr.prunedThrough}, nil
	}
	if !cc.hdr.hasSnap || keep > cc.hdr.snapPos {
		return result{err: fmt.Errorf("%w: clone %s: prune through %d, snapshot covers %d (has snapshot: %v)",
			ErrNotCovered, c.id, keep, cc.hdr.snapPos, cc.hdr.hasSnap)}, nil
	}
	lo := logKey(c.prefix, cc.hdr.prunedThrough+1)
	_, hi := logBounds(c.prefix)
	if keep < math.MaxUint64 {
		hi = logKey(c.prefix, keep+1)
	}
	it, err := gs.db.pdb.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return result{}, err
	}
	seqs := make(map[string][]uint64)
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return result{}, errors.Join(err, it.Close())
		}
		rec, err := decodeRecord(v)
		if err != nil {
			return result{}, errors.Join(fmt.Errorf("clone %s: prune: %w", c.id, err), it.Close())
		}
		if err := gs.b.Delete(indexKey(c.prefix, rec.Origin, rec.Seq), nil); err != nil {
			return result{}, errors.Join(err, it.Close())
		}
		seqs[rec.Origin] = append(seqs[rec.Origin], rec.Seq)
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return result{}, err
	}
	if err := gs.b.DeleteRange(lo, hi, nil); err != nil {
		return result{}, err
	}
	for origin, ss := range seqs {
		oc := gs.origin(cc, origin)
		slices.Sort(ss)
		ss = slices.Compact(ss)
		oc.st.addPruned(ss)
		for i := 0; i < len(ss); { // the pruned seqs leave the log
			j := i
			for j+1 < len(ss) && ss[j+1] == ss[j]+1 {
				j++
			}
			oc.live.remove(ss[i], ss[j])
			i = j + 1
		}
		oc.dirty = true
	}
	for _, oc := range cc.origins {
		cc.nRuns -= oc.runs.dropBefore(keep + 1)
	}
	cc.hdr.prunedThrough, cc.hdrDirty = keep, true
	return result{pos: keep}, nil
}

// finish writes the bookkeeping (origin states, headers) the group changed,
// and trims the position runs of the clones it touched.
func (gs *group) finish() error {
	for _, cc := range gs.touched {
		cc.evictRuns()
		for origin, oc := range cc.origins {
			if !oc.dirty {
				continue
			}
			if err := gs.b.Set(originKey(cc.prefix, origin), encodeOriginState(oc.st), nil); err != nil {
				return err
			}
			oc.dirty = false
		}
		if cc.hdrDirty {
			if err := gs.b.Set(headerKey(cc.prefix), encodeHeader(cc.hdr), nil); err != nil {
				return err
			}
			cc.hdrDirty = false
		}
	}
	return nil
}

// loadHead reads the header and last log position of a clone (what LastPos
// needs), without its origins.
func (db *DB) loadHead(r pebble.Reader, prefix []byte) (*cloneCache, error) {
	hdr, err := db.readHeader(r, prefix)
	if err != nil {
		return nil, err
	}
	last, err := lastLogPos(r, prefix)
	if err != nil {
		return nil, err
	}
	return &cloneCache{
		prefix:  prefix,
		hdr:     hdr,
		head:    max(last, hdr.prunedThrough),
		origins: make(map[string]*originCache),
	}, nil
}

// loadClone reads the committed state of a clone for the committer: its
// head, every origin's state (one range scan) and, from one scan of the log
// after the prune point, which seqs are live and where (see dedup.go). The
// cost is proportional to the log kept, not to the clone's state.
func (db *DB) loadClone(r pebble.Reader, prefix []byte) (*cloneCache, error) {
	cc, err := db.loadHead(r, prefix)
	if err != nil {
		return nil, err
	}
	lo, hi := originBounds(prefix)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, err
	}
	for valid := it.First(); valid; valid = it.Next() {
		p, err := decodeKey(it.Key())
		if err == nil && p.kind != kindOrigin {
			err = corruptf("unexpected key %q in the origin range", it.Key())
		}
		var v []byte
		if err == nil {
			v, err = it.ValueAndErr()
		}
		var st originState
		if err == nil {
			st, err = decodeOriginState(v)
		}
		if err != nil {
			return nil, errors.Join(err, it.Close())
		}
		cc.origins[p.origin] = &originCache{st: st}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, err
	}

	lo, hi = logBounds(prefix)
	if cc.hdr.prunedThrough < math.MaxUint64 {
		lo = logKey(prefix, cc.hdr.prunedThrough+1)
	}
	if it, err = r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi}); err != nil {
		return nil, err
	}
	for valid := it.First(); valid; valid = it.Next() {
		p, err := decodeKey(it.Key())
		var v []byte
		if err == nil {
			v, err = it.ValueAndErr()
		}
		var rec Record
		if err == nil {
			rec, err = decodeRecord(v)
		}
		if err != nil {
			return nil, errors.Join(fmt.Errorf("log position %d: %w", p.pos, err), it.Close())
		}
		oc := cc.origins[rec.Origin]
		if oc == nil || rec.Seq > oc.st.maxSeq {
			return nil, errors.Join(corruptf("log position %d holds %s/%d beyond its origin's max seq", p.pos, rec.Origin, rec.Seq), it.Close())
		}
		oc.live.add(rec.Seq)
		if oc.runs.add(rec.Seq, p.pos) {
			cc.nRuns++
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, err
	}
	cc.evictRuns()
	return cc, nil
}

func (db *DB) readHeader(r pebble.Reader, prefix []byte) (header, error) {
	v, closer, err := db.get(r, headerKey(prefix))
	if errors.Is(err, pebble.ErrNotFound) {
		return header{}, nil
	}
	if err != nil {
		return header{}, err
	}
	defer closer.Close()
	return decodeHeader(v)
}

func (db *DB) readOriginState(r pebble.Reader, prefix []byte, origin string) (originState, error) {
	v, closer, err := db.get(r, originKey(prefix, origin))
	if errors.Is(err, pebble.ErrNotFound) {
		return originState{}, nil
	}
	if err != nil {
		return originState{}, err
	}
	defer closer.Close()
	return decodeOriginState(v)
}

// lastLogPos returns the position of the clone's last log record, 0 if none.
func lastLogPos(r pebble.Reader, prefix []byte) (uint64, error) {
	lo, hi := logBounds(prefix)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return 0, err
	}
	var pos uint64
	if it.Last() {
		p, err := decodeKey(it.Key())
		if err != nil {
			return 0, errors.Join(err, it.Close())
		}
		pos = p.pos
	}
	return pos, errors.Join(it.Error(), it.Close())
}

// snapshotChunk applies one step of a chunked snapshot, full or delta (see
// keys.go for the chain). The begin places the snapshot at the log's head
// (it covers every record submitted before it through the same Writer) and
// writes chunk 0 under that generation, after deleting what earlier
// snapshots left beyond the stored chain (the chunks of one cut short by a
// crash: every generation > snapPos). Chunks follow under the same
// generation, in order, in later groups if they come later. Only the end
// makes the generation part of the clone's snapshot: a full one replaces the
// whole chain (its generations below the new one go in the same batch), a
// delta extends it. Until then a crash leaves the previous chain whole and
// in place.
func (gs *group) snapshotChunk(c *CloneLog, o *op) (result, error) {
	cc, err := gs.clone(c)
	if err != nil {
		return result{err: err}, nil
	}
	lo, hi := snapBounds(c.prefix)
	switch o.kind {
	case opSnapBegin:
		if o.delta && (!cc.hdr.hasSnap || cc.hdr.state) {
			return result{err: fmt.Errorf("%w: clone %s: a delta snapshot needs a stored chain to build on", ErrNoSnapshot, c.id)}, nil
		}
		gen := cc.head
		if cc.hdr.hasSnap && gen <= cc.hdr.snapPos {
			// Nothing logged since the stored snapshot: it already covers
			// this point (and its generation is this one).
			cc.snap = &snapInProgress{gen: cc.hdr.snapPos, skip: true}
			return result{pos: cc.hdr.snapPos}, nil
		}
		if cc.hdr.hasSnap {
			// Keep the chain [basePos, snapPos]; a full begin also clears
			// below it (nothing should be there).
			if !o.delta {
				if err := gs.b.DeleteRange(lo, snapChunkKey(c.prefix, cc.hdr.basePos, 0), nil); err != nil {
					return result{}, err
				}
			}
			if err := gs.b.DeleteRange(snapChunkKey(c.prefix, cc.hdr.snapPos+1, 0), hi, nil); err != nil {
				return result{}, err
			}
		} else if err := gs.b.DeleteRange(lo, hi, nil); err != nil {
			return result{}, err
		}
		setSnapshotPos(o.val, gen)
		if err := gs.b.Set(snapChunkKey(c.prefix, gen, 0), o.val, nil); err != nil {
			return result{}, err
		}
		cc.snap = &snapInProgress{gen: gen, next: 1, delta: o.delta}
		return result{pos: gen}, nil

	case opSnapChunk:
		sp := cc.snap
		if sp == nil {
			return result{err: fmt.Errorf("%w: clone %s: snapshot chunk without a snapshot begun", ErrNoSnapshot, c.id)}, nil
		}
		if sp.skip {
			return result{pos: sp.gen}, nil
		}
		if err := sp.replaced(c.id, cc.hdr); err != nil {
			return result{err: err}, nil
		}
		setSnapshotPos(o.val, sp.gen)
		if err := gs.b.Set(snapChunkKey(c.prefix, sp.gen, sp.next), o.val, nil); err != nil {
			return result{}, err
		}
		sp.next++
		return result{pos: sp.gen}, nil

	default: // opSnapEnd
		sp := cc.snap
		if sp == nil {
			return result{err: fmt.Errorf("%w: clone %s: snapshot end without a snapshot begun", ErrNoSnapshot, c.id)}, nil
		}
		cc.snap = nil
		if sp.skip {
			return result{pos: sp.gen}, nil
		}
		if err := sp.replaced(c.id, cc.hdr); err != nil {
			return result{err: err}, nil
		}
		if sp.delta {
			cc.hdr.snapPos, cc.hdrDirty = sp.gen, true
			return result{pos: sp.gen}, nil
		}
		if err := gs.b.DeleteRange(lo, snapChunkKey(c.prefix, sp.gen, 0), nil); err != nil {
			return result{}, err
		}
		if err := gs.replaceStateByChain(cc); err != nil {
			return result{}, err
		}
		cc.hdr.hasSnap, cc.hdr.snapPos, cc.hdr.basePos, cc.hdrDirty = true, sp.gen, sp.gen, true
		return result{pos: sp.gen}, nil
	}
}
