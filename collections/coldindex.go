package collections

// coldIndex maps the 64-bit hash of a cold item's key to its record's slot:
// an open-addressing table with linear probing, of 8-byte entries holding
// the slot and the hash's top 32 bits (its tag). The coldTable compares
// keys on a tag match, so two keys of one hash are two entries.
//
// Why not a map[uint64]uint32: the Go map spends 16 bytes and a control
// byte per slot (its key and value pairs are padded), against 8 / load
// here; a restore, which inserts a million items in a row, spent half of a
// restart's CPU in its lookups at 1M items, and runs about 25% faster with
// this one (BenchmarkSnapshotStream/restore-trusted-encoded). An entry's
// home is its tag scaled to the table's length (tag * len >> 32, monotone
// in the tag), so the table can be rebuilt (grow) from the tags alone, in
// one sequential pass, without reading a key; and its length need not be
// a power of two, so it grows by half (coldIndexGrowNum/Den), not double:
// between 1/2 and 3/4 full, 10.7 to 16 bytes per entry, where doubling
// left it between 3/8 and 3/4 full, up to 21 (at 1M items, 2^21 entries:
// 16.8 bytes per item; grown by half, 1.5M entries: 12.1).
//
// Invariants: len(entries) is 0 or at least coldIndexMinSize, at most
// 1<<32; n live entries, at most LoadNum/LoadDen of len(entries); every
// live entry is at its home or after it (cyclically), with no empty entry
// in between (linear probing, kept by remove's backward shift: there are
// no tombstones).
type coldIndex struct {
	entries []uint64 // tag<<32 | slot+1; 0: empty
	n       int
}

// The table grows when an insert would fill more than LoadNum/LoadDen of
// it (linear probing stays within a cache line or two below 3/4), to
// GrowNum/GrowDen of its length.
const (
	coldIndexLoadNum, coldIndexLoadDen = 3, 4
	coldIndexGrowNum, coldIndexGrowDen = 3, 2
	coldIndexMinSize                   = 8
	coldIndexMaxSize                   = 1 << 32 // homes are scaled 32-bit tags
)

// next is the entry after i, cyclically.
func (x *coldIndex) next(i int) int {
	if i++; i == len(x.entries) {
		return 0
	}
	return i
}

// home is where an entry of hash h (or tag, its top 32 bits) belongs.
func (x *coldIndex) home(h uint64) int { return int((h >> 32) * uint64(len(x.entries)) >> 32) }

// tagHash is an entry's (or a hash's) tag: its top 32 bits, in place.
func tagHash(e uint64) uint64 { return e &^ (1<<32 - 1) }

// entryOf is the entry of slot (below MaxUint32) under hash h.
func entryOf(h uint64, slot uint32) uint64 { return tagHash(h) | (uint64(slot) + 1) }

// slotOf is a live entry's slot.
func slotOf(e uint64) uint32 { return uint32(e) - 1 }

// insert adds slot under h (the caller has checked its key is not there).
func (x *coldIndex) insert(h uint64, slot uint32) {
	if (x.n+1)*coldIndexLoadDen > len(x.entries)*coldIndexLoadNum {
		x.resize(max(len(x.entries)*coldIndexGrowNum/coldIndexGrowDen, coldIndexMinSize))
	}
	x.place(entryOf(h, slot))
	x.n++
}

// place puts entry e at the first empty entry from its home.
func (x *coldIndex) place(e uint64) {
	i := x.home(e)
	for x.entries[i] != 0 {
		i = x.next(i)
	}
	x.entries[i] = e
}

// remove deletes the entry of slot under h, which must be there, and
// shifts back the entries after it that its place let go further from
// their homes (Knuth's Algorithm R), so that no lookup stops short.
func (x *coldIndex) remove(h uint64, slot uint32) {
	want := entryOf(h, slot)
	i := x.home(h)
	for x.entries[i] != want {
		if x.entries[i] == 0 {
			panic("collections: cold index: removing an entry that is not there")
		}
		i = x.next(i)
	}
	for j := i; ; {
		j = x.next(j)
		e := x.entries[j]
		if e == 0 {
			break
		}
		// e may move into the hole at i unless its home lies cyclically
		// in (i, j]: then it is already as close to it as it can be.
		if k := x.home(e); i <= j && (i < k && k <= j) || i > j && (i < k || k <= j) {
			continue
		}
		x.entries[i] = e
		i = j
	}
	x.entries[i] = 0
	x.n--
}

// reserve sizes the table for n entries (3/4 full), if larger than it is.
func (x *coldIndex) reserve(n int) {
	size := max(coldIndexMinSize, (n*coldIndexLoadDen+coldIndexLoadNum-1)/coldIndexLoadNum)
	if size > len(x.entries) {
		x.resize(size)
	}
}

// resize rebuilds the table with size entries, from the tags alone: the
// old entries in order (by home, but for the run that wrapped around at
// the end), each placed from its new home.
func (x *coldIndex) resize(size int) {
	if size > coldIndexMaxSize {
		panic("collections: cold index: more than 2^32 entries")
	}
	old := x.entries
	x.entries = make([]uint64, size)
	for _, e := range old {
		if e != 0 {
			x.place(e)
		}
	}
}
