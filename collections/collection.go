package collections

import (
	"fmt"
	"iter"
	"slices"
	"strings"

	"github.com/tempestrt/tempest/proto/tempestpb"
)

type kind uint8

const (
	kindMap kind = iota + 1
	kindList
	kindSet
	kindCounter
)

func (k kind) String() string {
	switch k {
	case kindMap:
		return "map"
	case kindList:
		return "list"
	case kindSet:
		return "set"
	case kindCounter:
		return "counter"
	}
	return "?"
}

// accepts lists the op kinds each collection kind takes.
func (k kind) accepts(ok tempestpb.OpKind) bool {
	switch k {
	case kindMap:
		return ok == tempestpb.OpKind_OP_PUT || ok == tempestpb.OpKind_OP_DELETE || ok == tempestpb.OpKind_OP_USER
	case kindSet:
		return ok == tempestpb.OpKind_OP_SET_ADD || ok == tempestpb.OpKind_OP_SET_REMOVE
	case kindList:
		return ok >= tempestpb.OpKind_OP_LIST_APPEND && ok <= tempestpb.OpKind_OP_LIST_SET
	case kindCounter:
		return ok == tempestpb.OpKind_OP_COUNTER_ADD
	}
	return false
}

// keyed reports whether items are named by a key (map entries, set
// elements) or the collection is a single item with an empty key.
func (k kind) keyed() bool { return k == kindMap || k == kindSet }

// userOp is a registered deterministic op on map items: apply computes the
// next value from the current one and JSON args; validate checks args.
type userOp struct {
	apply    func(cur value, args []byte) (value, error)
	validate func(args []byte) error
}

// collection is one declared collection of a store.
type collection struct {
	s    *Store
	name string
	kind kind

	items  map[string]*item // the items held as Go objects ("hot"): see cold
	cold   *coldTable       // map, set: quiet items (see coldTable); nil for lists and counters
	sorted []string         // keys of items, hot and cold, sorted; nil when stale
	live   int              // items whose cur exists (map, set), hot and cold

	digest    uint64  // sum of item.hashed over items
	dirtyList []*item // items whose hash is stale (and some made clean since: see demote)
	cleaned   int     // entries of dirtyList demote made clean

	validKey   func([]byte) error // map keys, set elements: canonical encoding
	validValue func([]byte) error // map values, list elements
	userOps    map[string]*userOp
}

func (s *Store) declare(name string, k kind) *collection {
	if name == "" {
		panic("collections: collection name is empty")
	}
	if _, dup := s.colls[name]; dup {
		panic(fmt.Errorf("%w: %q in service %s", ErrDuplicateCollection, name, s.cfg.Service))
	}
	c := &collection{s: s, name: name, kind: k, items: map[string]*item{}}
	if k.keyed() {
		c.cold = newColdTable()
	}
	s.colls[name] = c
	s.collNames = nil
	return c
}

// lookup returns the item named key if it is held as a Go object, or nil:
// for what has tentative ops (a cold item has none). Reads of the value
// use current.
func (c *collection) lookup(key []byte) *item { return c.items[string(key)] }

// current returns the current value of the item named key and whether the
// collection holds the item, hot or cold. The value's bytes are shared:
// read-only.
func (c *collection) current(key []byte) (value, bool) {
	if it := c.items[string(key)]; it != nil {
		return it.cur, true
	}
	if c.cold != nil {
		slot, ok := c.cold.find(key)
		if !ok && c.fault(key) {
			slot, ok = c.cold.find(key)
		}
		if ok {
			return value{exists: true, data: c.cold.data(c.cold.rec(slot))}, true
		}
	}
	return value{}, false
}

// count is the number of items that exist (Map.Len, Set.Len), loaded or
// not (a lazy restore's).
func (c *collection) count() int {
	live, _ := c.unloaded()
	return c.live + int(live)
}

// len is the number of items held in memory, hot and cold.
func (c *collection) len() int {
	n := len(c.items)
	if c.cold != nil {
		n += c.cold.len()
	}
	return n
}

// get returns the item named key as a Go object, to change it: a cold
// item is promoted, an absent one created empty.
func (c *collection) get(key []byte) *item {
	if it := c.items[string(key)]; it != nil {
		return it
	}
	if c.cold != nil {
		slot, ok := c.cold.find(key)
		if !ok && c.fault(key) {
			slot, ok = c.cold.find(key)
		}
		if ok {
			return c.promote(slot)
		}
	}
	it := &item{c: c, key: string(key)}
	if st := c.s.stream; st != nil {
		// Absent at the capture point: not in the stream. (The hook of the
		// insert that follows would find it empty and capture nothing
		// anyway; marking it here saves that work.)
		it.captured = st.epoch
	}
	c.items[it.key] = it
	c.sorted = nil
	return it
}

// promote makes the cold item at slot a Go object again. If a snapshot
// stream is open and has not reached the item, its state is captured now:
// the stream's iteration over the cold table will not find it any more.
func (c *collection) promote(slot uint32) *item {
	r := c.cold.rec(slot)
	_, fold := c.cold.entry(r)
	member := r.off & coldMembers
	it := &item{
		c:             c,
		key:           string(c.cold.key(r)),
		cur:           value{exists: true, data: c.cold.data(r)},
		foldedWall:    fold.WallMs,
		foldedLogical: fold.Logical,
		captured:      c.cold.captured(slot),
		live:          true,
	}
	it.hashed = hashItem(c.name, c.kind, it.key, &it.cur) // what demote left in c.digest: it was clean
	c.cold.del(slot)
	c.items[it.key] = it
	s, st := c.s, c.s.stream
	if member != 0 {
		// A member of a change window in the cold table (demote): the
		// membership moves with the item. A flag is current: a delta
		// stream clears its window's flags as it reads them, a stream
		// given up or a full one clears the rest (see
		// Store.unflagColdMembers), and no item goes cold while a stream
		// is open: while a delta is, the flags are its window's.
		switch {
		case st != nil && st.delta && member == memberFlag(st.window):
			if mutation != mutationPromoteDropsMembership { // a test's deliberate bug, see mutant.go
				it.window = st.window // the delta being written: the capture below queues its state
			}
		case member == memberFlag(s.window) && s.deltaBase && (st == nil || !st.delta):
			it.window = s.window
			s.changed = append(s.changed, it)
		default:
			panic("collections: a cold record flagged for no open change window") // a bug
		}
	}
	if st != nil {
		// Today every get is followed by a change, whose hook captures
		// the item anyway; this keeps the invariant if one is not.
		st.capture(it)
	}
	return it
}

// quiet reports whether it may move to the cold table: a map entry or set
// element that exists, with no tentative ops, and, if it is a member of
// the store's current change window, one beyond the Config.HotChanged
// members kept hot. The caller makes sure no snapshot stream is open and
// no Update runs.
func (c *collection) quiet(it *item) bool {
	s := c.s
	return c.cold != nil && it.h == nil && !it.gone && it.cur.exists &&
		(!s.member(it) || len(s.changed)-s.demotedMembers > s.cfg.HotChanged)
}

// demote moves a quiet item to the cold table, its hash brought up to date.
// The Go object is dropped from the collection: nothing else refers to it
// (the heap holds items with ops, the dirty list only dirty items, and no
// stream is open) but the change window's list if it is a member, where
// it stays, no member any more, until Tidy drops it; its membership goes
// with its record, flagged and listed in Store.coldChanged.
func (c *collection) demote(it *item) {
	if it.dirty {
		h := hashItem(c.name, c.kind, it.key, &it.cur)
		c.digest += h - it.hashed
		it.hashed, it.dirty = h, false // digestNow skips it in dirtyList
		// Drop such entries once they are most of the list, so that the
		// list does not keep demoted items alive until the next digest.
		if c.cleaned++; c.cleaned >= 1024 && c.cleaned >= len(c.dirtyList)/2 {
			c.dirtyList = slices.DeleteFunc(c.dirtyList, func(it *item) bool { return !it.dirty })
			c.cleaned = 0
		}
	}
	slot := c.cold.put([]byte(it.key), it.cur.data, it.foldedTS())
	s := c.s
	if s.member(it) {
		c.cold.rec(slot).off |= memberFlag(s.window)
		s.coldChanged = append(s.coldChanged, coldMember{c, slot})
		s.demotedMembers++
		it.window = 0
	}
	delete(c.items, it.key)
	it.gone = true // a stale pointer somewhere would now see an item to skip
}

// touched records that it.cur changed.
func (c *collection) touched(it *item) {
	if it.cur.exists != it.live {
		it.live = it.cur.exists
		if it.live {
			c.live++
		} else {
			c.live--
		}
	}
	if !it.dirty {
		it.dirty = true
		c.dirtyList = append(c.dirtyList, it)
	}
}

// maybeDrop forgets an item with no tentative ops and a zero value.
func (c *collection) maybeDrop(it *item) {
	if len(it.pending()) > 0 || !it.cur.zero() || it.gone {
		return
	}
	c.s.changing(it)
	if it.live {
		it.live = false
		c.live--
	}
	c.digest -= it.hashed
	it.hashed, it.gone = 0, true
	delete(c.items, it.key)
	c.forgetStored(it.key)
	c.sorted = nil
}

// digestNow brings the collection digest up to date and returns it.
func (c *collection) digestNow() uint64 {
	_, unloaded := c.unloaded()
	return c.digestMem() + unloaded
}

// digestMem brings the digest of the items in memory up to date and
// returns it.
func (c *collection) digestMem() uint64 {
	for _, it := range c.dirtyList {
		if it.gone || !it.dirty {
			continue
		}
		it.dirty = false
		h := hashItem(c.name, c.kind, it.key, &it.cur)
		c.digest += h - it.hashed
		it.hashed = h
	}
	clear(c.dirtyList)
	c.dirtyList, c.cleaned = c.dirtyList[:0], 0
	return c.digest
}

// keys returns the item keys in sorted (byte) order. The slice is shared:
// callers must not modify it, and it stays valid (as a snapshot) after
// items are added or removed.
func (c *collection) keys() []string {
	c.s.ensureLoaded()
	if c.sorted == nil {
		c.sorted = make([]string, 0, c.len())
		for k := range c.items {
			c.sorted = append(c.sorted, k)
		}
		if c.cold != nil {
			c.cold.each(func(_ uint32, r *coldRec) bool {
				c.sorted = append(c.sorted, string(c.cold.key(r)))
				return true
			})
		}
		slices.Sort(c.sorted)
	}
	return c.sorted
}

// validate checks that op fits this collection. It does not look at
// service, origin or seq (the store does).
func (c *collection) validate(op *tempestpb.Op) error {
	k := op.GetKind()
	if !c.kind.accepts(k) {
		return fmt.Errorf("%w: %s collection %q does not take %v", ErrBadOp, c.kind, c.name, k)
	}
	if c.kind.keyed() {
		if err := c.validKey(op.GetItem()); err != nil {
			return fmt.Errorf("%w: %s %q: item key: %v", ErrBadOp, c.kind, c.name, err)
		}
	} else if len(op.GetItem()) != 0 {
		return fmt.Errorf("%w: %s %q is one item; op names item %q", ErrBadOp, c.kind, c.name, truncate(op.GetItem()))
	}
	switch k {
	case tempestpb.OpKind_OP_PUT, tempestpb.OpKind_OP_LIST_APPEND, tempestpb.OpKind_OP_LIST_INSERT, tempestpb.OpKind_OP_LIST_SET:
		if err := c.validValue(op.GetValue()); err != nil {
			return fmt.Errorf("%w: %s %q: value: %v", ErrBadOp, c.kind, c.name, err)
		}
	case tempestpb.OpKind_OP_USER:
		uo := c.userOps[op.GetUserOp()]
		if uo == nil {
			return fmt.Errorf("%w: %q on map %q", ErrUnknownOp, op.GetUserOp(), c.name)
		}
		if err := uo.validate(op.GetValue()); err != nil {
			return fmt.Errorf("%w: user op %q on map %q: args: %v", ErrBadOp, op.GetUserOp(), c.name, err)
		}
	}
	return nil
}

func truncate(b []byte) string {
	const n = 64
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// describe renders a value for diagnostics.
func describe(k kind, v *tempestpb.ItemValue) string {
	switch k {
	case kindMap:
		if !v.GetExists() {
			return "<absent>"
		}
		return truncate(v.GetData())
	case kindSet:
		if v.GetExists() {
			return "<present>"
		}
		return "<absent>"
	case kindList:
		parts := make([]string, len(v.GetElems()))
		for i, e := range v.GetElems() {
			parts[i] = truncate(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case kindCounter:
		return fmt.Sprint(v.GetCount())
	}
	return "?"
}

// liveItems iterates over c's existing items whose keys decode, with their
// current values, in encoded-key order. Keys are taken when iteration
// starts and each item is looked up as iteration reaches it, so items
// deleted meanwhile are skipped and the loop body may mutate the
// collection.
func liveItems[K any](c *collection, kc Codec[K]) iter.Seq2[K, value] {
	return func(yield func(K, value) bool) {
		for _, kb := range c.keys() {
			v, ok := c.current([]byte(kb))
			if !ok || !v.exists {
				continue
			}
			k, err := kc.Decode([]byte(kb))
			if err != nil {
				continue
			}
			if !yield(k, v) {
				return
			}
		}
	}
}
