package collections

import (
	"bytes"
	"fmt"
	"iter"

	"google.golang.org/protobuf/proto"

	"github.com/tempestrt/tempest/proto/tempestpb"
)

// A lazy restore makes a restart cost what its log costs, not what its
// state holds. BeginLazyRestore installs the replica-wide part of a stored
// state (its header: origins, clock, counters) and the few items the header
// names as eager (those with pending ops, and the one item of each list and
// counter); every other item of the state is a quiet map entry or set
// element, which stays in the stored state until it is used. The store is
// then in lazy mode:
//
//   - a point access that does not find an item in memory (a read, or an
//     op that changes it: collection.current and collection.get) first
//     faults it in from the stored state (StoredState.Item, one lookup),
//     into the cold table;
//   - LazyLoad.Step loads the rest in key order, a bounded number of items
//     at a time, skipping what memory already holds (faulted in, or
//     created since); an item dropped since the restore is remembered
//     (gone), so neither a fault nor the load brings its old state back;
//   - whatever needs every item (keys in order, a full snapshot stream,
//     Snapshot, ItemDigests, Tentative) first loads the rest at once
//     (ensureLoaded): O(state), as such calls are anyway;
//   - Len and Digest add what the header says of the items not loaded yet
//     (collection_live, collection_digests, less what is loaded), so they
//     answer as a fully loaded replica would.
//
// Invariant: an item not in memory, not gone, is exactly as the stored
// state holds it: it has not changed since the capture the state was
// written at (a change would have faulted it in first). So a delta
// snapshot taken while loading, which holds only changed items, is right
// without the rest; a full one loads the rest first.
//
// A failed read of the stored state during a fault panics (*StateReadError):
// the item cannot be answered for, and answering "absent" would lose it.
// The owner crashes and restarts from storage.

// StoredItem is one item of a StoredState: its collection, its key and its
// encoded ItemState.
type StoredItem struct {
	Collection string
	Key        []byte
	Value      []byte
}

// StoredState is a replica state held outside the store, item by item (a
// clone's stored state in its database), that a lazy restore reads.
type StoredState interface {
	// Item returns one item's encoded ItemState, and false if the state
	// has no such item.
	Item(collection string, key []byte) (value []byte, ok bool, err error)
	// Items yields every item; its bytes are valid until the next step.
	Items() iter.Seq2[StoredItem, error]
}

// StateReadError is the panic value of a fault whose read of the stored
// state failed.
type StateReadError struct{ Err error }

func (e *StateReadError) Error() string {
	return "collections: reading the stored state: " + e.Err.Error()
}
func (e *StateReadError) Unwrap() error { return e.Err }

// lazyState is a store's lazy mode (see above).
type lazyState struct {
	src  StoredState
	gone map[*collection]map[string]struct{} // items dropped since the restore
	// What the header says of the items not loaded yet, per keyed
	// collection: live items and digest (the header's, less those loaded).
	unloadedLive   map[*collection]int64
	unloadedDigest map[*collection]uint64

	next  func() (StoredItem, error, bool) // the load's iteration (iter.Pull2)
	stop  func()
	stats LazyStats
}

// LazyStats counts a lazy restore's work.
type LazyStats struct {
	Eager   int  // items loaded by BeginLazyRestore
	Faults  int  // lookups of items not in memory (found or not)
	Faulted int  // of them, items found and loaded
	Loaded  int  // items loaded by Step
	Skipped int  // items Step found in memory already, or gone
	Done    bool // every item is loaded; the store is no longer lazy
	// Mismatch: at the end, the header's live counts or digests did not
	// match the items loaded (a stored state inconsistent with its
	// header). The store holds what the state held either way.
	Mismatch bool
}

// LazyLoad drives the load of a lazy restore's remaining items.
type LazyLoad struct {
	s *Store
	l *lazyState
}

// BeginLazyRestore restores header (a stored state's, its lazy fields set:
// see SnapshotHeader.lazy) into a fresh store, with the items it names as
// eager read from src, and leaves every other item in src, to be faulted
// in on use or loaded by the returned LazyLoad's Step (see the design note
// above). src is trusted (the clone's own checksummed storage) and must
// stay readable until the load is done. A header that is a delta's is
// fine: the state is whole.
func (s *Store) BeginLazyRestore(header *tempestpb.SnapshotHeader, src StoredState) (*LazyLoad, error) {
	if !header.GetLazy() {
		return nil, badSnapshot("the state's header has no lazy index (written before lazy restores)")
	}
	h := proto.CloneOf(header)
	h.Delta, h.FollowsApplied = false, 0
	rs, err := s.BeginRestore(h)
	if err != nil {
		return nil, err
	}
	rs.Trusted()
	eager := 0
	for _, ref := range h.GetEager() {
		raw, ok, err := src.Item(ref.GetCollection(), ref.GetItem())
		if err != nil {
			return nil, fmt.Errorf("%w: eager item %q of %s: %w", ErrSnapshot, truncate(ref.GetItem()), ref.GetCollection(), err)
		}
		if !ok {
			return nil, badSnapshot("eager item %q of %s is not in the stored state", truncate(ref.GetItem()), ref.GetCollection())
		}
		if err := rs.AddItemEncoded(raw); err != nil {
			return nil, err
		}
		eager++
	}
	if err := rs.EndItems(); err != nil {
		return nil, err
	}
	if err := rs.Finish(); err != nil {
		return nil, err
	}
	l := &lazyState{
		src:            src,
		gone:           map[*collection]map[string]struct{}{},
		unloadedLive:   map[*collection]int64{},
		unloadedDigest: map[*collection]uint64{},
		stats:          LazyStats{Eager: eager},
	}
	for name, c := range s.colls {
		if c.cold == nil {
			continue
		}
		l.unloadedLive[c] = int64(h.GetCollectionLive()[name]) - int64(c.live)
		l.unloadedDigest[c] = h.GetCollectionDigests()[name] - c.digestMem()
		l.gone[c] = map[string]struct{}{}
	}
	l.next, l.stop = iter.Pull2(src.Items())
	s.lazy = l
	return &LazyLoad{s: s, l: l}, nil
}

// Loading reports whether the store is restoring lazily: some items of its
// state may not be in memory yet.
func (s *Store) Loading() bool { return s.lazy != nil }

// Stats returns the load's counters.
func (z *LazyLoad) Stats() LazyStats { return z.l.stats }

// Step loads up to n items of the stored state that memory does not hold
// yet, and reports whether the load is done (the store is then no longer
// lazy and Step does nothing). A read error of the stored state, or an item
// the store cannot take, is returned; the store stays lazy (faults still
// work) and a later Step resumes after the item that failed.
func (z *LazyLoad) Step(n int) (done bool, err error) {
	l, s := z.l, z.s
	if l.stats.Done {
		return true, nil
	}
	for i := 0; i < n; i++ {
		it, err, ok := l.next()
		if !ok {
			z.finish()
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("%w: loading the stored state: %w", ErrSnapshot, err)
		}
		c := s.colls[it.Collection]
		if c == nil {
			return false, badSnapshot("stored item of %w %q", ErrUnknownCollection, it.Collection)
		}
		if c.cold == nil || c.items[string(it.Key)] != nil {
			l.stats.Skipped++ // eager (a list, a counter), or in memory
			continue
		}
		if _, found := c.cold.find(it.Key); found {
			l.stats.Skipped++
			continue
		}
		if _, gone := l.gone[c][string(it.Key)]; gone {
			l.stats.Skipped++
			continue
		}
		if err := l.install(s, c, it.Key, it.Value); err != nil {
			return false, err
		}
		l.stats.Loaded++
	}
	return false, nil
}

// Close stops the load where it is (the store's owner is going away). The
// store stays lazy: faults still read the stored state.
func (z *LazyLoad) Close() {
	if !z.l.stats.Done {
		z.l.stop()
	}
}

// finish ends lazy mode: every item is in memory, so live counts and
// digests are the collections' own from now on.
func (z *LazyLoad) finish() {
	l := z.l
	l.stop()
	for _, n := range l.unloadedLive {
		if n != 0 {
			l.stats.Mismatch = true
		}
	}
	for _, d := range l.unloadedDigest {
		if d != 0 {
			l.stats.Mismatch = true
		}
	}
	l.stats.Done = true
	if z.s.lazy == l {
		z.s.lazy = nil
	}
}

// ensureLoaded loads every remaining item of a lazy restore at once, for
// what needs them all. It panics (*StateReadError) if that fails.
func (s *Store) ensureLoaded() {
	l := s.lazy
	if l == nil {
		return
	}
	z := &LazyLoad{s: s, l: l}
	for {
		done, err := z.Step(1 << 16)
		if err != nil {
			panic(&StateReadError{Err: err})
		}
		if done {
			return
		}
	}
}

// install puts a stored item's state into c's cold table (it is quiet: a
// stored item with pending ops is eager, in memory since the restore).
func (l *lazyState) install(s *Store, c *collection, key, raw []byte) error {
	qc, qkey, base, ok := s.quietItem(raw)
	if !ok {
		is := &tempestpb.ItemState{}
		if err := proto.Unmarshal(raw, is); err != nil {
			return badSnapshot("stored item %q of %s: %v", truncate(key), c.name, err)
		}
		if len(is.GetPending()) > 0 || is.GetAbsent() {
			return badSnapshot("stored item %q of %s has pending ops (or is absent) but is not eager", truncate(key), c.name)
		}
		qc, qkey, base = s.colls[is.GetCollection()], is.GetItem(), valueFromProto(c.kind, is.GetBase())
	}
	if qc != c || !bytes.Equal(qkey, key) {
		return badSnapshot("stored item %q of %s holds the state of %q", truncate(key), c.name, truncate(qkey))
	}
	if base.zero() {
		return nil // an empty item is not stored; nothing to hold
	}
	h := hashItem(c.name, c.kind, key, &base)
	c.cold.put(key, base.data, Timestamp{})
	c.live++
	c.digest += h
	l.unloadedLive[c]--
	l.unloadedDigest[c] -= h
	return nil
}

// fault loads the item named key from the stored state if the store is
// lazy, the item is not in memory (the caller checked) and not gone. It
// reports whether it loaded one.
func (c *collection) fault(key []byte) bool {
	l := c.s.lazy
	if l == nil || c.cold == nil {
		return false
	}
	if _, gone := l.gone[c][string(key)]; gone {
		return false
	}
	raw, ok, err := l.src.Item(c.name, key)
	l.stats.Faults++
	if err != nil {
		panic(&StateReadError{Err: err})
	}
	if !ok {
		return false
	}
	if err := l.install(c.s, c, key, raw); err != nil {
		panic(&StateReadError{Err: err})
	}
	l.stats.Faulted++
	return true
}

// forgetStored records that an item left memory while lazy: the stored
// state's copy of it is stale from now on.
func (c *collection) forgetStored(key string) {
	if l := c.s.lazy; l != nil && c.cold != nil {
		l.gone[c][key] = struct{}{}
	}
}

// unloaded returns what the items of c not loaded yet add to its live
// count and digest.
func (c *collection) unloaded() (live int64, digest uint64) {
	if l := c.s.lazy; l != nil {
		return l.unloadedLive[c], l.unloadedDigest[c]
	}
	return 0, 0
}
