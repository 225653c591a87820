package collections

import (
	"fmt"
	"iter"
	"maps"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/tempestrt/tempest/proto/tempestpb"
)

// A snapshot stream is a Snapshot taken at one point and produced in small
// pieces while the store keeps changing, so that a clone with a million
// items never spends a long turn copying and marshalling its state, and so
// that the same pieces can be written to disk or sent to a new or lagging
// clone (state transfer).
//
// # Design: a fuzzy scan with pre-images
//
// BeginSnapshot captures the replica-wide part (SnapshotHeader: clock,
// counters, folded point, origin states) at once and opens the stream with
// a new epoch E. Nothing is copied per item: the items are read later, by
// an iteration over the collections' item maps that Next advances a little
// at a time. Items change in between, so every change to an item's state
// goes through one hook, Store.changing, called before the change:
//
//   - insert (an op applied, late or not, own or remote),
//   - remove (an op of a failed Update retracted),
//   - foldFirst (an op folded by Compact),
//   - collection.maybeDrop (an empty item forgotten).
//
// Those four are the only writers of an item's ops, undo records and
// value, and of its presence in its collection, once it is installed
// (Store.install, which a stream excludes: restoring needs a fresh store
// and no open stream). The hook sees whether the item was captured for the
// open stream (item.captured == E); if not, it copies the item's current —
// hence capture-time — state into the stream's queue of pre-images
// (item.state: the ItemState Snapshot would hold) and marks the item
// captured. An item created while the stream is open is marked captured
// at once: it was absent at the capture point.
//
// Invariant: an item not captured for the open stream is exactly as it
// was at the capture point. So an item the iteration reaches is either
// captured (skipped: its pre-image is queued or already emitted, or it was
// absent) or unchanged (its state now is its state then). Every item
// present at the capture point is emitted exactly once: the iteration
// reaches every map entry that is not deleted before it is reached (Go
// guarantees it for entries added and deleted during a range loop, which
// the iteration is, suspended with iter.Pull between calls), and an entry
// deleted before that was captured by the hook of the change that emptied
// it. Hence the stream's items are exactly Snapshot().Items at the capture
// point, in another order, and RestoreStream rebuilds the replica Restore
// would.
//
// Cold items (see coldTable) are read after the hot maps, by slot. Moving
// an item between the tiers keeps the argument: Tidy does not demote while
// a stream is open, so no item enters a cold table behind the iteration;
// promoting an item captures it first (collection.promote), so an item
// that leaves a cold table before the iteration reaches it is queued as a
// pre-image; and a record the iteration reached is captured (its slot is
// below the table's capture cursor, coldTable.capUpTo: the iteration goes
// by slot, and no record is added while a stream is open), so promoting it
// later does not queue it again.
//
// Costs: BeginSnapshot is O(origins) (the header) plus O(collections).
// A change to an item not yet captured pays one copy of that item
// (O(its ops) for maps, sets and counters; O(its elements) for a list),
// once per stream. Next is bounded by its byte and item budgets and by
// a budget of items visited (see Next). The pre-image queue holds at most
// the items changed and not yet emitted, never more than the state at the
// capture point.
//
// Why not persistent (copy-on-write) maps? They would make every write pay
// for snapshots taken every 10 000 ops, and their iteration is slower;
// here writes pay only a nil check while no stream is open, and one copy
// per item per stream while one is.

// Chunk budgets Next uses when given 0.
const (
	DefaultChunkBytes = 64 << 10
	DefaultChunkItems = 256
)

// chunkOverhead bounds what a SnapshotChunk encodes besides its items:
// index (1 + 10 bytes), last (2), item_count (1 + 10).
const chunkOverhead = 24

// SnapshotStreamOptions configures BeginSnapshot.
type SnapshotStreamOptions struct {
	// ChunkBytes and ChunkItems are Next's budgets when it is given 0
	// (default DefaultChunkBytes, DefaultChunkItems).
	ChunkBytes int
	ChunkItems int
	// Delta asks for a delta snapshot: only the items that changed since
	// the latest capture (the previous stream begun, or the restore), as
	// their states or as absent. The stream is a full one instead when the
	// store has no capture a delta could follow (a fresh store, or the
	// previous stream was closed before its end): SnapshotStream.Delta
	// says which it is.
	Delta bool
	// Detached: the stream is not a link of a chain of snapshots (a state
	// transfer to another clone, a test): it leaves the change window
	// alone, so the next delta is still relative to the latest attached
	// capture. A detached stream is always full.
	Detached bool
	// Reuse lets Next reuse what it builds: the chunk, and the ItemStates
	// of cold items (two objects each, about 200 bytes). A chunk is then
	// valid only until the next call to Next or Close, for a caller that
	// marshals each chunk before asking for the next (a clone's scheduler
	// writing its snapshot). A full stream of a million-item replica
	// otherwise makes about 320 MB of garbage besides its encoded chunks
	// (BenchmarkSnapshotStream), in the few seconds it takes: garbage
	// collections brought forward, during which the requests' goroutines
	// may be made to assist.
	Reuse bool
}

// SnapshotStreamStats counts a stream's work.
type SnapshotStreamStats struct {
	Chunks    uint64 // chunks returned by Next
	Items     uint64 // ItemStates emitted
	Bytes     uint64 // encoded size of the chunks returned (proto.Size)
	PreImages uint64 // items captured by the hook before a change (copy-on-write)
	Visited   uint64 // items the iteration reached, captured or not
	Queued    int    // pre-images waiting to be emitted
	Absent    uint64 // of Items: absent entries (a delta only)
}

// SnapshotStream is a snapshot being produced: see BeginSnapshot. It is
// driven by the store's goroutine, like the Store.
type SnapshotStream struct {
	s      *Store
	epoch  uint32
	opts   SnapshotStreamOptions
	header *tempestpb.SnapshotHeader
	delta  bool   // a delta: the items of change window `window` only
	window uint32 // the change window the stream closed (a delta's members have item.window == window)
	// detached: not a link of the chain (SnapshotStreamOptions.Detached).
	detached bool

	// next is the iteration over every collection's items, or a delta's
	// members: a hot item, or a cold item's state (already captured:
	// below its table's capture cursor).
	next func() (*item, *tempestpb.ItemState, bool)
	stop func()

	queue []*tempestpb.ItemState // pre-images (and an item a full chunk left over), oldest first
	qhead int

	// With Reuse: the chunk Next returns, and the ItemStates and values it
	// builds for cold items, of which the current chunk uses the first
	// pooled.
	chunkBuf  *tempestpb.SnapshotChunk
	poolState []*tempestpb.ItemState
	poolValue []*tempestpb.ItemValue
	pooled    int

	exhausted bool // the iteration has reached every item
	finished  bool // the last chunk was returned, or Close was called
	done      bool // the last chunk was returned
	index     uint64
	stats     SnapshotStreamStats
}

// BeginSnapshot opens a snapshot stream at the current state: the header
// (Header) is captured now, the items are produced by Next, chunk by
// chunk, while the store keeps taking updates, deliveries and compactions
// between calls. The stream's items are exactly those Snapshot would have
// returned now, in no particular order (see the design note above), so
// restoring header and chunks with RestoreStream gives the replica that
// Restore(Snapshot()) would.
//
// Its cost does not depend on the number of items. One stream may be open
// at a time (ErrSnapshot otherwise); not inside Update (ErrInUpdate), since
// the Update could still be retracted. Close a stream given up on: until
// it is closed or finished, changes to items copy their pre-images into it.
func (s *Store) BeginSnapshot(opts SnapshotStreamOptions) (*SnapshotStream, error) {
	if s.inUpdate {
		return nil, fmt.Errorf("%w: BeginSnapshot", ErrInUpdate)
	}
	if s.stream != nil {
		return nil, fmt.Errorf("%w: a snapshot stream is already open", ErrSnapshot)
	}
	if opts.ChunkBytes <= 0 {
		opts.ChunkBytes = DefaultChunkBytes
	}
	if opts.ChunkItems <= 0 {
		opts.ChunkItems = DefaultChunkItems
	}
	if s.streamEpoch == math.MaxUint32 || s.window == math.MaxUint32 {
		s.renumber()
	}
	s.streamEpoch++
	st := &SnapshotStream{s: s, epoch: s.streamEpoch, opts: opts, header: s.header(), detached: opts.Detached}
	if opts.Delta && !opts.Detached && s.deltaBase {
		// The members: every item changed since the latest capture, each
		// once (an item dropped and created again is two items, the first
		// one gone).
		//
		// Then the members that went cold, by slot (collection.demote).
		// A slot listed may have been freed since (the item promoted: it
		// is among the Go objects again) and even reused; its record is a
		// member only while flagged. Reading one clears its flag, so a
		// slot listed twice (freed and reused by another member) is read
		// once, and a promotion after the read does not capture it again.
		members, cold := s.changed, s.coldChanged
		if mutation == mutationColdMembersUnread { // a test's deliberate bug, see mutant.go
			cold = nil
		}
		st.delta, st.window = true, s.window
		st.header.Delta, st.header.FollowsApplied = true, s.baseApplied
		flag := memberFlag(st.window)
		i, j := 0, 0
		st.next = func() (*item, *tempestpb.ItemState, bool) {
			if i < len(members) {
				i++
				return members[i-1], nil, true
			}
			for j < len(cold) {
				m := cold[j]
				j++
				if r := m.c.cold.rec(m.slot); r.chunk != 0 && r.off&flag != 0 {
					r.off &^= flag
					return nil, st.coldState(m.c, r), true
				}
			}
			return nil, nil, false
		}
		st.stop = func() {
			unflag(cold[j:], flag) // given up: no member flagged for a window gone
			members, cold = nil, nil
		}
	} else {
		s.ensureLoaded() // a full stream iterates every item
		colls := make([]*collection, 0, len(s.colls))
		for _, name := range s.Collections() {
			colls = append(colls, s.colls[name])
		}
		// A range loop over each item map, suspended between Next calls.
		// The maps change in between (same goroutine), which a range loop
		// allows: an entry deleted before it is reached is not produced,
		// an entry added may or may not be (added items are marked
		// captured and skipped).
		//
		// Then the cold tables, by slot: a slot is read when the iteration
		// reaches it, so an item promoted before that is not found there
		// (promote captured it), and none is added while a stream is open
		// (Tidy waits). The slots the iteration reached are captured (the
		// table's capture cursor, coldTable.capUpTo), so that promoting
		// one later does not capture it twice.
		epoch := st.epoch
		st.next, st.stop = iter.Pull2(func(yield func(*item, *tempestpb.ItemState) bool) {
			for _, c := range colls {
				for _, it := range c.items {
					if !yield(it, nil) {
						return
					}
				}
			}
			for _, c := range colls {
				if c.cold == nil {
					continue
				}
				t, stopped := c.cold, false
				t.capEpoch, t.capUpTo = epoch, 0
				t.each(func(slot uint32, r *coldRec) bool {
					t.capUpTo = slot + 1 // captured from here on
					stopped = !yield(nil, st.coldState(c, r))
					return !stopped
				})
				if stopped {
					return
				}
				t.capUpTo = math.MaxUint32
			}
		})
	}
	if !opts.Detached {
		if !st.delta {
			s.unflagColdMembers() // the window ends in a full snapshot
		}
		s.newWindow(s.applied)
	}
	s.stream = st
	return st, nil
}

// ChangedItems is how many items changed since the latest capture (a
// snapshot stream begun, or a restore): what a delta begun now would hold,
// at most. 0 when the store has no capture a delta could follow.
func (s *Store) ChangedItems() int {
	return len(s.changed) - s.demotedMembers + len(s.coldChanged)
}

// member reports whether it is a member of the current change window.
func (s *Store) member(it *item) bool { return s.deltaBase && it.window == s.window }

// coldMember names a member of a change window that went cold: its slot
// in its collection's cold table, whose record is flagged (memberFlag).
type coldMember struct {
	c    *collection
	slot uint32
}

// unflagColdMembers clears the flags of the current window's cold members
// and forgets them: the window ends with no delta to read them (a full
// snapshot begun, or a stream given up).
func (s *Store) unflagColdMembers() {
	unflag(s.coldChanged, memberFlag(s.window))
	s.coldChanged = nil
}

// unflag clears flag on the records ms names (slots freed or reused since
// included: a free slot has no flags, and another member's record is not
// flagged for a window ms does not belong to).
func unflag(ms []coldMember, flag uint32) {
	for _, m := range ms {
		m.c.cold.rec(m.slot).off &^= flag
	}
}

// DeltaReady reports whether a delta snapshot begun now would be one: the
// store has a capture to follow (else BeginSnapshot makes a full one).
func (s *Store) DeltaReady() bool { return s.deltaBase }

// renumber restarts the 32-bit epoch and window counters before one of
// them would wrap (after 4e9 snapshots: years), so that no mark left on an
// item 4e9 streams ago is ever taken for a current one. No stream is open:
// every captured mark is cleared; the current window's members keep their
// membership as window 1.
func (s *Store) renumber() {
	for _, c := range s.colls {
		for _, it := range c.items {
			it.captured = 0
			if it.window != s.window {
				it.window = 0
			}
		}
		if c.cold != nil {
			c.cold.capEpoch, c.cold.capUpTo = 0, 0
		}
	}
	for _, it := range s.changed {
		if it.window == s.window {
			it.window = 1 // gone items too: they are members
		}
	}
	if from, to := memberFlag(s.window), memberFlag(1); from != to {
		for _, m := range s.coldChanged {
			if r := m.c.cold.rec(m.slot); r.off&from != 0 {
				r.off ^= from | to
			}
		}
	}
	s.streamEpoch, s.window = 0, 1
}

// Delta reports whether the stream is a delta snapshot (see
// SnapshotStreamOptions.Delta).
func (st *SnapshotStream) Delta() bool { return st.delta }

// newWindow starts a change window at a capture (a snapshot stream begun,
// or a restore) whose applied count is applied: the next delta holds the
// items changed from now on.
func (s *Store) newWindow(applied uint64) {
	s.window++ // BeginSnapshot renumbered it if at its limit; a restore starts it
	s.changed, s.coldChanged, s.demotedMembers = nil, nil, 0
	s.deltaBase, s.baseApplied = true, applied
}

// Header returns the stream's header, captured by BeginSnapshot. It is the
// stream's: marshal it, do not modify it.
func (st *SnapshotStream) Header() *tempestpb.SnapshotHeader { return st.header }

// Stats returns the stream's counters.
func (st *SnapshotStream) Stats() SnapshotStreamStats {
	out := st.stats
	out.Queued = len(st.queue) - st.qhead
	return out
}

// Done reports whether the stream returned its last chunk or was closed.
func (st *SnapshotStream) Done() bool { return st.finished }

// Close gives the stream up (or releases a finished one): the store stops
// copying pre-images into it and its iteration is stopped. Idempotent.
func (st *SnapshotStream) Close() {
	if st.finished {
		return
	}
	st.finished = true
	st.stop()
	if st.s.stream == st {
		st.s.stream = nil
	}
	st.queue, st.qhead = nil, 0
	st.chunkBuf, st.poolState, st.poolValue = nil, nil, nil
	if !st.detached && !st.done {
		// Given up before its end: the capture never became a snapshot,
		// and the changes before it are no longer tracked. The next
		// stream must be full.
		st.s.deltaBase = false
		st.s.changed, st.s.demotedMembers = nil, 0
		st.s.unflagColdMembers() // none went cold since the stream began: no Tidy while one is open
	}
}

// changing is the snapshot stream's hook, called before any change to an
// item's state (value, ops, undo records) or its removal from its
// collection: if a stream is open and has not captured the item yet, the
// item's state — unchanged since the capture point — is queued as a
// pre-image. While no stream is open it costs a nil check.
//
// It also records the item as changed in the store's change window, the
// members of the next delta snapshot (once per window: a field compare
// and, the first time, an append).
//
// And it queues the item for Tidy, which moves it to the cold table once
// it is quiet (once per hot spell: item.cooling).
func (s *Store) changing(it *item) {
	if st := s.stream; st != nil {
		st.capture(it)
	}
	if s.deltaBase && it.window != s.window {
		it.window = s.window
		s.changed = append(s.changed, it)
	}
	if !it.cooling && it.c.cold != nil {
		it.cooling = true
		s.cooling = append(s.cooling, it)
	}
}

// capture queues the item's pre-image if the stream has not captured it.
func (st *SnapshotStream) capture(it *item) {
	if it.captured == st.epoch {
		return
	}
	it.captured = st.epoch
	if is := st.itemState(it); is != nil {
		st.queue = append(st.queue, is)
		st.stats.PreImages++
	}
}

// itemState is what the stream holds of an item not captured yet (so
// unchanged since the capture point): for a full stream its state, or nil
// if a snapshot leaves it out; for a delta, nil if the item is not a
// member (unchanged since the previous capture), else its state, or an
// absent entry if it was gone or empty at the capture.
func (st *SnapshotStream) itemState(it *item) *tempestpb.ItemState {
	if !st.delta {
		if it.gone {
			return nil
		}
		return it.state()
	}
	if it.window != st.window {
		return nil
	}
	if !it.gone {
		if is := it.state(); is != nil {
			return is
		}
	}
	if mutation == mutationDeltaNoAbsent { // a test's deliberate bug, see mutant.go
		return nil
	}
	st.stats.Absent++
	return &tempestpb.ItemState{Collection: it.c.name, Item: []byte(it.key), Absent: true}
}

// Next returns the next chunk of the stream's items and whether it is the
// last one (then chunk.Last is set, chunk.ItemCount is the number of items
// in the stream, and the stream is finished: the store no longer pays for
// it). Chunks are numbered from 0.
//
// A chunk holds at most maxItems items and encodes (proto.Size) to at most
// maxBytes, except that one item larger than maxBytes alone makes a chunk
// of its own. Zero means the stream's default (SnapshotStreamOptions). The
// work of a call is bounded accordingly: it copies at most maxItems items
// and visits at most 4*maxItems items of the iteration (skipping an item
// captured earlier costs a memory access, no copy; when the budget runs
// out the chunk is returned as is, possibly empty). Chunks may be empty;
// the last one often is. The bounds are in items and bytes, not time: one
// item is copied whole, so a list of 100 000 elements (a list is one item)
// makes one long call, as it makes a long Snapshot.
//
// A scheduler calls it once per turn (or per idle moment) with budgets
// that keep the call well under a millisecond (the defaults: about 0.3 ms
// on the benchmark's 1 000 000-item store) and hands the chunk to its
// writer, which may marshal it on its own goroutine.
//
// A chunk shares ops and byte slices with the store, which never modifies
// them, and owns everything else: it may be marshalled later, or on
// another goroutine, while the store keeps changing. Do not modify it.
func (st *SnapshotStream) Next(maxBytes, maxItems int) (chunk *tempestpb.SnapshotChunk, last bool, err error) {
	if st.finished {
		return nil, false, fmt.Errorf("%w: snapshot stream is finished or closed", ErrSnapshot)
	}
	if maxBytes <= 0 {
		maxBytes = st.opts.ChunkBytes
	}
	if maxItems <= 0 {
		maxItems = st.opts.ChunkItems
	}
	if st.opts.Reuse {
		if st.chunkBuf == nil {
			st.chunkBuf = &tempestpb.SnapshotChunk{}
		}
		items := st.chunkBuf.Items[:0]
		clear(items[:cap(items)]) // no stale pointers kept alive
		st.chunkBuf.Reset()
		st.chunkBuf.Index, st.chunkBuf.Items = st.index, items
		chunk, st.pooled = st.chunkBuf, 0
	} else {
		chunk = &tempestpb.SnapshotChunk{Index: st.index}
	}
	size := chunkOverhead
	// fits adds is to the chunk if the budgets allow.
	fits := func(is *tempestpb.ItemState) bool {
		n := proto.Size(is)
		field := protowire.SizeTag(2) + protowire.SizeBytes(n)
		if len(chunk.Items) > 0 && size+field > maxBytes {
			return false
		}
		chunk.Items = append(chunk.Items, is)
		size += field
		return true
	}
	// Pre-images first: they are what changed since the capture point.
	for st.qhead < len(st.queue) && len(chunk.Items) < maxItems {
		if !fits(st.queue[st.qhead]) {
			break
		}
		st.queue[st.qhead] = nil
		st.qhead++
	}
	if st.qhead == len(st.queue) {
		st.queue, st.qhead = st.queue[:0], 0
	}
	// Then items the iteration reaches and nobody captured yet.
	visits := maxItems
	if visits <= math.MaxInt/4 {
		visits *= 4
	}
	full := st.qhead < len(st.queue) // the queue is left over: the chunk is full
	for !full && !st.exhausted && len(chunk.Items) < maxItems && visits > 0 {
		it, is, ok := st.next()
		if !ok {
			st.exhausted = true
			break
		}
		visits--
		st.stats.Visited++
		if is == nil {
			if it.captured == st.epoch {
				continue
			}
			it.captured = st.epoch
			if is = st.itemState(it); is == nil {
				continue
			}
		}
		if !fits(is) {
			if st.opts.Reuse && it == nil {
				is = detachState(is) // a pooled state: the next chunk reuses the pool
			}
			st.queue = append(st.queue, is) // first of the next chunk
			full = true
		}
	}
	st.stats.Items += uint64(len(chunk.Items))
	if st.exhausted && st.qhead == len(st.queue) {
		chunk.Last, chunk.ItemCount = true, st.stats.Items
		last = true
	}
	st.index++
	st.stats.Chunks++
	st.stats.Bytes += uint64(proto.Size(chunk))
	if last {
		st.done = true
		st.Close()
	}
	return chunk, last, nil
}

// coldState is the state of a cold item for the stream: with Reuse, from
// the pool of the chunk being built.
func (st *SnapshotStream) coldState(c *collection, r *coldRec) *tempestpb.ItemState {
	if !st.opts.Reuse {
		return c.coldState(r)
	}
	if st.pooled == len(st.poolState) {
		st.poolState = append(st.poolState, &tempestpb.ItemState{})
		st.poolValue = append(st.poolValue, &tempestpb.ItemValue{})
	}
	st.pooled++
	return setColdState(st.poolState[st.pooled-1], st.poolValue[st.pooled-1], c.name, c.cold.key(r), c.cold.data(r))
}

// detachState copies a cold item's pooled state out of the pool (its key
// and value bytes shared: the arena never modifies them).
func detachState(is *tempestpb.ItemState) *tempestpb.ItemState {
	return setColdState(&tempestpb.ItemState{}, &tempestpb.ItemValue{}, is.GetCollection(), is.GetItem(), is.GetBase().GetData())
}

// All returns the rest of the stream as a sequence of chunks with the
// given budgets, for callers that do not need to interleave (tests, a
// state transfer from a stopped store). Breaking out of the loop leaves
// the stream open.
func (st *SnapshotStream) All(maxBytes, maxItems int) iter.Seq2[*tempestpb.SnapshotChunk, error] {
	return func(yield func(*tempestpb.SnapshotChunk, error) bool) {
		for !st.finished {
			chunk, _, err := st.Next(maxBytes, maxItems)
			if !yield(chunk, err) || err != nil {
				return
			}
		}
	}
}

// StreamRestorer restores a snapshot stream chunk by chunk: see
// Store.BeginRestore. Validated items are kept as the store's future items
// (no StoreSnapshot is assembled); the store itself is changed only by
// Finish.
type StreamRestorer struct {
	s      *Store
	header *tempestpb.SnapshotHeader
	r      *restoring
	next   uint64 // index of the next chunk
	last   bool   // the last chunk was added
	// itemwise: the part is read item by item (AddItemEncoded), not in
	// chunks.
	itemwise bool
	err      error // sticky: the first failure
	done     bool  // Finish was called
}

// BeginRestore starts restoring a snapshot stream (a header, then its
// chunks in order with Add, then Finish) into a fresh store, as Restore
// does with a whole snapshot: everything is validated as it is added, and
// the store is changed only by a successful Finish. Errors wrap
// ErrSnapshot (and the cause, as Restore's do).
func (s *Store) BeginRestore(header *tempestpb.SnapshotHeader) (*StreamRestorer, error) {
	if err := s.restorable(); err != nil {
		return nil, err
	}
	if header.GetDelta() {
		return nil, badSnapshot("a delta snapshot restores only on top of the snapshot it follows (StreamRestorer.NextDelta)")
	}
	r, err := s.validateHeader(header)
	if err != nil {
		return nil, err
	}
	return &StreamRestorer{s: s, header: header, r: r}, nil
}

// Trusted declares that the snapshot comes from this clone's own storage,
// which checksums what it stores: the values in it were checked (decoded
// by their collection's codec) when their ops were first applied, so the
// restore does not decode each one again, and it sizes each collection's
// table once from the header's hint. Decoding JSON values is most of the
// time of a restore otherwise. A snapshot from elsewhere (a state transfer
// from a peer) is not trusted: everything is checked, and a hint cannot
// make the restore allocate what the items do not need. Call it before the
// first Add.
func (b *StreamRestorer) Trusted() { b.r.trusted = true }

// SizeHint tells a trusted restore how many items each collection will hold
// once the whole chain is restored (the collection_items of the last
// part's header): each collection's table is then sized once for them, not
// for the full snapshot's count and grown (rehashed) as the deltas add
// items. Ignored unless Trusted; call it before the first Add.
func (b *StreamRestorer) SizeHint(items map[string]uint64) {
	if len(items) == 0 {
		return
	}
	hints := make(map[string]uint64, len(items))
	maps.Copy(hints, b.r.hints)
	for name, n := range items {
		hints[name] = max(hints[name], n)
	}
	b.r.hints = hints
}

// NextDelta continues the restore with a delta snapshot (its header, then
// its chunks with Add) once the previous part (the full snapshot, or the
// previous delta) is complete: a chain restores as the full snapshot, then
// each delta in order. The delta must follow the previous part (its
// follows_applied is that part's applied count). Its items replace the
// earlier states of the same items, its absent entries remove them, and
// its header (clock, counters, origin states) replaces the earlier one.
func (b *StreamRestorer) NextDelta(header *tempestpb.SnapshotHeader) error {
	if b.err != nil {
		return b.err
	}
	b.err = b.nextDelta(header)
	return b.err
}

func (b *StreamRestorer) nextDelta(header *tempestpb.SnapshotHeader) error {
	switch {
	case b.done:
		return badSnapshot("restore already finished")
	case !b.last:
		return badSnapshot("delta before the previous part's last chunk (after %d chunks)", b.next)
	case header == nil || !header.GetDelta():
		return badSnapshot("NextDelta needs a delta snapshot's header")
	case header.GetFollowsApplied() != b.header.GetApplied():
		return badSnapshot("delta follows the snapshot at applied %d, the previous part is at %d", header.GetFollowsApplied(), b.header.GetApplied())
	case header.GetApplied() < b.header.GetApplied():
		return badSnapshot("delta at applied %d goes back behind %d", header.GetApplied(), b.header.GetApplied())
	}
	next, err := b.s.validateHeader(header)
	if err != nil {
		return err
	}
	b.r.nextPart(next)
	b.header, b.next, b.last, b.itemwise = header, 0, false, false
	return nil
}

// restorable checks that the store may be restored into now.
func (s *Store) restorable() error {
	if s.inUpdate {
		return fmt.Errorf("%w: Restore", ErrInUpdate)
	}
	if err := s.checkFresh(); err != nil {
		return err
	}
	if s.stream != nil {
		return fmt.Errorf("%w: a snapshot stream is open", ErrSnapshot)
	}
	return nil
}

// Add validates the next chunk. Chunks must come in stream order (index
// 0, 1, 2, ...), the last one last; items need not be sorted. After an
// error the restorer is broken: every later call returns that error.
func (b *StreamRestorer) Add(chunk *tempestpb.SnapshotChunk) error {
	if b.err != nil {
		return b.err
	}
	b.err = b.add(chunk)
	return b.err
}

func (b *StreamRestorer) add(chunk *tempestpb.SnapshotChunk) error {
	if chunk == nil && !b.done {
		return badSnapshot("nil chunk")
	}
	if err := b.checkChunk(chunk.GetIndex()); err != nil {
		return err
	}
	b.next++
	for _, is := range chunk.GetItems() {
		if err := b.r.addItem(b.s, int(b.r.count), is); err != nil {
			return fmt.Errorf("chunk %d: %w", chunk.GetIndex(), err)
		}
	}
	return b.endChunk(chunk.GetIndex(), chunk.GetLast(), chunk.GetItemCount())
}

// checkChunk checks that the chunk numbered index may come next.
func (b *StreamRestorer) checkChunk(index uint64) error {
	switch {
	case b.done:
		return badSnapshot("restore already finished")
	case b.last:
		return badSnapshot("chunk %d after the last chunk", index)
	case b.itemwise:
		return badSnapshot("chunk %d in a part read item by item", index)
	case index != b.next:
		return badSnapshot("chunk %d, want chunk %d", index, b.next)
	}
	return nil
}

// endChunk checks a chunk's end once its items are added: the last one
// states the part's item count.
func (b *StreamRestorer) endChunk(index uint64, last bool, count uint64) error {
	if last {
		b.last = true
		if count != b.r.count {
			return badSnapshot("last chunk says %d items, the stream held %d", count, b.r.count)
		}
	} else if count != 0 {
		return badSnapshot("chunk %d is not the last but has an item count", index)
	}
	return nil
}

// Finish installs the restored state once the last chunk is added. It
// fails (changing nothing) if a chunk was missing or bad, or if the store
// is no longer fresh.
func (b *StreamRestorer) Finish() error {
	if b.err != nil {
		return b.err
	}
	if b.done {
		return badSnapshot("restore already finished")
	}
	if !b.last {
		return badSnapshot("stream ended after %d chunks without its last chunk", b.next)
	}
	if err := b.s.restorable(); err != nil {
		return err
	}
	if err := b.r.finish(b.s); err != nil {
		b.err = err
		return err
	}
	b.done = true
	b.s.install(b.header, b.r)
	b.r = nil
	return nil
}

// RestoreStream restores a snapshot stream (header, then chunks in order)
// into a fresh store: BeginRestore, Add for each chunk, Finish. An error
// yielded by chunks is returned, wrapped. On any error the store is
// unchanged.
func (s *Store) RestoreStream(header *tempestpb.SnapshotHeader, chunks iter.Seq2[*tempestpb.SnapshotChunk, error]) error {
	b, err := s.BeginRestore(header)
	if err != nil {
		return err
	}
	for chunk, err := range chunks {
		if err != nil {
			return fmt.Errorf("%w: reading chunk %d: %w", ErrSnapshot, b.next, err)
		}
		if err := b.Add(chunk); err != nil {
			return err
		}
	}
	return b.Finish()
}
