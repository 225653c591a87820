package persistence

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"slices"
)

// On-disk layout (format version 4). Every key and value written by this
// package is built and parsed here; nothing else touches raw bytes.
//
// Keys are binary and ordered so that each clone's data is one contiguous key
// range and, inside it, each kind is a contiguous sub-range:
//
//	formatKey                                   -> formatValue
//	0x01 | u16 len(id) | id | kindHeader        -> header
//	0x01 | u16 len(id) | id | kindLog    | u64 pos           -> record value
//	0x01 | u16 len(id) | id | kindIndex  | u16 len(origin) | origin | u64 seq -> u64 pos
//	0x01 | u16 len(id) | id | kindOrigin | origin            -> origin state
//	0x01 | u16 len(id) | id | kindMeta   | key               -> raw bytes
//	0x01 | u16 len(id) | id | kindState                      -> state header
//	0x02 | u16 len(id) | id | u64 generation | u32 chunk     -> snapshot chunk
//	0x03 | u16 len(id) | id | u32 epoch | u16 len(coll) | coll | item -> item state
//
// A clone's stored snapshot is either a chain (below) or, since format 4, a
// state: one key per item in the tagState range (see state.go), the header
// the caller gave it under kindState. The clone header's flags say which.
// Snapshots live in their own top-level range (tagSnap), after every clone's
// log, index and bookkeeping: a snapshot is the clone's whole state, megabytes
// in one value, and pebble stores a value inside one data block. Next to the
// small keys that point reads look up (header, origin state, meta, a log
// record), such a block could be the one a lookup lands on and decompresses.
// In their own range they share no block with anything else; only the
// snapshot readers (SnapshotChain, SnapshotChunks, LoadSnapshot) read them.
// The generation is the log position a snapshot covers; its chunks are
// numbered from 0 (SaveSnapshot and Writer.Snapshot write the single chunk 0).
//
// A clone's stored snapshot is a chain of generations: one full snapshot, the
// base (header.basePos), then zero or more delta snapshots (each holds what
// changed since the previous generation), the last of which is
// header.snapPos. The chain is exactly the generations present in
// [basePos, snapPos]. Where each is deleted:
//
//   - a snapshot begin (full or delta) deletes every generation > snapPos:
//     the leftovers of one a crash cut short; a full begin also deletes any
//     generation < basePos (there should be none). Neither touches the chain;
//   - a full snapshot's end deletes every generation below its own (the
//     whole previous chain) and sets basePos = snapPos = its generation; a
//     delta's end deletes nothing and sets snapPos; each in the batch that
//     writes the header, so a crash anywhere leaves the previous chain whole;
//   - SaveSnapshot and Writer.Snapshot (single-chunk, full) replace the whole
//     range in one batch; Drop deletes it.
//
// Format history. Format 1 stored the snapshot value inside the clone range
// under 0x01 | u16 len(id) | id | kindSnap (0x05); Open upgrades it in place
// (moves each snapshot to chunk 0 of its generation and rewrites the marker,
// in one batch). Format 2 had the same keys as format 3 and an 18-byte header
// without basePos; format 3 writes 26-byte headers and still reads 18-byte
// ones (basePos = snapPos), so Open upgrades a format-2 database by rewriting
// the marker alone. The marker changed so that a format-2 binary refuses a
// format-3 database at Open with ErrIncompatible; without it, it would open
// the database and then fail on each 26-byte header with its corruption
// error (ErrCorrupt), clone by clone, a misleading diagnosis. (It could not
// read a delta chain anyway: it knows one generation per snapshot.) The
// cost: a database once opened by a format-3 binary is refused by a
// format-2 one, deltas written or not.
//
// Format 4 added the state (tagState, kindState, and a 30-byte clone header
// with its mode and epoch); it reads format 3's 26-byte headers as chains,
// so Open upgrades a format-3 database by rewriting the marker alone, for
// the same reason as above.
//
// All integers are big-endian so that byte order equals numeric order. The id
// is length-prefixed so that no clone's key range contains another's ("a" and
// "ab" differ in the length byte). A clone's whole range is
// [prefix, prefix|0xFF): kinds are all below 0xFF.
//
// Values that carry user bytes (records, snapshots) start with a version
// byte and a CRC-32C of the rest, on top of pebble's own block checksums, so
// that a decoder can tell a torn or foreign value from a valid one.

// MaxIDLen is the longest clone id, record origin or metadata key accepted,
// in bytes.
const MaxIDLen = 1024

const (
	valueVersion byte = 1 // first byte of every structured value

	tagClone byte = 0x01 // first byte of every per-clone key
	tagSnap  byte = 0x02 // first byte of every snapshot chunk key
	tagState byte = 0x03 // first byte of every state item key

	kindHeader byte = 0x01
	kindLog    byte = 0x02
	kindIndex  byte = 0x03
	kindOrigin byte = 0x04
	kindSnap   byte = 0x05 // format 1 only: the snapshot inside the clone range
	kindMeta   byte = 0x06
	kindState  byte = 0x07 // the state's header (the caller's bytes)
	kindEnd    byte = 0xFF // never stored: exclusive upper bound of a clone's range

	// kindSnapChunk is not a stored kind byte: parsedKey uses it for the
	// keys of the tagSnap range.
	kindSnapChunk byte = 0x80
	// kindStateItem, likewise, for the keys of the tagState range.
	kindStateItem byte = 0x81

	// maxPrunedRanges bounds how many disjoint runs of pruned sequence
	// numbers an origin remembers (see originState).
	maxPrunedRanges = 64
)

// formatKey sorts before every per-clone key (0x00 < tagClone).
var (
	formatKey   = []byte("\x00tempest/persistence/format")
	formatValue = []byte("tempest-persistence-4")
	// formatValueV3, formatValueV2 and formatValueV1 are the markers of
	// format versions 3, 2 and 1, which Open upgrades.
	formatValueV3 = []byte("tempest-persistence-3")
	formatValueV2 = []byte("tempest-persistence-2")
	formatValueV1 = []byte("tempest-persistence-1")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}

// validID reports whether s may be used as a clone id, origin or meta key.
func validID(s string) bool { return len(s) > 0 && len(s) <= MaxIDLen }

// ---- keys ----

// clonePrefix returns 0x01 | u16 len | id. id must satisfy validID.
func clonePrefix(id string) []byte {
	b := make([]byte, 0, 3+len(id))
	b = append(b, tagClone)
	b = binary.BigEndian.AppendUint16(b, uint16(len(id)))
	return append(b, id...)
}

func kindKey(prefix []byte, kind byte, extra int) []byte {
	b := make([]byte, 0, len(prefix)+1+extra)
	b = append(b, prefix...)
	return append(b, kind)
}

func headerKey(prefix []byte) []byte { return kindKey(prefix, kindHeader, 0) }
func cloneEnd(prefix []byte) []byte  { return kindKey(prefix, kindEnd, 0) }

// legacySnapKey is where format version 1 kept a clone's snapshot.
func legacySnapKey(prefix []byte) []byte { return kindKey(prefix, kindSnap, 0) }

// snapPrefix returns 0x02 | u16 len | id: the start of the clone's snapshot
// range, given its clone prefix (0x01 | u16 len | id).
func snapPrefix(prefix []byte) []byte {
	b := bytes.Clone(prefix)
	b[0] = tagSnap
	return b
}

// snapBounds returns [first, end) over all snapshot chunk keys of the clone.
// The end is the prefix followed by 0xFF..: every chunk key has 12 more
// bytes after the prefix, so appending 13 0xFF bytes bounds them all.
func snapBounds(prefix []byte) (lo, hi []byte) {
	lo = snapPrefix(prefix)
	hi = append(bytes.Clone(lo), bytes.Repeat([]byte{0xFF}, 13)...)
	return lo, hi
}

// snapChunkKey returns 0x02 | u16 len(id) | id | u64 gen | u32 chunk.
func snapChunkKey(prefix []byte, gen uint64, chunk uint32) []byte {
	b := snapPrefix(prefix)
	b = binary.BigEndian.AppendUint64(b, gen)
	return binary.BigEndian.AppendUint32(b, chunk)
}

func stateHeaderKey(prefix []byte) []byte { return kindKey(prefix, kindState, 0) }

// statePrefix returns 0x03 | u16 len | id, given the clone prefix.
func statePrefix(prefix []byte) []byte {
	b := bytes.Clone(prefix)
	b[0] = tagState
	return b
}

// stateEpochKey returns the first key of an epoch: 0x03 | u16 len | id |
// u32 epoch. Every item key of the epoch starts with it.
func stateEpochKey(prefix []byte, epoch uint32) []byte {
	return binary.BigEndian.AppendUint32(statePrefix(prefix), epoch)
}

// stateBounds returns [first, end) over every state item key of the clone,
// all epochs: the epoch and what follows are at least 4+2+1 bytes, so 0xFF
// x 8 after the prefix bounds them all (a collection name is at most
// MaxIDLen bytes: its length's first byte is never 0xFF).
func stateBounds(prefix []byte) (lo, hi []byte) {
	lo = statePrefix(prefix)
	return lo, append(bytes.Clone(lo), bytes.Repeat([]byte{0xFF}, 8)...)
}

// stateEpochBounds returns [first, end) over the item keys of epochs
// [from, to) (to 0: every epoch from on).
func stateEpochBounds(prefix []byte, from, to uint32) (lo, hi []byte) {
	lo = stateEpochKey(prefix, from)
	if to == 0 {
		_, hi = stateBounds(prefix)
		return lo, hi
	}
	return lo, stateEpochKey(prefix, to)
}

// stateItemSuffix returns u16 len(coll) | coll | item: what follows the
// epoch in an item key. coll must satisfy validID.
func stateItemSuffix(coll string, item []byte) []byte {
	b := make([]byte, 0, 2+len(coll)+len(item))
	b = binary.BigEndian.AppendUint16(b, uint16(len(coll)))
	b = append(b, coll...)
	return append(b, item...)
}

// stateItemKey appends to dst 0x03 | u16 len(id) | id | u32 epoch | suffix,
// given the epoch key's prefix (stateEpochKey without the epoch: the
// statePrefix).
func stateItemKey(dst, statePfx []byte, epoch uint32, suffix []byte) []byte {
	dst = append(dst, statePfx...)
	dst = binary.BigEndian.AppendUint32(dst, epoch)
	return append(dst, suffix...)
}

func logKey(prefix []byte, pos uint64) []byte {
	return binary.BigEndian.AppendUint64(kindKey(prefix, kindLog, 8), pos)
}

// logBounds returns [first, end) over all log keys of the clone.
func logBounds(prefix []byte) (lo, hi []byte) {
	return kindKey(prefix, kindLog, 0), kindKey(prefix, kindLog+1, 0)
}

// originBounds returns [first, end) over all origin-state keys of the clone.
func originBounds(prefix []byte) (lo, hi []byte) {
	return kindKey(prefix, kindOrigin, 0), kindKey(prefix, kindOrigin+1, 0)
}

func indexPrefix(prefix []byte, origin string) []byte {
	b := kindKey(prefix, kindIndex, 2+len(origin)+8)
	b = binary.BigEndian.AppendUint16(b, uint16(len(origin)))
	return append(b, origin...)
}

func indexKey(prefix []byte, origin string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(indexPrefix(prefix, origin), seq)
}

func originKey(prefix []byte, origin string) []byte {
	return append(kindKey(prefix, kindOrigin, len(origin)), origin...)
}

func metaKey(prefix []byte, key string) []byte {
	return append(kindKey(prefix, kindMeta, len(key)), key...)
}

// parsedKey is a decoded per-clone key. Only the fields of its kind are set.
type parsedKey struct {
	clone  string
	kind   byte
	pos    uint64 // kindLog; kindSnapChunk: the generation
	origin string // kindIndex, kindOrigin
	seq    uint64 // kindIndex
	meta   string // kindMeta
	chunk  uint32 // kindSnapChunk; kindStateItem: the epoch
	coll   string // kindStateItem
	item   string // kindStateItem (may be empty)
}

// decodeKey parses a per-clone key, rejecting anything encodeKey could not
// have produced.
func decodeKey(k []byte) (parsedKey, error) {
	var p parsedKey
	if len(k) < 3 || (k[0] != tagClone && k[0] != tagSnap && k[0] != tagState) {
		return p, corruptf("key %q: not a clone key", k)
	}
	n := int(binary.BigEndian.Uint16(k[1:3]))
	if n == 0 || n > MaxIDLen || len(k) < 3+n+1 {
		return p, corruptf("key %q: bad clone id length %d", k, n)
	}
	p.clone = string(k[3 : 3+n])
	if k[0] == tagSnap {
		rest := k[3+n:]
		if len(rest) != 12 {
			return p, corruptf("key %q: snapshot key suffix has %d bytes, want 12", k, len(rest))
		}
		p.kind = kindSnapChunk
		p.pos = binary.BigEndian.Uint64(rest)
		p.chunk = binary.BigEndian.Uint32(rest[8:])
		return p, nil
	}
	if k[0] == tagState {
		rest := k[3+n:]
		if len(rest) < 4+2 {
			return p, corruptf("key %q: short state item key", k)
		}
		p.kind = kindStateItem
		p.chunk = binary.BigEndian.Uint32(rest)
		m := int(binary.BigEndian.Uint16(rest[4:]))
		if m == 0 || m > MaxIDLen || len(rest) < 6+m {
			return p, corruptf("key %q: bad collection name length %d", k, m)
		}
		p.coll = string(rest[6 : 6+m])
		p.item = string(rest[6+m:])
		return p, nil
	}
	p.kind = k[3+n]
	rest := k[3+n+1:]
	switch p.kind {
	case kindHeader, kindSnap, kindState:
		if len(rest) != 0 {
			return p, corruptf("key %q: trailing bytes after kind %#x", k, p.kind)
		}
	case kindLog:
		if len(rest) != 8 {
			return p, corruptf("key %q: log key suffix has %d bytes, want 8", k, len(rest))
		}
		p.pos = binary.BigEndian.Uint64(rest)
	case kindIndex:
		if len(rest) < 2 {
			return p, corruptf("key %q: short index key", k)
		}
		m := int(binary.BigEndian.Uint16(rest))
		if m == 0 || m > MaxIDLen || len(rest) != 2+m+8 {
			return p, corruptf("key %q: bad index key (origin length %d)", k, m)
		}
		p.origin = string(rest[2 : 2+m])
		p.seq = binary.BigEndian.Uint64(rest[2+m:])
	case kindOrigin:
		if !validID(string(rest)) {
			return p, corruptf("key %q: bad origin", k)
		}
		p.origin = string(rest)
	case kindMeta:
		if !validID(string(rest)) {
			return p, corruptf("key %q: bad meta key", k)
		}
		p.meta = string(rest)
	default:
		return p, corruptf("key %q: unknown kind %#x", k, p.kind)
	}
	return p, nil
}

// encodeKey is the inverse of decodeKey.
func encodeKey(p parsedKey) []byte {
	prefix := clonePrefix(p.clone)
	switch p.kind {
	case kindLog:
		return logKey(prefix, p.pos)
	case kindIndex:
		return indexKey(prefix, p.origin, p.seq)
	case kindOrigin:
		return originKey(prefix, p.origin)
	case kindMeta:
		return metaKey(prefix, p.meta)
	case kindSnapChunk:
		return snapChunkKey(prefix, p.pos, p.chunk)
	case kindStateItem:
		return stateItemKey(nil, statePrefix(prefix), p.chunk, stateItemSuffix(p.coll, []byte(p.item)))
	default:
		return kindKey(prefix, p.kind, 0)
	}
}

// ---- record values ----

// recordHeaderLen: version, crc32c, u16 origin length, (origin), u64 seq.
const recordHeaderLen = 1 + 4 + 2 + 8

// encodeRecord builds the value stored under a log key:
//
//	version | crc32c(rest) | u16 len(origin) | origin | u64 seq | data
func encodeRecord(origin string, seq uint64, data []byte) []byte {
	b := make([]byte, 5, recordHeaderLen+len(origin)+len(data))
	b[0] = valueVersion
	b = binary.BigEndian.AppendUint16(b, uint16(len(origin)))
	b = append(b, origin...)
	b = binary.BigEndian.AppendUint64(b, seq)
	b = append(b, data...)
	binary.BigEndian.PutUint32(b[1:5], crc32.Checksum(b[5:], castagnoli))
	return b
}

// decodeRecord parses a log value. The returned Data aliases v.
func decodeRecord(v []byte) (Record, error) {
	var r Record
	if err := checkValue("record value", v, recordHeaderLen); err != nil {
		return r, err
	}
	n := int(binary.BigEndian.Uint16(v[5:7]))
	if n == 0 || n > MaxIDLen || len(v) < recordHeaderLen+n {
		return r, corruptf("record value: bad origin length %d", n)
	}
	r.Origin = string(v[7 : 7+n])
	r.Seq = binary.BigEndian.Uint64(v[7+n:])
	if r.Seq == 0 {
		return r, corruptf("record value: seq 0")
	}
	r.Data = v[recordHeaderLen+n:]
	return r, nil
}

// ---- index values ----

func encodePos(pos uint64) []byte { return binary.BigEndian.AppendUint64(nil, pos) }

func decodePos(v []byte) (uint64, error) {
	if len(v) != 8 {
		return 0, corruptf("index value: %d bytes, want 8", len(v))
	}
	pos := binary.BigEndian.Uint64(v)
	if pos == 0 {
		return 0, corruptf("index value: position 0")
	}
	return pos, nil
}

// ---- header ----

// header is the per-clone bookkeeping record.
//
// Invariants: prunedThrough <= snapPos when hasSnap, prunedThrough == 0 when
// !hasSnap (Prune refuses to remove what no snapshot covers), snapPos ==
// basePos == 0 when !hasSnap, and basePos <= snapPos when hasSnap.
//
// The stored snapshot is a chain (state false) or a state (state true).
// A chain is the full snapshot of generation basePos (the base), then the
// delta snapshots of every generation present in the snapshot range in
// (basePos, snapPos], in increasing order; the last one is snapPos. Each
// generation there is complete: a begin deletes every generation > snapPos
// (what a crash left of an unfinished snapshot) before it writes, and only
// an end moves snapPos (see group.snapshotChunk). With no delta, basePos ==
// snapPos. A state is the item keys of epoch `epoch` and the state header,
// covering snapPos; when basePos < snapPos, the epoch holds the state at
// basePos and the delta staged under generation snapPos in the snapshot
// range (state.go) is still being applied to it: the state is the two
// together. epoch is also kept in chain mode
// (or with no snapshot): the last epoch a state used, so that the next one
// takes a number never seen before.
type header struct {
	prunedThrough uint64 // every log record with pos <= prunedThrough was pruned
	snapPos       uint64 // log position the stored snapshot covers (a chain's last generation)
	basePos       uint64 // generation of the chain's base (full) snapshot
	hasSnap       bool
	state         bool   // the stored snapshot is a state (state.go), not a chain
	epoch         uint32 // the state's epoch (see above)
}

// headerLen is the header's length since format 4:
//
//	version | u64 prunedThrough | u64 snapPos | flags | u64 basePos | u32 epoch
//
// flags: 0 no snapshot, 1 a chain, 2 a state. headerLenV3 is format 3's,
// without the epoch (a chain, epoch 0), and headerLenV2 format 2's, also
// without basePos (a chain of its base alone: basePos = snapPos).
const (
	headerLenV2 = 1 + 8 + 8 + 1
	headerLenV3 = headerLenV2 + 8
	headerLen   = headerLenV3 + 4
)

func encodeHeader(h header) []byte {
	b := make([]byte, 1, headerLen)
	b[0] = valueVersion
	b = binary.BigEndian.AppendUint64(b, h.prunedThrough)
	b = binary.BigEndian.AppendUint64(b, h.snapPos)
	switch {
	case h.hasSnap && h.state:
		b = append(b, 2)
	case h.hasSnap:
		b = append(b, 1)
	default:
		b = append(b, 0)
	}
	b = binary.BigEndian.AppendUint64(b, h.basePos)
	return binary.BigEndian.AppendUint32(b, h.epoch)
}

func decodeHeader(v []byte) (header, error) {
	var h header
	if len(v) != headerLen && len(v) != headerLenV3 && len(v) != headerLenV2 {
		return h, corruptf("clone header: %d bytes, want %d (or %d, %d)", len(v), headerLen, headerLenV3, headerLenV2)
	}
	if v[0] != valueVersion {
		return h, corruptf("clone header: unknown version %d", v[0])
	}
	h.prunedThrough = binary.BigEndian.Uint64(v[1:9])
	h.snapPos = binary.BigEndian.Uint64(v[9:17])
	h.basePos = h.snapPos
	if len(v) >= headerLenV3 {
		h.basePos = binary.BigEndian.Uint64(v[18:26])
	}
	if len(v) == headerLen {
		h.epoch = binary.BigEndian.Uint32(v[26:30])
	}
	switch v[17] {
	case 0:
		if h.snapPos != 0 || h.prunedThrough != 0 || h.basePos != 0 {
			return h, corruptf("clone header: positions set without a snapshot")
		}
	case 1, 2:
		h.hasSnap = true
		h.state = v[17] == 2
		if h.prunedThrough > h.snapPos {
			return h, corruptf("clone header: pruned through %d beyond snapshot at %d", h.prunedThrough, h.snapPos)
		}
		if h.basePos > h.snapPos {
			return h, corruptf("clone header: snapshot base at %d beyond the chain's end at %d", h.basePos, h.snapPos)
		}
		if h.state && (len(v) != headerLen || h.epoch == 0) {
			return h, corruptf("clone header: a state needs a %d-byte header and an epoch (%d bytes, epoch %d)", headerLen, len(v), h.epoch)
		}
	default:
		return h, corruptf("clone header: bad flags %#x", v[17])
	}
	return h, nil
}

// ---- checksummed values ----

// checkValue checks what every structured value starts with: at least
// hdrLen bytes, the version byte, and a CRC-32C of everything after the
// first 5 bytes. what names the value in the error.
func checkValue(what string, v []byte, hdrLen int) error {
	if len(v) < hdrLen {
		return corruptf("%s: %d bytes, shorter than the %d-byte header", what, len(v), hdrLen)
	}
	if v[0] != valueVersion {
		return corruptf("%s: unknown version %d", what, v[0])
	}
	if got, want := crc32.Checksum(v[5:], castagnoli), binary.BigEndian.Uint32(v[1:5]); got != want {
		return corruptf("%s: checksum %08x, stored %08x", what, got, want)
	}
	return nil
}

// ---- staged delta values ----

// encodeStaged builds the data of a staged delta chunk: for each item,
// uvarint len(suffix) | suffix | uvarint (0: absent, else len(val)+1) | val.
// The chunk's value is encodeSnapshot(gen, data).
func encodeStaged(items []encStateItem) []byte {
	n := 0
	for _, it := range items {
		n += 2*binary.MaxVarintLen32 + len(it.suffix) + len(it.val)
	}
	b := make([]byte, 0, n)
	for _, it := range items {
		b = binary.AppendUvarint(b, uint64(len(it.suffix)))
		b = append(b, it.suffix...)
		if it.val == nil {
			b = append(b, 0)
			continue
		}
		b = binary.AppendUvarint(b, uint64(len(it.val))+1)
		b = append(b, it.val...)
	}
	return b
}

// decodeStaged parses encodeStaged's data; the items alias data. Each
// suffix must be a valid one (u16 len(collection) | collection | key) and
// each value a valid state item value.
func decodeStaged(data []byte) ([]encStateItem, error) {
	var out []encStateItem
	for len(data) > 0 {
		n, k := binary.Uvarint(data)
		if k <= 0 || n > uint64(len(data)-k) {
			return nil, corruptf("staged delta: bad key length")
		}
		suffix := data[k : k+int(n) : k+int(n)]
		data = data[k+int(n):]
		if len(suffix) < 2 {
			return nil, corruptf("staged delta: key of %d bytes", len(suffix))
		}
		if m := int(binary.BigEndian.Uint16(suffix)); m == 0 || m > MaxIDLen || len(suffix) < 2+m {
			return nil, corruptf("staged delta: bad collection length %d", m)
		}
		n, k = binary.Uvarint(data)
		if k <= 0 || (n > 0 && n-1 > uint64(len(data)-k)) {
			return nil, corruptf("staged delta: bad value length")
		}
		it := encStateItem{suffix: suffix}
		data = data[k:]
		if n > 0 {
			it.val = data[: n-1 : n-1]
			data = data[n-1:]
			if _, err := decodeStateItem(it.val); err != nil {
				return nil, err
			}
		}
		out = append(out, it)
	}
	return out, nil
}

// ---- state item values ----

const stateItemHeaderLen = 1 + 4

// encodeStateItem builds version | crc32c(data) | data.
func encodeStateItem(dst, data []byte) []byte {
	dst = append(dst, valueVersion)
	dst = binary.BigEndian.AppendUint32(dst, crc32.Checksum(data, castagnoli))
	return append(dst, data...)
}

// decodeStateItem parses a state item value. data aliases v.
func decodeStateItem(v []byte) (data []byte, err error) {
	if err := checkValue("state item value", v, stateItemHeaderLen); err != nil {
		return nil, err
	}
	return v[stateItemHeaderLen:], nil
}

// ---- snapshot values ----

const snapHeaderLen = 1 + 4 + 8

// encodeSnapshot builds version | crc32c(rest) | u64 pos | data.
func encodeSnapshot(pos uint64, data []byte) []byte {
	b := make([]byte, 5, snapHeaderLen+len(data))
	b[0] = valueVersion
	b = binary.BigEndian.AppendUint64(b, pos)
	b = append(b, data...)
	binary.BigEndian.PutUint32(b[1:5], crc32.Checksum(b[5:], castagnoli))
	return b
}

// decodeSnapshot parses a snapshot value. data aliases v.
func decodeSnapshot(v []byte) (pos uint64, data []byte, err error) {
	if err := checkValue("snapshot value", v, snapHeaderLen); err != nil {
		return 0, nil, err
	}
	return binary.BigEndian.Uint64(v[5:13]), v[snapHeaderLen:], nil
}

// ---- origin state ----

// originState is what the store remembers about one origin of one clone,
// beyond the index entries of the records it still holds.
//
// maxSeq is the highest seq ever stored for the origin; Prune does not lower
// it, so MaxSeq keeps reporting how far the clone got.
//
// pruned is the set of seqs that were stored and then removed by Prune, as
// sorted, disjoint, non-adjacent closed ranges. Append consults it so that a
// re-delivered record the snapshot already covers is not stored a second
// time. For an origin whose seqs arrive in order this is a single range. It is
// capped at maxPrunedRanges runs by forgetting the lowest run: forgetting can
// only let a very old duplicate be appended again (which readers tolerate,
// as they must tolerate network duplicates), never skip a record that was not
// stored. Rejected alternative: a single "pruned floor" per origin, which
// would wrongly skip a late record below the floor that was never stored.
type originState struct {
	maxSeq uint64
	pruned []seqRange
}

// seqRange is a closed range [lo, hi] of sequence numbers.
type seqRange struct{ lo, hi uint64 }

func encodeOriginState(s originState) []byte {
	b := make([]byte, 1, 1+8+2+16*len(s.pruned))
	b[0] = valueVersion
	b = binary.BigEndian.AppendUint64(b, s.maxSeq)
	b = binary.BigEndian.AppendUint16(b, uint16(len(s.pruned)))
	for _, r := range s.pruned {
		b = binary.BigEndian.AppendUint64(b, r.lo)
		b = binary.BigEndian.AppendUint64(b, r.hi)
	}
	return b
}

func decodeOriginState(v []byte) (originState, error) {
	var s originState
	if len(v) < 11 {
		return s, corruptf("origin state: %d bytes, shorter than 11", len(v))
	}
	if v[0] != valueVersion {
		return s, corruptf("origin state: unknown version %d", v[0])
	}
	s.maxSeq = binary.BigEndian.Uint64(v[1:9])
	n := int(binary.BigEndian.Uint16(v[9:11]))
	if n > maxPrunedRanges || len(v) != 11+16*n {
		return s, corruptf("origin state: %d bytes for %d pruned ranges", len(v), n)
	}
	if n > 0 {
		s.pruned = make([]seqRange, n)
	}
	for i := range s.pruned {
		r := seqRange{binary.BigEndian.Uint64(v[11+16*i:]), binary.BigEndian.Uint64(v[19+16*i:])}
		if r.lo == 0 || r.lo > r.hi || r.hi > s.maxSeq {
			return s, corruptf("origin state: bad pruned range [%d,%d] (max seq %d)", r.lo, r.hi, s.maxSeq)
		}
		if i > 0 && r.lo <= s.pruned[i-1].hi+1 {
			return s, corruptf("origin state: pruned ranges unsorted or adjacent at %d", i)
		}
		s.pruned[i] = r
	}
	return s, nil
}

// prunedContains reports whether seq lies in one of the pruned ranges.
func (s *originState) prunedContains(seq uint64) bool {
	lo, hi := 0, len(s.pruned)
	for lo < hi {
		m := (lo + hi) / 2
		switch r := s.pruned[m]; {
		case seq < r.lo:
			hi = m
		case seq > r.hi:
			lo = m + 1
		default:
			return true
		}
	}
	return false
}

// prunedOverlaps reports whether [from, to] meets a pruned range.
func (s *originState) prunedOverlaps(from, to uint64) bool {
	for _, r := range s.pruned {
		if r.lo <= to && from <= r.hi {
			return true
		}
	}
	return false
}

// addPruned merges sorted, duplicate-free seqs into the pruned set, keeping
// it normalised and within maxPrunedRanges runs.
func (s *originState) addPruned(seqs []uint64) {
	all := append([]seqRange(nil), s.pruned...)
	for i := 0; i < len(seqs); {
		j := i
		for j+1 < len(seqs) && seqs[j+1] == seqs[j]+1 {
			j++
		}
		all = append(all, seqRange{seqs[i], seqs[j]})
		i = j + 1
	}
	slices.SortFunc(all, func(a, b seqRange) int { return cmp.Compare(a.lo, b.lo) })
	out := all[:0]
	for _, r := range all {
		if n := len(out); n > 0 && (out[n-1].hi == math.MaxUint64 || r.lo <= out[n-1].hi+1) {
			out[n-1].hi = max(out[n-1].hi, r.hi)
			continue
		}
		out = append(out, r)
	}
	if len(out) > maxPrunedRanges {
		out = out[len(out)-maxPrunedRanges:]
	}
	s.pruned = out
}
