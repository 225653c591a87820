package collections

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"

	"github.com/tempestrt/tempest/proto/tempestpb"
)

// Snapshot returns the whole replica state: every item's base value and
// tentative ops, what is known of every origin's stream, the folded point,
// the clock, own seq and applied count. Restoring it into a fresh store
// with the same collections gives a replica indistinguishable from this
// one (same values, histories, digests, version vector, stable point).
// Items are sorted by (collection, key) and origins by name, so equal
// states give equal snapshots. The snapshot shares ops and byte slices
// with the store: marshal it, do not modify it.
func (s *Store) Snapshot() *tempestpb.StoreSnapshot {
	h := s.header()
	snap := &tempestpb.StoreSnapshot{
		Service:       h.Service,
		Replica:       h.Replica,
		Origins:       h.Origins,
		StableWallMs:  h.StableWallMs,
		StableLogical: h.StableLogical,
		OwnSeq:        h.OwnSeq,
		ClockWallMs:   h.ClockWallMs,
		ClockLogical:  h.ClockLogical,
		Applied:       h.Applied,
	}
	for _, name := range s.Collections() {
		c := s.colls[name]
		for _, k := range c.keys() {
			if is := c.stateOf(k); is != nil {
				snap.Items = append(snap.Items, is)
			}
		}
	}
	return snap
}

// header captures the replica-wide part of a snapshot: clock, counters,
// folded point and every origin's state (origins sorted by name). It costs
// O(origins + their out-of-order seqs), never O(items), and shares nothing
// mutable with the store.
func (s *Store) header() *tempestpb.SnapshotHeader {
	clock := s.hlc.Last()
	h := &tempestpb.SnapshotHeader{
		Service:       s.cfg.Service,
		Replica:       s.cfg.Replica,
		StableWallMs:  s.foldedPoint.WallMs,
		StableLogical: s.foldedPoint.Logical,
		OwnSeq:        s.ownSeq,
		ClockWallMs:   clock.WallMs,
		ClockLogical:  clock.Logical,
		Applied:       s.applied,
	}
	h.CollectionItems = make(map[string]uint64, len(s.colls))
	h.Lazy = true
	h.CollectionLive = make(map[string]uint64, len(s.colls))
	h.CollectionDigests = make(map[string]uint64, len(s.colls))
	for name, c := range s.colls {
		live, _ := c.unloaded()
		h.CollectionItems[name] = uint64(c.len() + int(live))
		h.CollectionLive[name] = uint64(c.count())
		h.CollectionDigests[name] = c.digestNow()
		if c.cold == nil {
			if it := c.items[""]; it != nil && it.state() != nil {
				h.Eager = append(h.Eager, &tempestpb.ItemRef{Collection: name})
			}
		}
	}
	// Items with pending ops: the heap holds each once. Sorted, so that
	// the header does not depend on the heap's order.
	first := len(h.Eager)
	for _, it := range s.heap {
		if it.c.cold != nil {
			h.Eager = append(h.Eager, &tempestpb.ItemRef{Collection: it.c.name, Item: []byte(it.key)})
		}
	}
	slices.SortFunc(h.Eager[first:], func(a, b *tempestpb.ItemRef) int {
		if c := cmp.Compare(a.Collection, b.Collection); c != 0 {
			return c
		}
		return bytes.Compare(a.Item, b.Item)
	})
	for _, name := range sortedKeys(s.origins) {
		o := s.origins[name]
		beyond := make([]uint64, 0, len(o.beyond))
		for seq := range o.beyond {
			beyond = append(beyond, seq)
		}
		slices.Sort(beyond)
		h.Origins = append(h.Origins, &tempestpb.OriginState{
			Origin:         name,
			Contiguous:     o.contiguous,
			Beyond:         beyond,
			HorizonWallMs:  o.horizon.WallMs,
			HorizonLogical: o.horizon.Logical,
		})
	}
	return h
}

// headerOf is the header part of a whole snapshot.
func headerOf(snap *tempestpb.StoreSnapshot) *tempestpb.SnapshotHeader {
	return &tempestpb.SnapshotHeader{
		Service:       snap.GetService(),
		Replica:       snap.GetReplica(),
		Origins:       snap.GetOrigins(),
		StableWallMs:  snap.GetStableWallMs(),
		StableLogical: snap.GetStableLogical(),
		OwnSeq:        snap.GetOwnSeq(),
		ClockWallMs:   snap.GetClockWallMs(),
		ClockLogical:  snap.GetClockLogical(),
		Applied:       snap.GetApplied(),
	}
}

// stateOf is the state (see item.state) of the item named key, hot or
// cold; nil if there is none.
func (c *collection) stateOf(key string) *tempestpb.ItemState {
	if it := c.items[key]; it != nil {
		return it.state()
	}
	if c.cold != nil {
		if slot, ok := c.cold.find([]byte(key)); ok {
			return c.coldState(c.cold.rec(slot))
		}
	}
	return nil
}

// coldState is a cold item's state: its value, no ops. It shares the key
// and value bytes with the arena, which never modifies them.
func (c *collection) coldState(r *coldRec) *tempestpb.ItemState {
	return setColdState(&tempestpb.ItemState{}, &tempestpb.ItemValue{}, c.name, c.cold.key(r), c.cold.data(r))
}

// setColdState makes is, with v as its base, the state of a cold item of
// collection named name: key and value, no ops.
func setColdState(is *tempestpb.ItemState, v *tempestpb.ItemValue, name string, key, data []byte) *tempestpb.ItemState {
	is.Reset()
	v.Reset()
	v.Exists, v.Data = true, data
	is.Collection, is.Item, is.Base = name, key, v
	return is
}

// state is the item as a snapshot holds it (base value and tentative ops),
// or nil for an item a snapshot leaves out (zero base, no tentative ops).
// It shares ops and byte slices with the store, which never modifies them,
// and owns its slices (the ops slice and the list's elements slice are
// copies), so later changes to the item do not show through it.
func (it *item) state() *tempestpb.ItemState {
	if len(it.pending()) == 0 {
		if it.cur.zero() {
			return nil
		}
		return &tempestpb.ItemState{Collection: it.c.name, Item: []byte(it.key), Base: it.cur.toProto()}
	}
	base := it.base() // owns its elems: no second copy
	return &tempestpb.ItemState{
		Collection: it.c.name,
		Item:       []byte(it.key),
		Base:       &tempestpb.ItemValue{Exists: base.exists, Data: base.data, Elems: base.elems, Count: base.count},
		Pending:    slices.Clone(it.h.ops),
	}
}

// Restore loads a snapshot into a fresh store (no ops, no snapshot
// restored yet) that declares the same collections and user ops. It
// validates everything first and changes nothing on error (ErrSnapshot,
// wrapping the cause: ErrUnknownCollection, ErrUnknownOp, ErrBadOp, ...).
//
// A snapshot of this replica (same Replica) restores its clock and own
// seq. A snapshot of another replica of the service (a state transfer to
// a new or wiped clone) is accepted too: own seq is then what the
// snapshot knows of this replica's stream, and the clock only observes
// the snapshot's timestamps. Ops delivered afterwards that the snapshot
// covers are ignored as duplicates.
func (s *Store) Restore(snap *tempestpb.StoreSnapshot) error {
	if err := s.restorable(); err != nil {
		return err
	}
	if snap == nil {
		return fmt.Errorf("%w: nil snapshot", ErrSnapshot)
	}
	h := headerOf(snap)
	r, err := s.validateHeader(h)
	if err != nil {
		return err
	}
	for i, is := range snap.GetItems() {
		if err := r.addItem(s, i, is); err != nil {
			return err
		}
	}
	if err := r.finish(s); err != nil {
		return err
	}
	s.install(h, r)
	return nil
}

func (s *Store) checkFresh() error {
	if s.applied != 0 || s.ownSeq != 0 || s.pending != 0 {
		return fmt.Errorf("%w: store is not fresh (applied %d, own seq %d)", ErrSnapshot, s.applied, s.ownSeq)
	}
	for _, c := range s.colls {
		if c.len() != 0 {
			return fmt.Errorf("%w: store is not fresh (collection %q has items)", ErrSnapshot, c.name)
		}
	}
	for _, o := range s.origins {
		if o.contiguous != 0 || len(o.beyond) != 0 || !o.horizon.IsZero() || o.hbSeq != 0 {
			return fmt.Errorf("%w: store is not fresh (knows origin %q)", ErrSnapshot, o.name)
		}
	}
	return nil
}

// restoring is a validated snapshot, not yet installed: the origins and
// the items to give a fresh store, and what validation must remember
// across items (Restore sees them all at once, a stream restore chunk by
// chunk, a chain of a full snapshot and deltas part by part).
//
// Items are kept per collection as install gives them to the collections:
// those of maps and sets without pending ops in a cold table (no Go object
// per item: a million-item restore allocates pages and arena chunks, not a
// million objects), the others in a map. Checks that depend on the origin states
// (every pending op delivered, no op pending twice) wait for finish: a
// later delta brings newer origin states, and its items replace earlier
// ones.
type restoring struct {
	origins map[string]*originState
	items   map[*collection]map[string]*item
	cold    map[*collection]*coldTable // items without pending ops of maps and sets
	withOps []*item                    // items kept with pending ops (some may have been replaced since)
	maxTS   Timestamp                  // latest timestamp of a pending op of another origin
	ownTS   Timestamp                  // latest own timestamp known (pending op or horizon)

	// trusted: the parts come from this clone's own checksummed storage
	// (StreamRestorer.Trusted): values are not decoded again, and the
	// header's size hints are believed.
	trusted bool
	hints   map[string]uint64 // the full snapshot's items per collection

	delta  bool                // the part being added is a delta
	stated map[itemID]struct{} // in a delta: items given a state by it
	count  uint64              // ItemStates of the part validated, including those left out as empty
}

type itemID struct{ coll, key string }

func badSnapshot(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrSnapshot}, args...)...)
}

// validateHeader checks the replica-wide part of a snapshot and builds the
// origin states the items are validated against.
func (s *Store) validateHeader(h *tempestpb.SnapshotHeader) (*restoring, error) {
	bad := badSnapshot
	if h == nil {
		return nil, bad("nil snapshot header")
	}
	if h.GetService() != s.cfg.Service {
		return nil, bad("snapshot of service %q, this store is %q", h.GetService(), s.cfg.Service)
	}
	if h.GetOwnSeq() > MaxSeq {
		return nil, bad("own seq %d > MaxSeq", h.GetOwnSeq())
	}
	r := &restoring{origins: map[string]*originState{}, items: map[*collection]map[string]*item{}, cold: map[*collection]*coldTable{}, hints: h.GetCollectionItems()}
	for i, os := range h.GetOrigins() {
		name := os.GetOrigin()
		if name == "" {
			return nil, bad("origin %d has no name", i)
		}
		if _, dup := r.origins[name]; dup {
			return nil, bad("origin %q listed twice", name)
		}
		if os.GetContiguous() > MaxSeq {
			return nil, bad("origin %q: contiguous %d > MaxSeq", name, os.GetContiguous())
		}
		o := &originState{
			name:       name,
			contiguous: os.GetContiguous(),
			horizon:    Timestamp{WallMs: os.GetHorizonWallMs(), Logical: os.GetHorizonLogical()},
			maxSeq:     os.GetContiguous(),
		}
		prev := o.contiguous
		for _, seq := range os.GetBeyond() {
			if seq <= prev || seq > MaxSeq {
				return nil, bad("origin %q: beyond seqs must increase from contiguous %d to at most MaxSeq, got %d after %d", name, o.contiguous, seq, prev)
			}
			if o.beyond == nil {
				o.beyond = map[uint64]Timestamp{}
			}
			o.beyond[seq] = Timestamp{}
			prev, o.maxSeq = seq, seq
		}
		if seq := o.contiguous + 1; o.beyond != nil {
			if _, ok := o.beyond[seq]; ok {
				return nil, bad("origin %q: beyond lists seq %d = contiguous+1", name, seq)
			}
		}
		r.origins[name] = o
	}
	return r, nil
}

// addItem validates the i-th item of a snapshot part and keeps it, or
// forgets the item it names if it is empty or, in a delta, absent. On error
// r must be discarded.
func (r *restoring) addItem(s *Store, i int, is *tempestpb.ItemState) error {
	bad := badSnapshot
	r.count++
	c := s.colls[is.GetCollection()]
	if c == nil {
		return bad("item %d: %w %q", i, ErrUnknownCollection, is.GetCollection())
	}
	key := is.GetItem()
	if c.kind.keyed() {
		if r.trusted {
			// Checked when written, and checksummed since.
		} else if err := c.validKey(key); err != nil {
			return bad("item %d of %s %q: key: %v", i, c.kind, c.name, err)
		}
	} else if len(key) != 0 {
		return bad("item %d: %s %q is one item, got key %q", i, c.kind, c.name, truncate(key))
	}
	if is.GetAbsent() {
		switch {
		case !r.delta:
			return bad("item %q of %q marked absent in a full snapshot", truncate(key), c.name)
		case is.GetBase() != nil || len(is.GetPending()) > 0:
			return bad("item %q of %q marked absent has a value or ops", truncate(key), c.name)
		}
		if _, stated := r.stated[itemID{c.name, string(key)}]; !stated {
			m, t := r.tables(c)
			r.forget(m, t, key) // absent at the capture; a state in the same delta wins, whatever the order
		}
		return nil
	}
	base := valueFromProto(c.kind, is.GetBase())
	if !r.trusted {
		if err := c.validateValue(&base); err != nil {
			return bad("item %q of %s %q: base: %v", truncate(key), c.kind, c.name, err)
		}
	}
	var ops []*tempestpb.Op
	for j, op := range is.GetPending() {
		if err := s.checkEnvelope(op); err != nil {
			return bad("item %q of %q, pending op %d: %w", truncate(key), c.name, j, err)
		}
		if op.GetCollection() != c.name || !bytes.Equal(op.GetItem(), key) {
			return bad("item %q of %q, pending op %s names item %q of %q", truncate(key), c.name, ID(op), truncate(op.GetItem()), op.GetCollection())
		}
		if err := c.validate(op); err != nil {
			return bad("item %q of %q, pending op %s: %w", truncate(key), c.name, ID(op), err)
		}
		ops = append(ops, op)
	}
	return r.keep(c, key, base, ops)
}

// tables returns the hot items and the cold table r fills for c (t is nil
// for collections without one).
func (r *restoring) tables(c *collection) (map[string]*item, *coldTable) {
	m := r.items[c]
	if m == nil {
		m = map[string]*item{}
		r.items[c] = m
	}
	t := r.cold[c]
	if t == nil && c.cold != nil {
		t = newColdTable()
		if r.trusted {
			t.idx.reserve(int(min(r.hints[c.name], 1<<26)))
		}
		r.cold[c] = t
	}
	return m, t
}

// forget removes what r holds under the key, hot or cold.
func (r *restoring) forget(m map[string]*item, t *coldTable, key []byte) {
	delete(m, string(key))
	if t != nil {
		if slot, ok := t.find(key); ok {
			t.del(slot)
		}
	}
}

// keep keeps a validated item of c (base and its pending ops, in any
// order) in what r holds, replacing an earlier part's state of it in a
// delta: cold if it is quiet and c has a cold table, hot otherwise, and
// nothing if it is empty. It is the end of addItem, and all of a trusted
// restore's fast path for quiet items (StreamRestorer.AddEncoded).
func (r *restoring) keep(c *collection, key []byte, base value, ops []*tempestpb.Op) error {
	bad := badSnapshot
	m, t := r.tables(c)
	keep := len(ops) > 0 || !base.zero()
	if r.delta {
		id := itemID{c.name, string(key)}
		if _, dup := r.stated[id]; dup {
			return bad("item %q of %q listed twice in a delta", truncate(key), c.name)
		}
		r.stated[id] = struct{}{}
		r.forget(m, t, key) // replaced
	}
	listedTwice := func() error { return bad("item %q of %q listed twice", truncate(key), c.name) }
	if !r.delta {
		if _, hot := m[string(key)]; hot {
			return listedTwice()
		}
	}
	if keep && len(ops) == 0 && t != nil {
		// Quiet: straight to the cold table, no Go object per item; the
		// one lookup also finds a duplicate (in a delta, forget removed
		// what was there).
		if !t.putOnce(key, base.data) { // hashed by install
			return listedTwice()
		}
		return nil
	}
	if !r.delta && t != nil {
		if _, cold := t.find(key); cold {
			return listedTwice()
		}
	}
	if !keep {
		return nil // nothing to keep
	}
	it := &item{c: c, key: string(key), cur: base}
	if len(ops) > 0 {
		slices.SortFunc(ops, func(a, b *tempestpb.Op) int { return keyOf(a).compare(keyOf(b)) })
		it.h = &history{ops: ops, heapIdx: -1}
		r.withOps = append(r.withOps, it)
	}
	m[it.key] = it
	return nil
}

// nextPart starts a delta on top of what r holds: its header's origin
// states replace the earlier ones (they only grow), its items replace or
// remove earlier items.
func (r *restoring) nextPart(next *restoring) {
	r.origins = next.origins
	// Sized for as many items as the part before held (deltas are alike;
	// the one after a full snapshot is not, hence the cap): growing it
	// item by item was 5% of a 1M-item restart's CPU.
	r.delta, r.stated, r.count = true, make(map[itemID]struct{}, min(r.count, 1<<16)), 0
}

// finish checks the kept items' pending ops against the last part's origin
// states: each pending once, each delivered. It records their timestamps
// where install needs them.
func (r *restoring) finish(s *Store) error {
	bad := badSnapshot
	seen := make(map[OpID]struct{}, len(r.withOps))
	for _, it := range r.withOps {
		if r.items[it.c][it.key] != it {
			continue // replaced or removed by a later delta
		}
		for _, op := range it.h.ops {
			oid := ID(op)
			if _, dup := seen[oid]; dup {
				return bad("op %s pending twice", oid)
			}
			seen[oid] = struct{}{}
			o := r.origins[oid.Origin]
			if o == nil || !o.delivered(oid.Seq) {
				return bad("pending op %s is not marked delivered in the origin states", oid)
			}
			ts := TimestampOf(op)
			if _, ok := o.beyond[oid.Seq]; ok {
				o.beyond[oid.Seq] = ts
			}
			if oid.Origin == s.cfg.Replica {
				r.ownTS = maxTS(r.ownTS, ts)
			} else {
				r.maxTS = maxTS(r.maxTS, ts)
			}
		}
	}
	return nil
}

func maxTS(a, b Timestamp) Timestamp {
	if a.Less(b) {
		return b
	}
	return a
}

// validateValue checks that a base value decodes under the collection's
// codecs.
func (c *collection) validateValue(v *value) error {
	switch c.kind {
	case kindMap:
		if v.exists {
			return c.validValue(v.data)
		}
	case kindList:
		for i, e := range v.elems {
			if err := c.validValue(e); err != nil {
				return fmt.Errorf("element %d: %v", i, err)
			}
		}
	}
	return nil
}

// install replaces the (fresh) store's state with a validated snapshot.
func (s *Store) install(snap *tempestpb.SnapshotHeader, r *restoring) {
	if o := r.origins[s.cfg.Replica]; o != nil {
		r.ownTS = maxTS(r.ownTS, o.horizon)
	}
	if r.origins[s.cfg.Replica] == nil {
		r.origins[s.cfg.Replica] = &originState{name: s.cfg.Replica}
	}
	s.origins = r.origins
	s.self = s.origins[s.cfg.Replica]
	s.resolveMembers()

	clock := Timestamp{WallMs: snap.GetClockWallMs(), Logical: snap.GetClockLogical()}
	if snap.GetReplica() == s.cfg.Replica {
		s.hlc.Restore(clock)
		s.ownSeq = max(snap.GetOwnSeq(), s.self.maxSeq)
	} else {
		s.hlc.Observe(clock)
		s.ownSeq = s.self.maxSeq
	}
	s.hlc.observeTrusted(r.ownTS)
	s.hlc.Observe(r.maxTS)
	s.applied = snap.GetApplied()
	s.foldedPoint = Timestamp{WallMs: snap.GetStableWallMs(), Logical: snap.GetStableLogical()}

	for c, t := range r.cold {
		c.cold = t // the collection's table was empty: the store is fresh
		c.live += t.len()
		t.each(func(_ uint32, r *coldRec) bool {
			c.digest += c.coldHash(r)
			return true
		})
		c.sorted = nil
	}
	for c, m := range r.items {
		c.items = m // the collection's map was empty: the store is fresh
		c.sorted = nil
		for _, it := range m {
			if h := it.h; h != nil {
				s.pending += len(h.ops)
				h.undo = make([]undoRec, len(h.ops))
				s.replay(it, 0)
				s.reheap(it)
			}
			c.touched(it)
		}
	}
	// The restored state is a capture a delta snapshot may follow.
	s.newWindow(snap.GetApplied())
}
