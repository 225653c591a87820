package collections

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/tempestrt/tempest/proto/tempestpb"
)

// AddEncoded is Add for a chunk in its wire form (a SnapshotChunk's bytes,
// as stored or sent), and returns how many item states it held. It
// accepts and refuses exactly what proto.Unmarshal then Add would
// (FuzzAddEncoded), but a trusted restore (Trusted) decodes the chunk's
// quiet items of maps and sets (no pending ops: nearly all of a large
// replica's items) straight from the bytes into their collections' cold
// tables, without a message per item: decoding a message per item was a
// third of a restart's CPU at a million items (profile), and most of its
// allocations (4.9M of them, against 0.1M). Any item it does not recognise as
// such (pending ops, a list or counter, an untrusted restore, anything
// unusual in its encoding) is decoded as a message and added as Add does.
//
// data is not retained: what is kept of it is copied.
func (b *StreamRestorer) AddEncoded(data []byte) (items int, err error) {
	if b.err != nil {
		return 0, b.err
	}
	items, b.err = b.addEncoded(data)
	return items, b.err
}

func (b *StreamRestorer) addEncoded(data []byte) (int, error) {
	// The chunk's own fields first (proto3: the last occurrence of a
	// scalar wins), so that the chunk is checked before its items as Add
	// does; the items are walked after.
	var (
		index, count uint64
		last         bool
		n            int
	)
	for rest := data; len(rest) > 0; {
		num, typ, k := protowire.ConsumeTag(rest)
		if k < 0 {
			return b.addDecoded(data)
		}
		rest = rest[k:]
		var v uint64
		switch {
		case num == 2 && typ == protowire.BytesType:
			_, k = protowire.ConsumeBytes(rest)
			n++
		case (num == 1 || num == 3 || num == 4) && typ == protowire.VarintType:
			v, k = protowire.ConsumeVarint(rest)
		default:
			// Unknown fields, or a known one in another wire type (which
			// proto.Unmarshal keeps as unknown): rare enough to leave to it.
			return b.addDecoded(data)
		}
		if k < 0 {
			return b.addDecoded(data) // malformed: proto.Unmarshal says how
		}
		rest = rest[k:]
		switch num {
		case 1:
			index = v
		case 3:
			last = v != 0
		case 4:
			count = v
		}
	}
	if err := b.checkChunk(index); err != nil {
		return 0, err
	}
	b.next++
	for rest := data; len(rest) > 0; {
		num, typ, k := protowire.ConsumeTag(rest)
		rest = rest[k:]
		if num != 2 || typ != protowire.BytesType {
			_, k = protowire.ConsumeVarint(rest)
			rest = rest[k:]
			continue
		}
		raw, k := protowire.ConsumeBytes(rest)
		rest = rest[k:]
		if err := b.addRawItem(raw); err != nil {
			return 0, fmt.Errorf("chunk %d: %w", index, err)
		}
	}
	return n, b.endChunk(index, last, count)
}

// AddItemEncoded adds one item state in its wire form (an ItemState's
// bytes) to a part read item by item rather than in chunks: a clone's
// stored state (persistence.State), one key per item. Such a part gets its
// items with AddItemEncoded alone, then EndItems; chunk numbering and the
// last chunk's count do not apply. It accepts and refuses what Add would
// of a chunk holding the item, and decodes a trusted restore's quiet items
// as AddEncoded does. raw is not retained.
func (b *StreamRestorer) AddItemEncoded(raw []byte) error {
	if b.err == nil {
		if b.err = b.itemwiseStep("an item"); b.err == nil {
			b.itemwise = true
			b.err = b.addRawItem(raw)
		}
	}
	return b.err
}

// EndItems ends a part read item by item (AddItemEncoded; it may have no
// item): Finish or NextDelta may follow.
func (b *StreamRestorer) EndItems() error {
	if b.err == nil {
		if b.err = b.itemwiseStep("the end of items"); b.err == nil {
			b.itemwise, b.last = true, true
		}
	}
	return b.err
}

// itemwiseStep checks that what (an item, the end of the items) may come
// next in a part read item by item.
func (b *StreamRestorer) itemwiseStep(what string) error {
	switch {
	case b.done:
		return badSnapshot("restore already finished")
	case b.last:
		return badSnapshot("%s after the part's end", what)
	case b.next != 0:
		return badSnapshot("%s in a part read in chunks", what)
	}
	return nil
}

// addDecoded is AddEncoded by way of a decoded message.
func (b *StreamRestorer) addDecoded(data []byte) (int, error) {
	chunk := &tempestpb.SnapshotChunk{}
	if err := proto.Unmarshal(data, chunk); err != nil {
		return 0, badSnapshot("decode chunk %d: %v", b.next, err)
	}
	return len(chunk.GetItems()), b.add(chunk)
}

// addRawItem adds one encoded ItemState: a quiet item of a map or set of
// a trusted restore from its bytes, anything else as a message.
func (b *StreamRestorer) addRawItem(raw []byte) error {
	r, s := b.r, b.s
	if r.trusted {
		if c, key, base, ok := s.quietItem(raw); ok {
			r.count++
			return r.keep(c, key, base, nil)
		}
	}
	is := &tempestpb.ItemState{}
	if err := proto.Unmarshal(raw, is); err != nil {
		return badSnapshot("item %d: %v", r.count, err)
	}
	return r.addItem(s, int(r.count), is)
}

// quietItem decodes raw as an ItemState if it is a quiet item of one of
// s's maps or sets (a collection, a key, a base with exists and data, each
// once, and nothing else), with the value valueFromProto would make of
// it. Anything else is not ok, and left to proto.Unmarshal: ok must never
// be true for bytes that proto.Unmarshal would refuse or read otherwise.
// The key and the data alias raw.
func (s *Store) quietItem(raw []byte) (c *collection, key []byte, base value, ok bool) {
	var coll, data []byte
	var seen [4]bool // by field number: 1 collection, 2 item, 3 base
	for len(raw) > 0 {
		num, typ, k := protowire.ConsumeTag(raw)
		if k < 0 || typ != protowire.BytesType || num > 3 || seen[num] {
			return nil, nil, value{}, false
		}
		seen[num] = true
		raw = raw[k:]
		v, k := protowire.ConsumeBytes(raw)
		if k < 0 {
			return nil, nil, value{}, false
		}
		raw = raw[k:]
		switch num {
		case 1:
			coll = v
		case 2:
			key = v
		case 3:
			var okBase bool
			if base.exists, data, okBase = quietBase(v); !okBase {
				return nil, nil, value{}, false
			}
		}
	}
	c = s.colls[string(coll)] // a declared name: valid UTF-8, as proto3 requires
	if c == nil || c.cold == nil {
		return nil, nil, value{}, false
	}
	if c.kind == kindMap && base.exists {
		base.data = data
	}
	return c, key, base, true
}

// quietBase decodes an ItemValue holding at most exists and data (each
// once).
func quietBase(raw []byte) (exists bool, data []byte, ok bool) {
	var seenExists, seenData bool
	for len(raw) > 0 {
		num, typ, k := protowire.ConsumeTag(raw)
		if k < 0 {
			return false, nil, false
		}
		raw = raw[k:]
		switch {
		case num == 1 && typ == protowire.VarintType && !seenExists:
			v, k := protowire.ConsumeVarint(raw)
			if k < 0 {
				return false, nil, false
			}
			raw, exists, seenExists = raw[k:], v != 0, true
		case num == 2 && typ == protowire.BytesType && !seenData:
			v, k := protowire.ConsumeBytes(raw)
			if k < 0 {
				return false, nil, false
			}
			raw, data, seenData = raw[k:], v, true
		default:
			return false, nil, false
		}
	}
	return exists, data, true
}
