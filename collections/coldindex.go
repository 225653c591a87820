package collections

// coldIndex maps the 64-bit hash of a cold item's key to its record's slot:
// an open-addressing table with linear probing, of 8-byte entries holding
// the slot and the hash's top 32 bits (its tag). The coldTable compares
// keys on a tag match, so two keys of one hash are two entries.
//
// Why not a map[uint64]uint32: the Go map spends 16 bytes and a control
// byte per slot (its key and value pairs are padded), against 8 / load
// here (10.7 to 21 bytes); a restore, which inserts a million items in a
// row, spent half of a restart's CPU in its lookups at 1M items, and
// runs about 25% faster with this one (BenchmarkSnapshotStream/
// restore-trusted-encoded). An entry's home is the top bits of its hash,
// so the table can be rebuilt (grow) from the tags alone, in one
// sequential pass, without reading a key.
//
// Invariants: len(entries) is 0 or a power of two, at most 1<<32; n live
// entries, at most maxLoad of len(entries); every live entry is at its home
// or after it, with no empty entry in between (linear probing, kept by
// remove's backward shift: there are no tombstones).
type coldIndex struct {
	entries []uint64 // tag<<32 | slot+1; 0: empty
	shift   uint     // 64 - log2(len(entries))
	n       int
}

// The table grows when an insert would fill more than LoadNum/LoadDen of
// it (linear probing stays within a cache line or two below 3/4).
const (
	coldIndexLoadNum, coldIndexLoadDen = 3, 4
	coldIndexMinSize                   = 8
	coldIndexMaxBits                   = 32 // the tag holds the home's bits
)

func (x *coldIndex) mask() int { return len(x.entries) - 1 }

// home is where an entry of hash h (or tag, its top 32 bits) belongs.
func (x *coldIndex) home(h uint64) int { return int(h >> x.shift) }

// tagHash is an entry's (or a hash's) tag: its top 32 bits, in place.
func tagHash(e uint64) uint64 { return e &^ (1<<32 - 1) }

// entryOf is the entry of slot (below MaxUint32) under hash h.
func entryOf(h uint64, slot uint32) uint64 { return tagHash(h) | (uint64(slot) + 1) }

// slotOf is a live entry's slot.
func slotOf(e uint64) uint32 { return uint32(e) - 1 }

// insert adds slot under h (the caller has checked its key is not there).
func (x *coldIndex) insert(h uint64, slot uint32) {
	if (x.n+1)*coldIndexLoadDen > len(x.entries)*coldIndexLoadNum {
		x.resize(max(2*len(x.entries), coldIndexMinSize))
	}
	x.place(entryOf(h, slot))
	x.n++
}

// place puts entry e at the first empty entry from its home.
func (x *coldIndex) place(e uint64) {
	i := x.home(e)
	for x.entries[i] != 0 {
		i = (i + 1) & x.mask()
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
		i = (i + 1) & x.mask()
	}
	for j := i; ; {
		j = (j + 1) & x.mask()
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

// reserve sizes the table for n entries, if larger than it is.
func (x *coldIndex) reserve(n int) {
	size := coldIndexMinSize
	for n*coldIndexLoadDen > size*coldIndexLoadNum {
		size *= 2
	}
	if size > len(x.entries) {
		x.resize(size)
	}
}

// resize rebuilds the table with size entries, from the tags alone.
func (x *coldIndex) resize(size int) {
	bits := uint(0)
	for 1<<bits < size {
		bits++
	}
	if bits > coldIndexMaxBits {
		panic("collections: cold index: more than 2^32 entries")
	}
	old := x.entries
	x.entries, x.shift = make([]uint64, 1<<bits), 64-bits
	for _, e := range old {
		if e != 0 {
			x.place(e)
		}
	}
}
