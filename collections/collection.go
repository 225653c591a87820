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

	items  map[string]*item
	sorted []string // keys of items, sorted; nil when stale
	live   int      // items whose cur exists (map, set)

	digest    uint64  // sum of item.hashed over items
	dirtyList []*item // items whose hash is stale

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
	s.colls[name] = c
	s.collNames = nil
	return c
}

// lookup returns the item named key, or nil.
func (c *collection) lookup(key []byte) *item { return c.items[string(key)] }

// get returns the item named key, creating an empty one.
func (c *collection) get(key []byte) *item {
	if it := c.items[string(key)]; it != nil {
		return it
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
	c.sorted = nil
}

// digestNow brings the collection digest up to date and returns it.
func (c *collection) digestNow() uint64 {
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
	c.dirtyList = c.dirtyList[:0]
	return c.digest
}

// keys returns the item keys in sorted (byte) order. The slice is shared:
// callers must not modify it, and it stays valid (as a snapshot) after
// items are added or removed.
func (c *collection) keys() []string {
	if c.sorted == nil {
		c.sorted = make([]string, 0, len(c.items))
		for k := range c.items {
			c.sorted = append(c.sorted, k)
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

// liveItems iterates over c's existing items whose keys decode, in
// encoded-key order. Keys are taken when iteration starts and each item is
// looked up as iteration reaches it, so items deleted meanwhile are skipped
// and the loop body may mutate the collection.
func liveItems[K any](c *collection, kc Codec[K]) iter.Seq2[K, *item] {
	return func(yield func(K, *item) bool) {
		for _, kb := range c.keys() {
			it := c.items[kb]
			if it == nil || !it.cur.exists {
				continue
			}
			k, err := kc.Decode([]byte(kb))
			if err != nil {
				continue
			}
			if !yield(k, it) {
				return
			}
		}
	}
}
