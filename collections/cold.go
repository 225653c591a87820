package collections

import (
	"bytes"
	"encoding/binary"
	"hash/maphash"
)

// coldTable holds a keyed collection's quiet items in memory the garbage
// collector does not scan.
//
// Why: a replica of a million items held as Go objects (an item struct,
// its key string, its value bytes, a map entry pointing at them) is three
// million pointers that every GC cycle marks: about 590 ns of GC CPU per
// item and cycle at 1M items (BenchmarkGCPerItem), seconds of CPU taken
// from requests on a busy node, and more the more state it holds. Most
// items of a large replica are quiet: no tentative ops, nothing a snapshot
// or the digest still needs from them as objects. They live here instead,
// as fixed-size records in pages and their key and value bytes in arena
// chunks, found through an index from a 64-bit hash of the key to the
// record's slot (coldIndex). None of those contain pointers (the page and chunk lists hold a few
// hundred), so a cycle marks the replica's few large blocks and not its
// items, and a restore fills them without an allocation per item.
//
// An item is moved here (collection.demote, by Store.Tidy) once it is
// quiet, and back to a Go object (collection.promote) when an op touches
// it; reads are answered from here directly. Cold items always exist: an
// empty item of a map or set is dropped, never kept.
//
// Invariants: a record's key and data bytes are never modified once
// written, and a chunk is never written below its length again, so a
// value handed out (Store.Value, a snapshot chunk) stays valid however the
// table changes later; an evacuated chunk is dropped, not reused. Each live
// slot has one entry in idx, under its key's hash (keys of one hash have one
// entry each: a lookup compares keys).
type coldTable struct {
	seed  maphash.Seed
	idx   coldIndex   // hash of the key → slot
	pages [][]coldRec // slot i is pages[i>>coldPageBits][i&coldPageMask]
	top   uint32      // slots handed out so far
	free  []uint32    // free slots below top
	n     int         // live records
	// The capture cursor: the records at slots below capUpTo are
	// captured by the snapshot stream of epoch capEpoch (the stream's
	// iteration reached them; MaxUint32: it read the whole table).
	capEpoch, capUpTo uint32
	// foldBase: the entries' fold timestamps are stored as their wall
	// time's difference to it (the first one stored): 3 or 4 bytes for a
	// table's usual span of days, against 6 for the milliseconds since
	// 1970.
	foldBase uint64
	kv       int // their key and data bytes (without the fold timestamps)

	chunks     [][]byte // the arena; chunk id i+1 is chunks[i] (nil: dropped)
	chunkLive  []int    // live bytes per chunk
	freeChunks []uint32 // ids of dropped chunks, for reuse
	active     uint32   // the chunk new bytes go to (0: none yet)
	size       int      // capacity of the chunks not dropped
	live       int      // bytes records use (the sum of chunkLive)

	// The evacuation: chunks a quarter dead or more are emptied by a sweep over the
	// slots that copies their records' bytes to the active chunk, a few
	// slots per compactStep, and dropped when the sweep ends.
	evacuating map[uint32]bool
	sweep      uint32 // next slot the sweep visits
}

// coldRec is one cold item: where its entry is in the arena. 16 bytes, of
// each item of a large replica, so it keeps nothing it can do without:
//   - not its hash (item.hashed): hashing the key and value again
//     (hashItem) costs a promotion, a restore or ItemDigests well under
//     100 ns;
//   - not the timestamp of the op folded last (item.foldedWall and
//     foldedLogical) as two fixed fields (12 bytes and 4 of padding): the
//     entry holds it, as two varints after the data (4 or 5 bytes), and
//     only if it is not zero (coldFolded), since only a promotion reads it;
//   - not its snapshot capture mark (item.captured): a full stream reads a
//     table by slot, so the slots it reached are the captured ones
//     (coldTable.capUpTo);
//   - its membership of the store's change window (item.window) as two
//     flags in the offset's spare bits (memberFlag).
//
// An entry is key | data | [varint(fold wall - foldBase) uvarint(fold
// logical)].
type coldRec struct {
	chunk   uint32 // arena chunk id; 0: a free slot
	off     uint32 // the key's offset in the chunk (offset()), the data follows it; and memberFlag flags
	keyLen  uint32 // with coldFolded: the fold timestamp follows the data
	dataLen uint32
}

// coldFolded is the flag in coldRec.keyLen saying the entry holds a fold
// timestamp; keys are shorter than this.
const coldFolded = 1 << 31

func (r *coldRec) klen() uint32 { return r.keyLen &^ coldFolded }

// An offset in a chunk is below arenaChunk (an entry of its own chunk is
// at 0), so coldRec.off has bits to spare above coldOffMask. Two of them
// say the record is a member of a change window (Store.window): bit
// coldMemberBit<<(window&1), set while the window's list of cold members
// (Store.coldChanged, then its delta stream's) names the slot. See
// collection.demote.
const (
	coldOffBits   = 28
	coldOffMask   = 1<<coldOffBits - 1
	coldMemberBit = 1 << coldOffBits
	coldMembers   = coldMemberBit | coldMemberBit<<1
)

// memberFlag is the coldRec.off flag of the members of change window w.
func memberFlag(w uint32) uint32 { return coldMemberBit << (w & 1) }

func (r *coldRec) offset() uint32 { return r.off & coldOffMask }

// Offsets must fit below the flags.
var _ [coldOffMask + 1 - arenaChunk]struct{}

const (
	coldPageBits = 12
	coldPageSize = 1 << coldPageBits
	coldPageMask = coldPageSize - 1

	// arenaChunk is the largest size of an arena chunk, arenaChunkMin the
	// smallest: a table's chunks are an eighth of its live bytes between
	// the two (chunkSize). An entry larger than a quarter of the chunk
	// size gets a chunk of its own, dropped when it dies.
	arenaChunk    = 1 << 20
	arenaChunkMin = 64 << 10

	// An evacuation starts when at least evacuateMin bytes and a quarter
	// of the arena are dead, and empties the chunks at most three quarters
	// live: an arena stays within 4/3 of what its items use. (Half and
	// half, as first, let a table whose items change all the time hold
	// twice what they use: ~27 bytes an item of a 100,000-item cart
	// replica under load.) Moving a record copies its bytes, ~3 bytes
	// moved per byte freed at worst.
	evacuateMin = 4 * arenaChunkMin
)

// chunkSize is the capacity of the next chunk new entries go to. The room
// of the active chunk not filled yet is up to a chunk of slack, so a
// chunk is kept to an eighth of what the table holds: a table of 100,000
// cart items (~2.7 MB) with 1 MiB chunks held ~0.5 MiB of slack on
// average, 5 bytes per item (TestBytesPerItem).
func (t *coldTable) chunkSize() int { return min(arenaChunk, max(arenaChunkMin, t.live/8)) }

func newColdTable() *coldTable {
	return &coldTable{seed: maphash.MakeSeed()}
}

// len is the number of cold items.
func (t *coldTable) len() int { return t.n }

func (t *coldTable) rec(slot uint32) *coldRec {
	return &t.pages[slot>>coldPageBits][slot&coldPageMask]
}

// captured is the item.captured mark of the record at slot: the epoch of
// the stream whose iteration reached it, or 0.
func (t *coldTable) captured(slot uint32) uint32 {
	if slot < t.capUpTo {
		return t.capEpoch
	}
	return 0
}

// key and data return a record's bytes, shared with the arena: read-only.
func (t *coldTable) key(r *coldRec) []byte {
	c := t.chunks[r.chunk-1]
	off := r.offset()
	end := off + r.klen()
	return c[off:end:end]
}

func (t *coldTable) data(r *coldRec) []byte {
	c := t.chunks[r.chunk-1]
	start := r.offset() + r.klen()
	return c[start : start+r.dataLen : start+r.dataLen]
}

// entry returns a record's whole entry (read-only) and its fold
// timestamp (zero if it has none).
func (t *coldTable) entry(r *coldRec) ([]byte, Timestamp) {
	c := t.chunks[r.chunk-1]
	off := r.offset()
	end := off + r.klen() + r.dataLen
	var ts Timestamp
	if r.keyLen&coldFolded != 0 {
		delta, a := binary.Varint(c[end:])
		logical, b := binary.Uvarint(c[int(end)+a:])
		if a <= 0 || b <= 0 {
			panic("collections: cold table: a corrupt fold timestamp") // written by store: a bug
		}
		ts = Timestamp{WallMs: t.foldBase + uint64(delta), Logical: uint32(logical)}
		end += uint32(a + b)
	}
	return c[off:end:end], ts
}

func (t *coldTable) hash(key []byte) uint64 { return maphash.Bytes(t.seed, key) }

// coldHash is a cold item's contribution to c's digest (item.hashed,
// which a record does not keep: hashItem of its key and value again).
func (c *collection) coldHash(r *coldRec) uint64 {
	v := value{exists: true, data: c.cold.data(r)}
	return hashItem(c.name, c.kind, c.cold.key(r), &v)
}

// find returns the slot of the item named key.
func (t *coldTable) find(key []byte) (uint32, bool) {
	if t.n == 0 {
		return 0, false
	}
	return t.probe(key, t.hash(key))
}

// probe looks key up under its hash h.
func (t *coldTable) probe(key []byte, h uint64) (slot uint32, ok bool) {
	x := &t.idx
	if x.n == 0 {
		return 0, false
	}
	tag := tagHash(h)
	for i := x.home(h); ; i = x.next(i) {
		e := x.entries[i]
		if e == 0 {
			return 0, false
		}
		if tagHash(e) == tag && bytes.Equal(t.key(t.rec(slotOf(e))), key) {
			return slotOf(e), true
		}
	}
}

// put adds an item that is not in the table, with its fold timestamp,
// and returns its slot.
func (t *coldTable) put(key, data []byte, fold Timestamp) uint32 {
	return t.putHashed(key, data, fold, t.hash(key))
}

// putOnce adds the item unless the table holds its key, and reports
// whether it did: one hash and one probe (a restore's dup check and
// insert).
func (t *coldTable) putOnce(key, data []byte) bool {
	h := t.hash(key)
	if _, ok := t.probe(key, h); ok {
		return false
	}
	t.putHashed(key, data, Timestamp{}, h)
	return true
}

func (t *coldTable) putHashed(key, data []byte, fold Timestamp, h uint64) uint32 {
	if len(key) >= coldFolded {
		panic("collections: cold table: a key of 2 GiB") // a protobuf message cannot hold one
	}
	var buf [2 * binary.MaxVarintLen64]byte
	var foldBytes []byte
	var r coldRec
	r.keyLen, r.dataLen = uint32(len(key)), uint32(len(data))
	if !fold.IsZero() {
		if t.foldBase == 0 {
			t.foldBase = fold.WallMs
		}
		foldBytes = binary.AppendUvarint(binary.AppendVarint(buf[:0], int64(fold.WallMs-t.foldBase)), uint64(fold.Logical))
		r.keyLen |= coldFolded
	}
	r.chunk, r.off = t.store(key, data, foldBytes)
	var slot uint32
	if n := len(t.free); n > 0 {
		slot = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		slot = t.top
		t.top++
		if int(slot>>coldPageBits) == len(t.pages) {
			t.pages = append(t.pages, make([]coldRec, coldPageSize))
		}
	}
	*t.rec(slot) = r
	t.idx.insert(h, slot)
	t.n++
	t.kv += len(key) + len(data)
	return slot
}

// del removes the item at slot.
func (t *coldTable) del(slot uint32) {
	r := t.rec(slot)
	t.idx.remove(t.hash(t.key(r)), slot)
	e, _ := t.entry(r)
	t.release(r.chunk, len(e))
	t.kv -= int(r.klen() + r.dataLen)
	*r = coldRec{}
	t.free = append(t.free, slot)
	t.n--
}

// store appends an entry (key, data and fold, the last two possibly
// empty) to the arena and returns where it went.
func (t *coldTable) store(key, data, fold []byte) (chunk, off uint32) {
	n := len(key) + len(data) + len(fold)
	id, size := t.active, t.chunkSize()
	if n > size/4 {
		id = t.newChunk(n)
	} else if id == 0 || len(t.chunks[id-1])+n > cap(t.chunks[id-1]) {
		// The rest of a full active chunk stays unused.
		id = t.newChunk(size)
		t.active = id
	}
	c := t.chunks[id-1]
	off = uint32(len(c))
	c = append(c, key...)
	c = append(c, data...)
	t.chunks[id-1] = append(c, fold...)
	t.chunkLive[id-1] += n
	t.live += n
	return id, off
}

// newChunk opens an empty chunk of capacity n and returns its id.
func (t *coldTable) newChunk(n int) uint32 {
	c := make([]byte, 0, n)
	t.size += n
	if k := len(t.freeChunks); k > 0 {
		id := t.freeChunks[k-1]
		t.freeChunks = t.freeChunks[:k-1]
		t.chunks[id-1], t.chunkLive[id-1] = c, 0
		return id
	}
	t.chunks = append(t.chunks, c)
	t.chunkLive = append(t.chunkLive, 0)
	return uint32(len(t.chunks))
}

// release records that n bytes of chunk id are no longer used; a chunk
// left with none is dropped unless new bytes still go to it.
func (t *coldTable) release(id uint32, n int) {
	t.chunkLive[id-1] -= n
	t.live -= n
	if t.chunkLive[id-1] == 0 && id != t.active {
		t.drop(id)
	}
}

func (t *coldTable) drop(id uint32) {
	t.size -= cap(t.chunks[id-1])
	t.chunks[id-1] = nil
	t.freeChunks = append(t.freeChunks, id)
	delete(t.evacuating, id)
}

// deadBytes is what the arena holds that no record uses, not counting the
// active chunk's room still to fill.
func (t *coldTable) deadBytes() int {
	d := t.size - t.live
	if t.active != 0 {
		c := t.chunks[t.active-1]
		d -= cap(c) - len(c)
	}
	return d
}

// compactStep advances the arena's evacuation by at most budget slots,
// starting one when enough of the arena is dead (see evacuateMin), and
// returns the slots visited. Its cost is bounded by budget: a slot visited
// costs a compare, a record moved a copy of its bytes.
func (t *coldTable) compactStep(budget int) int {
	if t.evacuating == nil {
		d := t.deadBytes()
		if d < evacuateMin || d < t.size/4 {
			return 0
		}
		// The chunks at most three quarters live: sealed ones by their
		// capacity, the active one by what it holds (it is sealed then, so
		// that moved bytes go to a fresh chunk). If none were, less than a
		// quarter of the arena would be dead, so the sweep never runs for
		// nothing.
		t.evacuating = map[uint32]bool{}
		for i, c := range t.chunks {
			id := uint32(i + 1)
			switch {
			case c == nil:
			case id == t.active:
				if t.chunkLive[i] <= len(c)*3/4 {
					t.active = 0
					if t.chunkLive[i] == 0 {
						t.drop(id) // no record to move: release will not drop it
					} else {
						t.evacuating[id] = true
					}
				}
			case t.chunkLive[i] <= cap(c)*3/4:
				t.evacuating[id] = true
			}
		}
		t.sweep = 0
	}
	visited := 0
	for ; visited < budget && t.sweep < t.top; visited++ {
		r := t.rec(t.sweep)
		t.sweep++
		if r.chunk == 0 || !t.evacuating[r.chunk] {
			continue
		}
		e, _ := t.entry(r)
		old, flags := r.chunk, r.off&^coldOffMask
		var off uint32
		r.chunk, off = t.store(e, nil, nil)
		r.off = off | flags
		t.release(old, len(e))
	}
	if t.sweep == t.top {
		// Every record of an evacuated chunk moved: the chunks are empty
		// (release dropped them as their last record left).
		t.evacuating = nil
	}
	return visited
}

// each calls fn for every live slot, in slot order, until fn returns
// false. fn may delete the slot it is given, not others; slots added
// meanwhile may or may not be visited.
func (t *coldTable) each(fn func(slot uint32, r *coldRec) bool) {
	for slot := uint32(0); slot < t.top; slot++ {
		r := t.rec(slot)
		if r.chunk == 0 {
			continue
		}
		if !fn(slot, r) {
			return
		}
	}
}
