package persistence

import (
	"bytes"
	"errors"
	"fmt"
	"iter"
	"math"

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
//     stored state, each as its new state or as absent. The committer keeps
//     its items in memory until StateEnd, whose batch applies them to the
//     stored epoch (absent ones deleted first, so an item that went away and
//     came back in one delta ends present) with the new header: a crash
//     before the end leaves the previous state whole, and nothing of the
//     delta was written. A delta is bounded by the ops applied since the
//     previous capture (one item per op at most), not by the state.
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
	// a delta's items, applied by the end: deletions, then the rest.
	dels, sets []encStateItem
	// overwritten: since the begin, another snapshot replaced the stored
	// one (what a delta builds on) or deleted this one's epoch.
	overwritten bool
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
			for _, it := range o.items {
				if it.val == nil {
					sp.dels = append(sp.dels, it)
				} else {
					sp.sets = append(sp.sets, it)
				}
			}
			return result{pos: sp.gen}, nil
		}
		if err := gs.putStateItems(c.prefix, sp.epoch, nil, o.items); err != nil {
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
		if sp.delta {
			if err := gs.putStateItems(c.prefix, sp.epoch, sp.dels, sp.sets); err != nil {
				return result{}, err
			}
		} else {
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
		cc.hdr.snapPos, cc.hdr.basePos, cc.hdrDirty = sp.gen, sp.gen, true
		return result{pos: sp.gen}, nil
	}
}

// putStateItems deletes dels and then sets sets under epoch.
func (gs *group) putStateItems(prefix []byte, epoch uint32, dels, sets []encStateItem) error {
	pfx := statePrefix(prefix)
	var key []byte
	for _, it := range dels {
		key = stateItemKey(key[:0], pfx, epoch, it.suffix)
		if err := gs.b.Delete(key, nil); err != nil {
			return err
		}
	}
	for _, it := range sets {
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
// (a full chain end, SaveSnapshot): the stored state goes in the same batch,
// and a state in progress can no longer end.
func (gs *group) replaceStateByChain(cc *cloneCache) error {
	if cc.state != nil {
		cc.state.overwritten = true
	}
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
	return &State{c: c, view: view, pos: pos, header: bytes.Clone(data), epoch: hdr.epoch}, true, nil
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
	k := stateItemKey(nil, statePrefix(s.c.prefix), s.epoch, stateItemSuffix(collection, key))
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
		for valid := it.First(); valid; valid = it.Next() {
			k := it.Key()
			rest := k[skip:]
			if len(rest) < 2 {
				yield(StateItem{}, corruptf("clone %s: state key %q: short", s.c.id, k))
				return
			}
			m := int(rest[0])<<8 | int(rest[1])
			if m == 0 || m > MaxIDLen || len(rest) < 2+m {
				yield(StateItem{}, corruptf("clone %s: state key %q: bad collection length %d", s.c.id, k, m))
				return
			}
			if name := rest[2 : 2+m]; string(name) != coll {
				coll = string(name)
			}
			v, err := it.ValueAndErr()
			if err != nil {
				yield(StateItem{}, err)
				return
			}
			data, err := decodeStateItem(v)
			if err != nil {
				yield(StateItem{}, fmt.Errorf("clone %s: state key %q: %w", s.c.id, k, err))
				return
			}
			if !yield(StateItem{Collection: coll, Key: rest[2+m:], Value: data}, nil) {
				return
			}
		}
		if err := it.Error(); err != nil {
			yield(StateItem{}, err)
		}
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
