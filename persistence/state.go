package persistence

import (
	"bytes"
	"errors"
	"fmt"
	"iter"
	"maps"
	"math"
	"slices"

	"github.com/cockroachdb/pebble/v2"
)

// A clone's state is its snapshot stored one key per item (format 4): the
// tagState range holds, under the state's epoch, each item's encoded state
// under (collection, item key), and kindState holds the header the caller
// gave it (its replica-wide part). Unlike a chain, it can be read an item at
// a time: a restarting clone can look up the items its log replay touches
// and load the rest later (point reads filtered by the bloom filters, see
// pebble.go), and a state transfer can stream it from a consistent view of
// the database. Writing it:
//
//   - a delta (StateBegin with delta) holds the items changed since the
//     stored state, each as its new state or as absent. Its items are
//     staged as they come, chunk by chunk, under its generation in the
//     snapshot range (0x02, unused by a state otherwise); StateEnd's batch
//     makes the state "the epoch plus the staged delta" (header basePos <
//     snapPos). The committer then applies the staged items to the epoch,
//     Options.StateApplyPerGroup per group commit (absent ones first, so an
//     item that went away and came back in one delta ends present), and
//     the batch of the last ones deletes the staging and sets basePos =
//     snapPos. Until then every reader overlays the staged delta on the
//     epoch (State), so a partial application is never seen; after a crash
//     the committer resumes it from the staging (loadClone). A crash before
//     the end leaves the previous state whole (the next begin deletes what
//     was staged). Applying a 10,000-item delta in its end's one batch held
//     every clone's writes for ~18 ms (BenchmarkStateDeltaEnd: skiplist
//     inserts); in steps no group carries more than a few hundred. A delta
//     is bounded by the ops applied since the previous capture (one item
//     per op at most), not by the state.
//   - a full one (StateBegin without delta) writes its items as they come
//     under a new epoch (the header's + 1; the begin deletes what a crash
//     left under it and after), and its end makes that epoch the clone's
//     state, deleting every older epoch and any chain, in one batch.
//
// A clone's snapshot is a chain or a state, never both: a full state's end
// deletes the chain, and a chain's full end (or SaveSnapshot) deletes the
// state. Prune and the covered position work the same for both.

// StateItem is one item of a state: its collection, its key within it, and
// its encoded state. A nil Value in a delta means the item is absent: the
// stored state forgets it.
type StateItem struct {
	Collection string
	Key        []byte
	Value      []byte
}

// encStateItem is a StateItem encoded by the caller's goroutine: the key
// suffix after the epoch, and the value (nil: delete).
type encStateItem struct {
	suffix []byte
	val    []byte
}

// stateInProgress is a state being written between its begin and its end.
type stateInProgress struct {
	gen   uint64 // the log position it covers
	delta bool
	skip  bool   // nothing logged since the stored state: it stays, nothing of this one is written
	epoch uint32 // full: the new epoch; delta: the stored epoch it applies to
	hdr   []byte // the state header value, written by the end
	// a delta's items, staged as they came (chunk next is the next one),
	// applied after the end (deletionsFirst).
	staged []encStateItem
	next   uint32
	// overwritten: since the begin, another snapshot replaced the stored
	// one (what a delta builds on) or deleted this one's epoch.
	overwritten bool
}

// pendingApply is an ended delta being applied to the stored epoch: its
// items in the order they are applied (deletionsFirst), of which the first
// done are.
type pendingApply struct {
	gen   uint64
	items []encStateItem
	done  int
}

// deletionsFirst orders a delta's items for applying them in that order:
// the absent ones first, so that an item that went away and came back in
// one delta ends present.
func deletionsFirst(items []encStateItem) []encStateItem {
	out := make([]encStateItem, 0, len(items))
	for _, it := range items {
		if it.val == nil {
			out = append(out, it)
		}
	}
	for _, it := range items {
		if it.val != nil {
			out = append(out, it)
		}
	}
	return out
}

func (sp *stateInProgress) stale(clone string) error {
	if !sp.overwritten {
		return nil
	}
	return fmt.Errorf("%w: clone %s: another snapshot replaced the stored one while the state at %d was being written",
		ErrStaleSnapshot, clone, sp.gen)
}

// StateBegin starts writing the clone's state, covering every record
// submitted through w before it (done gets that log position): a delta on
// top of the stored state if delta (a clone whose stored snapshot is not a
// state gets ErrNoSnapshot, and w breaks), else a full one replacing it.
// header is the state's replica-wide part, the caller's bytes, stored by the
// end. StateItems queues the items, StateEnd makes the whole the clone's
// state; until the end is durable, the previous snapshot stays the clone's.
// If nothing was logged since a stored state, it stays and the new one is
// dropped (done still gets the position). Each call counts 1 toward Pending.
func (w *Writer) StateBegin(header []byte, delta bool, done func(pos uint64, err error)) error {
	if w.c.err != nil {
		return w.fail(w.c.err)
	}
	v := encodeSnapshot(0, header) // position and checksum set by the committer
	return w.submit(&op{kind: opStateBegin, clone: w.c, val: v, delta: delta, nrec: 1, size: len(v)}, done)
}

// StateItems queues items of the state begun by StateBegin. Their bytes are
// copied before StateItems returns. In a full state each item must appear
// once; in a delta an item may appear twice, absent and present (it went
// away and came back): it ends present. A collection name must be 1 to
// MaxIDLen bytes (ErrInvalidID, nothing queued, w breaks).
func (w *Writer) StateItems(items []StateItem, done func(pos uint64, err error)) error {
	if w.c.err != nil {
		return w.fail(w.c.err)
	}
	size := 0
	for _, it := range items {
		if !validID(it.Collection) {
			return w.fail(fmt.Errorf("%w: state item collection %q", ErrInvalidID, it.Collection))
		}
		size += 2 + len(it.Collection) + len(it.Key)
		if it.Value != nil {
			size += stateItemHeaderLen + len(it.Value)
		}
	}
	buf := make([]byte, 0, size)
	enc := make([]encStateItem, len(items))
	for i, it := range items {
		n := len(buf)
		buf = append(buf, byte(len(it.Collection)>>8), byte(len(it.Collection)))
		buf = append(buf, it.Collection...)
		buf = append(buf, it.Key...)
		enc[i].suffix = buf[n:len(buf):len(buf)]
		if it.Value != nil {
			n = len(buf)
			buf = encodeStateItem(buf, it.Value)
			enc[i].val = buf[n:len(buf):len(buf)]
		}
	}
	return w.submit(&op{kind: opStateItems, clone: w.c, items: enc, nrec: 1, size: size}, done)
}

// StateEnd queues the end of the state begun by StateBegin: once durable,
// it is the clone's snapshot (see the design note above). done gets its
// position. If another snapshot replaced the stored one since the begin,
// the end fails with ErrStaleSnapshot and nothing more of this one is
// written.
func (w *Writer) StateEnd(done func(pos uint64, err error)) error {
	if w.c.err != nil {
		return w.fail(w.c.err)
	}
	return w.submit(&op{kind: opStateEnd, clone: w.c, nrec: 1}, done)
}

// stateStep applies one step of a state write (see the design note).
func (gs *group) stateStep(c *CloneLog, o *op) (result, error) {
	cc, err := gs.clone(c)
	if err != nil {
		return result{err: err}, nil
	}
	switch o.kind {
	case opStateBegin:
		if o.delta && !(cc.hdr.hasSnap && cc.hdr.state) {
			return result{err: fmt.Errorf("%w: clone %s: a delta state needs a stored state to build on", ErrNoSnapshot, c.id)}, nil
		}
		gen := cc.head
		if cc.hdr.hasSnap && cc.hdr.state && gen <= cc.hdr.snapPos {
			cc.state = &stateInProgress{gen: cc.hdr.snapPos, delta: o.delta, skip: true}
			return result{pos: cc.hdr.snapPos}, nil
		}
		setSnapshotPos(o.val, gen)
		sp := &stateInProgress{gen: gen, delta: o.delta, epoch: cc.hdr.epoch, hdr: o.val}
		if o.delta {
			// On top of the whole stored state: finish applying the
			// previous delta (normally done long since).
			if err := gs.applyPending(cc, math.MaxInt); err != nil {
				return result{}, err
			}
		}
		// What a crash left staged (nothing is pending now, or it is a
		// full state, which leaves the pending delta alone).
		if err := gs.clearStaging(cc); err != nil {
			return result{}, err
		}
		if !o.delta {
			if cc.hdr.epoch == math.MaxUint32 {
				return result{err: fmt.Errorf("%w: clone %s: state epochs exhausted", ErrCorrupt, c.id)}, nil
			}
			sp.epoch = cc.hdr.epoch + 1
			lo, hi := stateEpochBounds(c.prefix, sp.epoch, 0)
			if err := gs.b.DeleteRange(lo, hi, nil); err != nil {
				return result{}, err
			}
		}
		cc.state = sp
		return result{pos: gen}, nil

	case opStateItems:
		sp := cc.state
		if sp == nil {
			return result{err: fmt.Errorf("%w: clone %s: state items without a state begun", ErrNoSnapshot, c.id)}, nil
		}
		if sp.skip {
			return result{pos: sp.gen}, nil
		}
		if err := sp.stale(c.id); err != nil {
			return result{err: err}, nil
		}
		if sp.delta {
			if len(o.items) == 0 {
				return result{pos: sp.gen}, nil
			}
			v := encodeSnapshot(sp.gen, encodeStaged(o.items))
			if err := gs.b.Set(snapChunkKey(c.prefix, sp.gen, sp.next), v, nil); err != nil {
				return result{}, err
			}
			sp.next++
			sp.staged = append(sp.staged, o.items...)
			return result{pos: sp.gen}, nil
		}
		if err := gs.putStateItems(c.prefix, sp.epoch, o.items); err != nil {
			return result{}, err
		}
		return result{pos: sp.gen}, nil

	default: // opStateEnd
		sp := cc.state
		if sp == nil {
			return result{err: fmt.Errorf("%w: clone %s: state end without a state begun", ErrNoSnapshot, c.id)}, nil
		}
		cc.state = nil
		if sp.skip {
			return result{pos: sp.gen}, nil
		}
		if err := sp.stale(c.id); err != nil {
			return result{err: err}, nil
		}
		base := sp.gen
		if sp.delta {
			if sp.next > 0 {
				// Staged: the state is now the epoch plus the staging,
				// applied a few hundred items a group from here on.
				base = cc.hdr.snapPos
				cc.apply = &pendingApply{gen: sp.gen, items: deletionsFirst(sp.staged)}
				gs.db.applying[c.id] = true
			}
		} else {
			cc.apply = nil // its epoch goes now
			// The new epoch replaces every older one and any chain.
			lo, hi := stateEpochBounds(c.prefix, 0, sp.epoch)
			if err := gs.b.DeleteRange(lo, hi, nil); err != nil {
				return result{}, err
			}
			lo, hi = snapBounds(c.prefix)
			if err := gs.b.DeleteRange(lo, hi, nil); err != nil {
				return result{}, err
			}
			if cc.snap != nil {
				cc.snap.overwritten = true // a chain in progress: its chunks are gone
			}
		}
		if err := gs.b.Set(stateHeaderKey(c.prefix), sp.hdr, nil); err != nil {
			return result{}, err
		}
		cc.hdr.hasSnap, cc.hdr.state, cc.hdr.epoch = true, true, sp.epoch
		cc.hdr.snapPos, cc.hdr.basePos, cc.hdrDirty = sp.gen, base, true
		return result{pos: sp.gen}, nil
	}
}

// clearStaging deletes what the snapshot range holds for cc besides the
// pending delta's staging, if any.
func (gs *group) clearStaging(cc *cloneCache) error {
	lo, hi := snapBounds(cc.prefix)
	if a := cc.apply; a != nil {
		if err := gs.b.DeleteRange(lo, snapChunkKey(cc.prefix, a.gen, 0), nil); err != nil {
			return err
		}
		if a.gen == math.MaxUint64 {
			return nil
		}
		lo = snapChunkKey(cc.prefix, a.gen+1, 0)
	}
	return gs.b.DeleteRange(lo, hi, nil)
}

// applyPending applies up to n more items of cc's pending delta to its
// epoch, and once all are, deletes the staging and makes the header say
// so, all in this group's batch.
func (gs *group) applyPending(cc *cloneCache, n int) error {
	a := cc.apply
	if a == nil {
		return nil
	}
	gs.touched[cc.id] = cc // a failed group drops the cache; loadClone resumes
	end := len(a.items)
	if n < end-a.done { // (a.done+n may overflow: n is MaxInt for "all")
		end = a.done + n
	}
	if err := gs.putStateItems(cc.prefix, cc.hdr.epoch, a.items[a.done:end]); err != nil {
		return err
	}
	a.done = end
	if a.done < len(a.items) {
		return nil
	}
	lo := snapChunkKey(cc.prefix, a.gen, 0)
	_, hi := snapBounds(cc.prefix)
	if a.gen < math.MaxUint64 {
		hi = snapChunkKey(cc.prefix, a.gen+1, 0)
	}
	if err := gs.b.DeleteRange(lo, hi, nil); err != nil {
		return err
	}
	cc.apply = nil
	cc.hdr.basePos, cc.hdrDirty = cc.hdr.snapPos, true
	return nil
}

// applySteps advances every pending delta by Options.StateApplyPerGroup
// items in this group.
func (gs *group) applySteps() error {
	for id := range gs.db.applying {
		cc := gs.db.cache[id]
		if cc == nil || cc.apply == nil {
			delete(gs.db.applying, id) // dropped or done: loadClone re-registers it
			continue
		}
		n := gs.db.opts.StateApplyPerGroup
		if n == 0 {
			n = DefaultStateApplyPerGroup
		}
		if err := gs.applyPending(cc, n); err != nil {
			return err
		}
		if cc.apply == nil {
			delete(gs.db.applying, id)
		}
	}
	return nil
}

// loadStaged reads the staged delta of generation gen (what loadClone
// resumes and State overlays): its items, deletionsFirst.
func loadStaged(r pebble.Reader, prefix []byte, gen uint64) ([]encStateItem, error) {
	_, hi := snapBounds(prefix)
	if gen < math.MaxUint64 {
		hi = snapChunkKey(prefix, gen+1, 0)
	}
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: snapChunkKey(prefix, gen, 0), UpperBound: hi})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var all []encStateItem
	n := 0
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, err
		}
		at, data, err := decodeSnapshot(v)
		if err == nil && at != gen {
			err = corruptf("staged delta %d holds a chunk of %d", gen, at)
		}
		var items []encStateItem
		if err == nil {
			items, err = decodeStaged(bytes.Clone(data))
		}
		if err != nil {
			return nil, err
		}
		all = append(all, items...)
		n++
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, corruptf("the header names a staged delta at %d, which has no chunk", gen)
	}
	return deletionsFirst(all), nil
}

// putStateItems writes items under epoch, in order: a nil value deletes.
func (gs *group) putStateItems(prefix []byte, epoch uint32, items []encStateItem) error {
	pfx := statePrefix(prefix)
	var key []byte
	for _, it := range items {
		key = stateItemKey(key[:0], pfx, epoch, it.suffix)
		var err error
		if it.val == nil {
			err = gs.b.Delete(key, nil)
		} else {
			err = gs.b.Set(key, it.val, nil)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// replaceStateByChain is called when a chain becomes the clone's snapshot
// (a full chain end, SaveSnapshot): the stored state goes in the same batch
// (a pending delta's staging with the chain range), and a state in progress
// can no longer end.
func (gs *group) replaceStateByChain(cc *cloneCache) error {
	if cc.state != nil {
		cc.state.overwritten = true
	}
	cc.apply = nil
	if !cc.hdr.state {
		return nil
	}
	lo, hi := stateBounds(cc.prefix)
	if err := gs.b.DeleteRange(lo, hi, nil); err != nil {
		return err
	}
	if err := gs.b.Delete(stateHeaderKey(cc.prefix), nil); err != nil {
		return err
	}
	cc.hdr.state = false
	return nil
}

// State is a read view of a clone's stored state (see the design note
// above) at one point: later writes do not change what it reads. Close it:
// until then it pins that view (pebble keeps the files it needs) and holds
// the DB open (Close waits for it). Its methods are safe for concurrent use
// with writes, but one State is read by one goroutine at a time.
type State struct {
	c      *CloneLog
	view   *pebble.Snapshot
	pos    uint64
	header []byte
	epoch  uint32
	closed bool
	// overlay: a delta staged and not fully applied to the epoch yet, by
	// key suffix (a nil value: absent), and its suffixes in order.
	overlay     map[string][]byte
	overlayKeys []string
}

// OpenState returns a read view of the clone's stored state, and false if
// its stored snapshot is not a state (none, or a chain: SnapshotChain).
func (c *CloneLog) OpenState() (*State, bool, error) {
	if err := c.read(); err != nil {
		return nil, false, err
	}
	view := c.db.pdb.NewSnapshot()
	s, ok, err := c.openState(view)
	if err != nil || !ok {
		_ = view.Close()
		c.db.release()
		return nil, false, err
	}
	return s, true, nil
}

func (c *CloneLog) openState(view *pebble.Snapshot) (*State, bool, error) {
	hdr, err := c.db.readHeader(view, c.prefix)
	if err != nil {
		return nil, false, fmt.Errorf("clone %s: %w", c.id, err)
	}
	if !hdr.hasSnap || !hdr.state {
		return nil, false, nil
	}
	v, closer, err := c.db.get(view, stateHeaderKey(c.prefix))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, corruptf("clone %s: the header names a state at %d, which has no state header", c.id, hdr.snapPos)
	}
	if err != nil {
		return nil, false, err
	}
	defer closer.Close()
	pos, data, err := decodeSnapshot(v)
	if err != nil {
		return nil, false, fmt.Errorf("clone %s: state header: %w", c.id, err)
	}
	if pos != hdr.snapPos {
		return nil, false, corruptf("clone %s: the header names a state at %d, its state header says %d", c.id, hdr.snapPos, pos)
	}
	st := &State{c: c, view: view, pos: pos, header: bytes.Clone(data), epoch: hdr.epoch}
	if hdr.basePos < hdr.snapPos {
		items, err := loadStaged(view, c.prefix, hdr.snapPos)
		if err != nil {
			return nil, false, fmt.Errorf("clone %s: %w", c.id, err)
		}
		st.overlay = make(map[string][]byte, len(items))
		for _, x := range items { // deletionsFirst: a later state wins
			st.overlay[string(x.suffix)] = x.val
		}
		st.overlayKeys = slices.Sorted(maps.Keys(st.overlay))
	}
	return st, true, nil
}

// Pos is the log position the state covers: replay the log after it.
func (s *State) Pos() uint64 { return s.pos }

// Header is the header given to the StateBegin that wrote it (the caller's).
func (s *State) Header() []byte { return s.header }

// Get returns a copy of one item's encoded state, and false if the state
// has no such item. One point read (Stats.PointReads).
func (s *State) Get(collection string, key []byte) ([]byte, bool, error) {
	if s.closed {
		return nil, false, ErrClosed
	}
	if !validID(collection) {
		return nil, false, fmt.Errorf("%w: collection %q", ErrInvalidID, collection)
	}
	suffix := stateItemSuffix(collection, key)
	if v, staged := s.overlay[string(suffix)]; staged {
		if v == nil {
			return nil, false, nil
		}
		data, err := decodeStateItem(v)
		if err != nil {
			return nil, false, fmt.Errorf("clone %s: staged item %q of %s: %w", s.c.id, key, collection, err)
		}
		return bytes.Clone(data), true, nil
	}
	k := stateItemKey(nil, statePrefix(s.c.prefix), s.epoch, suffix)
	v, closer, err := s.c.db.get(s.view, k)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer closer.Close()
	data, err := decodeStateItem(v)
	if err != nil {
		return nil, false, fmt.Errorf("clone %s: item %q of %s: %w", s.c.id, key, collection, err)
	}
	return bytes.Clone(data), true, nil
}

// Items yields every item of the state in key order (by collection, then
// key), one sequential scan. The StateItem's Key and Value are valid only
// until the iteration's next step (they are the database's); Collection is
// a string, reused while it does not change.
func (s *State) Items() iter.Seq2[StateItem, error] {
	return func(yield func(StateItem, error) bool) {
		if s.closed {
			yield(StateItem{}, ErrClosed)
			return
		}
		lo, hi := stateEpochBounds(s.c.prefix, s.epoch, s.epoch+1)
		if s.epoch == math.MaxUint32 {
			lo, hi = stateEpochBounds(s.c.prefix, s.epoch, 0)
		}
		it, err := s.view.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
		if err != nil {
			yield(StateItem{}, err)
			return
		}
		defer it.Close()
		skip := len(lo)
		var coll string
		// emit yields one item given its key suffix and value (the staged
		// delta's or the epoch's).
		emit := func(suffix, v []byte) bool {
			m := int(suffix[0])<<8 | int(suffix[1])
			if m == 0 || m > MaxIDLen || len(suffix) < 2+m {
				return yield(StateItem{}, corruptf("clone %s: state key suffix %q: bad collection length %d", s.c.id, suffix, m))
			}
			if name := suffix[2 : 2+m]; string(name) != coll {
				coll = string(name)
			}
			data, err := decodeStateItem(v)
			if err != nil {
				yield(StateItem{}, fmt.Errorf("clone %s: state key suffix %q: %w", s.c.id, suffix, err))
				return false
			}
			return yield(StateItem{Collection: coll, Key: suffix[2+m:], Value: data}, nil)
		}
		// The staged delta's items, merged in key order: a staged key
		// replaces (or, absent, hides) the epoch's.
		staged := s.overlayKeys
		flush := func(upTo []byte) bool { // the staged items before upTo (nil: all)
			for len(staged) > 0 && (upTo == nil || staged[0] < string(upTo)) {
				k := staged[0]
				staged = staged[1:]
				if v := s.overlay[k]; v != nil && !emit([]byte(k), v) {
					return false
				}
			}
			return true
		}
		for valid := it.First(); valid; valid = it.Next() {
			k := it.Key()
			suffix := k[skip:]
			if len(suffix) < 2 {
				yield(StateItem{}, corruptf("clone %s: state key %q: short", s.c.id, k))
				return
			}
			if !flush(suffix) {
				return
			}
			if _, ok := s.overlay[string(suffix)]; ok {
				continue // the staged delta's (emitted, or absent)
			}
			v, err := it.ValueAndErr()
			if err != nil {
				yield(StateItem{}, err)
				return
			}
			if !emit(suffix, v) {
				return
			}
		}
		if err := it.Error(); err != nil {
			yield(StateItem{}, err)
			return
		}
		flush(nil)
	}
}

// Close releases the view. Idempotent.
func (s *State) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.view.Close()
	s.c.db.release()
	return err
}
