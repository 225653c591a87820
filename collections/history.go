package collections

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/tempestrt/tempest/proto/tempestpb"
)

// OpID names one op: its origin replica and that origin's sequence number.
type OpID struct {
	Origin string
	Seq    uint64
}

// ID returns op's OpID.
func ID(op *tempestpb.Op) OpID { return OpID{Origin: op.GetOrigin(), Seq: op.GetSeq()} }

func (id OpID) String() string { return id.Origin + "#" + formatUint(id.Seq) }

func formatUint(n uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// opKey is the total order of ops on an item: timestamp, then origin, then
// seq. Seq only matters if one origin stamps two ops alike, which a correct
// origin never does (its timestamps strictly increase); it keeps the order
// total and identical everywhere even then.
type opKey struct {
	ts     Timestamp
	origin string
	seq    uint64
}

func keyOf(op *tempestpb.Op) opKey {
	return opKey{ts: TimestampOf(op), origin: op.GetOrigin(), seq: op.GetSeq()}
}

func (a opKey) compare(b opKey) int {
	if c := a.ts.Compare(b.ts); c != 0 {
		return c
	}
	if c := cmp.Compare(a.origin, b.origin); c != 0 {
		return c
	}
	return cmp.Compare(a.seq, b.seq)
}

// value is an item's value. Which fields matter depends on the collection
// kind: map (exists, data), set (exists), list (elems), counter (count).
//
// Byte slices (data, each element) are never modified once stored, so
// copies of a value share them; only the elems slice itself is mutated in
// place, by the history that owns it, which is why checkpoints clone it.
type value struct {
	exists bool
	data   []byte
	elems  [][]byte
	count  int64
}

func (v value) clone() value {
	v.elems = slices.Clone(v.elems)
	return v
}

// zero reports whether v is the kind's empty value: an absent map entry or
// set element, an empty list, a zero counter. Zero items are not hashed
// into digests and are dropped once they have no tentative ops, so "never
// touched" and "emptied again" are the same state on every replica.
func (v *value) zero() bool { return !v.exists && len(v.elems) == 0 && v.count == 0 }

func (v *value) toProto() *tempestpb.ItemValue {
	return &tempestpb.ItemValue{Exists: v.exists, Data: v.data, Elems: slices.Clone(v.elems), Count: v.count}
}

func valueFromProto(k kind, pv *tempestpb.ItemValue) value {
	switch k {
	case kindMap:
		if pv.GetExists() {
			return value{exists: true, data: pv.GetData()}
		}
	case kindSet:
		return value{exists: pv.GetExists()}
	case kindList:
		return value{elems: slices.Clone(pv.GetElems())}
	case kindCounter:
		return value{count: pv.GetCount()}
	}
	return value{}
}

// undoRec reverts one applied op: the value before it (map, set, counter)
// or, for lists, the inverse edit, so reverting never copies the list.
type undoRec struct {
	prev value    // map, set, counter: the whole previous value (elems nil)
	list listUndo // list: what reverts the op
	idx  int      // list: index the op touched
	elem []byte   // list: element the op removed or overwrote
}

type listUndo uint8

const (
	listNothing  listUndo = iota // the op changed nothing (index out of range)
	listPop                      // the op appended
	listDeleteAt                 // the op inserted at idx
	listInsertAt                 // the op removed elem at idx
	listSetAt                    // the op overwrote elem at idx
)

// revert undoes the op u was recorded for; v must be the value right
// after that op.
func revert(k kind, v *value, u *undoRec) {
	if k != kindList {
		*v = u.prev
		return
	}
	switch u.list {
	case listPop:
		v.elems[len(v.elems)-1] = nil
		v.elems = v.elems[:len(v.elems)-1]
	case listDeleteAt:
		v.elems = slices.Delete(v.elems, u.idx, u.idx+1)
	case listInsertAt:
		v.elems = slices.Insert(v.elems, u.idx, u.elem)
	case listSetAt:
		v.elems[u.idx] = u.elem
	}
}

// item is one data item: a collection's map entry, set element, whole list
// or counter. Its history is
//
//	base  (value after every folded op: stable, never reordered)
//	ops   (tentative ops, sorted by opKey)
//	cur   (value after base + all ops: what reads see)
//
// Only cur is stored. undo[i] reverts ops[i] (applied on top of
// ops[:i]), so base is cur with every undo applied, newest first.
//
// Inserting an op at position i rolls cur back by reverting ops[i:]
// newest first, then re-applies the new op and ops[i:]. The cost is
// 2*(len(ops)-i) cheap steps — an op that is late by a little replays a
// little — and never a copy of the value: the alternative of caching
// intermediate values every k ops (checkpoints) was measured and rejected,
// because a checkpoint of a list copies the whole list (118 µs per
// appended op on a 300 000-element list with k = 32). Folding the oldest
// tentative op is dropping its undo record: O(1).
//
// ops, undo and the item's place in the store's heap are its history, a
// separate allocation that exists only while the item has tentative ops:
// most items of a large replica have none (everything folded), and
// without them an item is 128 bytes instead of 240.
//
// Invariants: h == nil or len(h.ops) > 0 once a change is complete;
// len(undo) == len(ops); cur is owned (its elems slice is shared with
// nothing).
type item struct {
	c   *collection
	key string

	cur    value
	h      *history // nil: no tentative ops
	hashed uint64

	// foldedWall and foldedLogical are the timestamp of the newest op
	// folded into cur (zero if none): a late op stamped before it is
	// counted as misplaced. (Two fields, not a Timestamp, so that the
	// 32-bit fields below share its padding: 128 bytes, a size class.)
	foldedWall    uint64
	foldedLogical uint32

	// captured is the epoch of the latest snapshot stream that holds this
	// item's state at its capture point (or knows it was absent then); see
	// SnapshotStream. 0: none.
	captured uint32
	// window is the store's change window in which the item last changed
	// (Store.window), so that it joins Store.changed once per window.
	window uint32

	live    bool // cur.exists as last counted in collection.live
	cooling bool // in Store.cooling
	dirty   bool // cur changed since hashed was computed
	gone    bool // dropped from its collection
}

// foldedTS is the timestamp of the newest op folded into the item.
func (it *item) foldedTS() Timestamp {
	return Timestamp{WallMs: it.foldedWall, Logical: it.foldedLogical}
}

// history is an item's tentative ops, what reverts each, and the item's
// index in Store.heap (-1 when not in it).
type history struct {
	ops     []*tempestpb.Op
	undo    []undoRec
	heapIdx int
}

// pending returns the item's tentative ops (nil if none).
func (it *item) pending() []*tempestpb.Op {
	if it.h == nil {
		return nil
	}
	return it.h.ops
}

// heapIdx is the item's index in Store.heap, -1 when not in it.
func (it *item) heapIdx() int {
	if it.h == nil {
		return -1
	}
	return it.h.heapIdx
}

// position returns where an op with key k belongs in its ops.
func (it *item) position(k opKey) int {
	ops := it.pending()
	n := len(ops)
	// Fast path: ops usually arrive in order.
	if n == 0 || keyOf(ops[n-1]).compare(k) < 0 {
		return n
	}
	if mutation == mutationTiesByArrival { // a test's deliberate bug, see mutant.go
		return it.positionByArrival(k)
	}
	i, _ := slices.BinarySearchFunc(ops, k, func(op *tempestpb.Op, k opKey) int { return keyOf(op).compare(k) })
	return i
}

func (it *item) indexOf(op *tempestpb.Op) int {
	ops := it.pending()
	for i := len(ops) - 1; i >= 0; i-- {
		if ops[i] == op {
			return i
		}
	}
	return -1
}

// rollback reverts ops[i:] from cur, newest first.
func (s *Store) rollback(it *item, i int) {
	h := it.h
	if h == nil {
		return
	}
	for j := len(h.ops) - 1; j >= i; j-- {
		revert(it.c.kind, &it.cur, &h.undo[j])
		h.undo[j] = undoRec{}
		s.stats.RolledBack++
	}
}

// replay re-applies ops[i:] on top of cur.
func (s *Store) replay(it *item, i int) {
	h := it.h
	if h == nil {
		return
	}
	if mutation == mutationReplaySkipsOne && len(h.ops)-i >= 2 { // a test's deliberate bug, see mutant.go
		s.replaySkippingLast(it, i)
		return
	}
	for j := i; j < len(h.ops); j++ {
		h.undo[j] = s.apply(it.c, &it.cur, h.ops[j])
	}
}

// insert puts op at position i and brings cur up to date.
func (s *Store) insert(it *item, i int, op *tempestpb.Op) {
	if mutation != mutationStreamInsertUnhooked { // a test's deliberate bug, see mutant.go
		s.changing(it)
	}
	s.rollback(it, i)
	if it.h == nil {
		it.h = &history{heapIdx: -1}
	}
	h := it.h
	h.ops = slices.Insert(h.ops, i, op)
	h.undo = slices.Insert(h.undo, i, undoRec{})
	s.stats.Replayed += uint64(len(h.ops) - i - 1)
	s.replay(it, i)
}

// remove takes the op at position i out of the history (retraction). If
// that empties it, the caller's reheap releases it.
func (s *Store) remove(it *item, i int) {
	s.changing(it)
	s.rollback(it, i)
	h := it.h
	h.ops[i] = nil
	h.ops = slices.Delete(h.ops, i, i+1)
	h.undo = slices.Delete(h.undo, i, i+1)
	s.stats.Replayed += uint64(len(h.ops) - i)
	s.replay(it, i)
}

// foldFirst makes the oldest tentative op part of the base. If that
// empties the history, the caller's reheap releases it.
func (s *Store) foldFirst(it *item) *tempestpb.Op {
	if mutation != mutationStreamFoldUnhooked { // a test's deliberate bug, see mutant.go
		s.changing(it)
	}
	h := it.h
	op := h.ops[0]
	h.ops[0], h.undo[0] = nil, undoRec{}
	h.ops, h.undo = h.ops[1:], h.undo[1:]
	if len(h.ops) == 0 {
		h.ops, h.undo = nil, nil
	}
	it.foldedWall, it.foldedLogical = op.GetWallMs(), op.GetLogical()
	return op
}

// base computes the item's base value (cur with every tentative op
// reverted) without changing the item.
func (it *item) base() value {
	h := it.h
	if h == nil || len(h.ops) == 0 {
		return it.cur
	}
	v := it.cur.clone()
	for j := len(h.ops) - 1; j >= 0; j-- {
		revert(it.c.kind, &v, &h.undo[j])
	}
	return v
}

// apply performs op on v in place and returns what reverts it. It cannot
// fail: ops are validated before they enter a history. A registered user
// op that panics or whose result cannot be encoded leaves v unchanged — on
// every replica alike, since user ops are deterministic — and is counted
// in Stats.
func (s *Store) apply(c *collection, v *value, op *tempestpb.Op) (u undoRec) {
	s.stats.Applies++
	if c.kind != kindList {
		u.prev = *v
	}
	switch op.GetKind() {
	case tempestpb.OpKind_OP_PUT:
		v.exists, v.data = true, op.GetValue()
	case tempestpb.OpKind_OP_DELETE:
		v.exists, v.data = false, nil
	case tempestpb.OpKind_OP_SET_ADD:
		v.exists = true
	case tempestpb.OpKind_OP_SET_REMOVE:
		v.exists = false
	case tempestpb.OpKind_OP_LIST_APPEND:
		v.elems = append(v.elems, op.GetValue())
		u.list = listPop
	case tempestpb.OpKind_OP_LIST_INSERT:
		i := int(min(max(op.GetIndex(), 0), int64(len(v.elems))))
		v.elems = slices.Insert(v.elems, i, op.GetValue())
		u.list, u.idx = listDeleteAt, i
	case tempestpb.OpKind_OP_LIST_REMOVE_AT:
		if i := op.GetIndex(); i >= 0 && i < int64(len(v.elems)) {
			u.list, u.idx, u.elem = listInsertAt, int(i), v.elems[i]
			v.elems = slices.Delete(v.elems, int(i), int(i)+1)
		}
	case tempestpb.OpKind_OP_LIST_SET:
		if i := op.GetIndex(); i >= 0 && i < int64(len(v.elems)) {
			u.list, u.idx, u.elem = listSetAt, int(i), v.elems[i]
			v.elems[i] = op.GetValue()
		}
	case tempestpb.OpKind_OP_COUNTER_ADD:
		v.count += op.GetDelta() // wraps on overflow, identically everywhere
	case tempestpb.OpKind_OP_USER:
		s.applyUser(c, v, op)
	}
	return u
}

// applyUser applies a user op. A failure (panic, or a value or argument
// that does not decode or encode) leaves v unchanged; when the op is the
// one Store.mutate is making, the failure is reported to it (madeErr) so
// that Map.Do returns it and the Update fails.
func (s *Store) applyUser(c *collection, v *value, op *tempestpb.Op) {
	uo := c.userOps[op.GetUserOp()]
	s.applying++
	defer func() {
		s.applying--
		if r := recover(); r != nil {
			s.stats.UserOpPanics++
			if op != s.making || s.madeErr != nil {
				return
			}
			if e, ok := r.(error); ok && errors.Is(e, ErrReadOnly) {
				// The function mutated a collection: a programming error,
				// which mutate re-raises as a panic once the op is in place.
				s.madePanic = fmt.Errorf("collections: user op %q on map %q: %w", op.GetUserOp(), c.name, e)
			}
			s.madeErr = fmt.Errorf("%w: %q on map %q: %v", ErrUserOpPanic, op.GetUserOp(), c.name, r)
		}
	}()
	next, err := uo.apply(*v, op.GetValue())
	if err != nil {
		s.stats.UserOpErrors++
		if op == s.making && s.madeErr == nil {
			s.madeErr = fmt.Errorf("%w: user op %q on map %q: %v", ErrCodec, op.GetUserOp(), c.name, err)
		}
		return
	}
	*v = next
}

// hashItem is an item's contribution to its collection's digest: 0 for a
// zero value, else a 64-bit hash of (collection, key, value). Digests are
// sums of contributions, so they do not depend on the order in which
// items were created, and are equal on replicas holding equal values.
func hashItem[K ~string | ~[]byte](coll string, k kind, key K, v *value) uint64 {
	if v.zero() {
		return 0
	}
	h := uint64(fnvOffset)
	h = fnvLen(h, coll)
	h = fnvByte(h, byte(k))
	h = fnvLen(h, key)
	switch k {
	case kindMap:
		h = fnvBytes(h, v.data)
	case kindList:
		h = fnvUint(h, uint64(len(v.elems)))
		for _, e := range v.elems {
			h = fnvBytes(h, e)
		}
	case kindCounter:
		h = fnvUint(h, uint64(v.count))
	}
	return mix64(h)
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnvByte(h uint64, b byte) uint64 { return (h ^ uint64(b)) * fnvPrime }

func fnvUint(h uint64, n uint64) uint64 {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], n)
	for _, c := range b {
		h = fnvByte(h, c)
	}
	return h
}

// fnvLen hashes len(s) then s, so adjacent fields cannot run into each other.
func fnvLen[S ~string | ~[]byte](h uint64, s S) uint64 {
	h = fnvUint(h, uint64(len(s)))
	for i := 0; i < len(s); i++ {
		h = fnvByte(h, s[i])
	}
	return h
}

func fnvBytes(h uint64, b []byte) uint64 {
	h = fnvUint(h, uint64(len(b)))
	for _, c := range b {
		h = fnvByte(h, c)
	}
	return h
}

// mix64 is the splitmix64 finalizer: FNV's low bits are weak, and digests
// add contributions, so every bit should depend on every input bit.
func mix64(h uint64) uint64 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// itemHeap orders items with tentative ops by their oldest op, so Compact
// finds stable ops without scanning idle items.
type itemHeap []*item

func (h itemHeap) Len() int { return len(h) }
func (h itemHeap) Less(i, j int) bool {
	return keyOf(h[i].h.ops[0]).compare(keyOf(h[j].h.ops[0])) < 0
}
func (h itemHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].h.heapIdx, h[j].h.heapIdx = i, j
}
func (h *itemHeap) Push(x any) {
	it := x.(*item)
	it.h.heapIdx = len(*h)
	*h = append(*h, it)
}
func (h *itemHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	it.h.heapIdx = -1
	return it
}
