package ricochet

// Wire format, version 1.
//
// Every Ricochet packet travels as exactly one UDP datagram:
//
//	offset  size  field
//	0       2     magic "TR" (0x54 0x52)
//	2       1     version (1)
//	3       1     kind (Kind: 1 data, 2 repair, 3 nak, 4 session, 5 nak-miss)
//	4       4     From (NodeID)
//	8       n     body, by kind (below)
//	8+n     16    tag = HMAC-SHA256(key, bytes [0, 8+n)) truncated to 16 bytes
//
// All integers are big-endian. Bodies:
//
//	data     group u32, sender u32, seq u64, fragIndex u16, fragCount u16,
//	         flags u8 (bit 0: retransmit; other bits must be 0),
//	         payloadLen u16, payload            (23 + payloadLen bytes)
//	repair   count u16, count × entry, xorLen u16, xor
//	         entry = group u32, sender u32, seq u64, fragIndex u16,
//	                 fragCount u16, length u16   (22 bytes)
//	nak      group u32, sender u32, count u16, count × seq u64
//	session  group u32, sender u32, lastSeq u64
//	nak-miss same layout as nak
//
// Every length and count is checked against the bytes actually present; a
// body must end exactly where the tag starts (no trailing bytes). Counts are
// bounded (WireMaxRepairEntries, WireMaxNakSeqs) and the whole datagram by
// the codec's MaxDatagram (default 1472 = Ethernet MTU minus IPv4 and UDP
// headers, so no IP fragmentation; at most 65507, the UDP/IPv4 limit).
// Semantic checks made on both encode and decode: Seq >= 1 (sequence numbers
// start at 1), FragCount >= 1, FragIndex < FragCount, every repair entry's
// Length <= len(XOR), at least one repair entry and one NAK sequence number.
//
// Authentication. Every datagram carries a 16-byte HMAC-SHA256 tag over the
// header and body, keyed with the shared cluster key. HMAC rather than an
// AEAD because Ricochet needs integrity and origin-in-cluster, not secrecy
// (the payloads are service updates whose confidentiality is the network's
// business), HMAC needs no nonce management across restarts, and a 128-bit
// truncated tag is the standard strength trade-off (RFC 2104 §5, RFC 4868).
// Key rotation: the codec holds a list of keys; it signs with the first and
// accepts a tag made with any of them. Roll a new key out by prepending it
// everywhere (all nodes then accept both), then drop the old one.
// There is no replay protection in the codec: a replayed data packet is a
// duplicate the engine discards; a replayed NAK costs one retransmission.
//
// Decoding checks the cheap, key-independent fields (size, magic, version,
// kind) first, then the tag, and parses the body only after the tag matched,
// so unauthenticated bytes never reach the body parser. Decoded packets never
// alias the input buffer: the transport reuses its receive buffers.
//
// Encoding is append-style (AppendEncode) into a caller-owned buffer and does
// not allocate once that buffer has grown to the datagram size.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
)

// Wire-format constants.
const (
	// WireVersion is the wire-format version this package writes and reads.
	WireVersion = 1
	// WireHeaderLen is the size of the fixed header (magic, version, kind, From).
	WireHeaderLen = 8
	// WireTagLen is the size of the truncated HMAC-SHA256 tag at the end of every datagram.
	WireTagLen = 16
	// WireMaxDatagram is the largest UDP payload over IPv4 (65535 - 20 - 8).
	WireMaxDatagram = 65507
	// WireDefaultMaxDatagram keeps datagrams within one 1500-byte Ethernet frame.
	WireDefaultMaxDatagram = 1472
	// WireMinDatagram is the smallest well-formed datagram (a header and a tag around an empty body).
	WireMinDatagram = WireHeaderLen + WireTagLen
	// WireMaxRepairEntries bounds the number of data packets folded into one repair.
	WireMaxRepairEntries = 255
	// WireMaxNakSeqs bounds the sequence numbers listed in one NAK or NAK-miss.
	WireMaxNakSeqs = 1024
	// WireMinKeyLen is the shortest cluster key accepted (128 bits).
	WireMinKeyLen = 16
	// WireDataOverhead is the size of a data datagram minus its payload.
	WireDataOverhead = WireHeaderLen + dataBodyFixed + WireTagLen

	wireMagic0 = 'T'
	wireMagic1 = 'R'

	dataBodyFixed    = 4 + 4 + 8 + 2 + 2 + 1 + 2
	repairEntryLen   = 4 + 4 + 8 + 2 + 2 + 2
	repairBodyFixed  = 2 + 2
	nakBodyFixed     = 4 + 4 + 2
	sessionBodyLen   = 4 + 4 + 8
	dataFlagRetrans  = 0x01
	dataFlagsAllowed = dataFlagRetrans
	maxU16           = 1<<16 - 1
)

// WireRepairOverhead is the size of a repair datagram folding entries data
// packets, minus its XOR payload. The engine's largest fragment payload must
// be at most MaxDatagram - WireRepairOverhead(r) so its repairs fit too.
func WireRepairOverhead(entries int) int {
	return WireHeaderLen + repairBodyFixed + entries*repairEntryLen + WireTagLen
}

// WireConfig configures a Codec.
type WireConfig struct {
	// Keys are the shared cluster keys, each at least WireMinKeyLen bytes.
	// Keys[0] signs outgoing datagrams; a datagram is accepted when its tag
	// matches any key (key rotation, see the package wire-format comment).
	Keys [][]byte
	// MaxDatagram is the largest datagram encoded or accepted, in bytes,
	// header and tag included. Default WireDefaultMaxDatagram (1472);
	// range [WireMinDatagram+dataBodyFixed, WireMaxDatagram].
	MaxDatagram int
}

// DefaultWireConfig returns a config signing with keys[0] and the default
// (Ethernet-safe) datagram limit.
func DefaultWireConfig(keys ...[]byte) WireConfig {
	return WireConfig{Keys: keys, MaxDatagram: WireDefaultMaxDatagram}
}

// LoopbackWireConfig returns a config for a single host (loopback MTU is
// 64 KiB): the largest UDP datagram.
func LoopbackWireConfig(keys ...[]byte) WireConfig {
	return WireConfig{Keys: keys, MaxDatagram: WireMaxDatagram}
}

// Validate reports whether the config can build a Codec.
func (c WireConfig) Validate() error {
	if len(c.Keys) == 0 {
		return fmt.Errorf("%w: no cluster key", ErrWireConfig)
	}
	for i, k := range c.Keys {
		if len(k) < WireMinKeyLen {
			return fmt.Errorf("%w: key %d is %d bytes, need at least %d", ErrWireConfig, i, len(k), WireMinKeyLen)
		}
	}
	if c.MaxDatagram < WireDataOverhead || c.MaxDatagram > WireMaxDatagram {
		return fmt.Errorf("%w: MaxDatagram %d outside [%d, %d]", ErrWireConfig, c.MaxDatagram, WireDataOverhead, WireMaxDatagram)
	}
	return nil
}

// Codec encodes and decodes authenticated Ricochet datagrams.
//
// A Codec keeps HMAC state between calls and is NOT safe for concurrent use;
// give each goroutine its own (Clone is cheap).
type Codec struct {
	keys        [][]byte
	macs        []hash.Hash // macs[i] keyed with keys[i]; macs[0] signs
	sum         [sha256.Size]byte
	maxDatagram int
}

// NewCodec builds a codec from a validated config. The keys are copied.
func NewCodec(cfg WireConfig) (*Codec, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	keys := make([][]byte, len(cfg.Keys))
	for i, k := range cfg.Keys {
		keys[i] = append([]byte(nil), k...)
	}
	return newCodec(keys, cfg.MaxDatagram), nil
}

func newCodec(keys [][]byte, maxDatagram int) *Codec {
	c := &Codec{keys: keys, maxDatagram: maxDatagram, macs: make([]hash.Hash, len(keys))}
	for i, k := range keys {
		c.macs[i] = hmac.New(sha256.New, k)
	}
	return c
}

// Clone returns an independent codec with the same keys and limits, for use
// by another goroutine.
func (c *Codec) Clone() *Codec { return newCodec(c.keys, c.maxDatagram) }

// MaxDatagram is the largest datagram this codec encodes or accepts, in bytes.
func (c *Codec) MaxDatagram() int { return c.maxDatagram }

// WireSize returns the encoded size of p in bytes (header and tag included),
// or an error when p is not a valid packet. It does not check MaxDatagram.
func WireSize(p *Packet) (int, error) {
	n, err := bodySize(p)
	if err != nil {
		return 0, err
	}
	return WireHeaderLen + n + WireTagLen, nil
}

// bodySize validates p and returns its body length.
func bodySize(p *Packet) (int, error) {
	if p == nil {
		return 0, fmt.Errorf("%w: nil packet", ErrWireMalformed)
	}
	set := 0
	for _, b := range []bool{p.Data != nil, p.Repair != nil, p.Nak != nil, p.Session != nil, p.NakMiss != nil} {
		if b {
			set++
		}
	}
	if set != 1 {
		return 0, fmt.Errorf("%w: %d bodies set on a %v packet, want exactly 1", ErrWireMalformed, set, p.Kind)
	}
	switch p.Kind {
	case KindData:
		d := p.Data
		if d == nil {
			return 0, fmt.Errorf("%w: data packet without Data", ErrWireMalformed)
		}
		if err := checkFrag(d.ID.Seq, d.FragIndex, d.FragCount); err != nil {
			return 0, err
		}
		if len(d.Payload) > maxU16 {
			return 0, fmt.Errorf("%w: payload %d bytes", ErrWireOversize, len(d.Payload))
		}
		return dataBodyFixed + len(d.Payload), nil
	case KindRepair:
		r := p.Repair
		if r == nil {
			return 0, fmt.Errorf("%w: repair packet without Repair", ErrWireMalformed)
		}
		if len(r.Entries) == 0 || len(r.Entries) > WireMaxRepairEntries {
			return 0, fmt.Errorf("%w: %d repair entries, want 1..%d", ErrWireCount, len(r.Entries), WireMaxRepairEntries)
		}
		if len(r.XOR) > maxU16 {
			return 0, fmt.Errorf("%w: repair XOR %d bytes", ErrWireOversize, len(r.XOR))
		}
		for i := range r.Entries {
			e := &r.Entries[i]
			if err := checkFrag(e.ID.Seq, e.FragIndex, e.FragCount); err != nil {
				return 0, err
			}
			if int(e.Length) > len(r.XOR) {
				return 0, fmt.Errorf("%w: repair entry %v length %d > XOR length %d", ErrWireMalformed, e.ID, e.Length, len(r.XOR))
			}
		}
		return repairBodyFixed + len(r.Entries)*repairEntryLen + len(r.XOR), nil
	case KindNak:
		if p.Nak == nil {
			return 0, fmt.Errorf("%w: nak packet without Nak", ErrWireMalformed)
		}
		return seqListSize(p.Nak.Seqs)
	case KindNakMiss:
		if p.NakMiss == nil {
			return 0, fmt.Errorf("%w: nak-miss packet without NakMiss", ErrWireMalformed)
		}
		return seqListSize(p.NakMiss.Seqs)
	case KindSession:
		if p.Session == nil {
			return 0, fmt.Errorf("%w: session packet without Session", ErrWireMalformed)
		}
		return sessionBodyLen, nil
	}
	return 0, fmt.Errorf("%w: %v", ErrWireKind, p.Kind)
}

func checkFrag(seq uint64, idx, count uint16) error {
	if seq == 0 {
		return fmt.Errorf("%w: sequence number 0", ErrWireMalformed)
	}
	if count == 0 || idx >= count {
		return fmt.Errorf("%w: fragment %d of %d", ErrWireMalformed, idx, count)
	}
	return nil
}

func seqListSize(seqs []uint64) (int, error) {
	if len(seqs) == 0 || len(seqs) > WireMaxNakSeqs {
		return 0, fmt.Errorf("%w: %d sequence numbers, want 1..%d", ErrWireCount, len(seqs), WireMaxNakSeqs)
	}
	for _, s := range seqs {
		if s == 0 {
			return 0, fmt.Errorf("%w: sequence number 0", ErrWireMalformed)
		}
	}
	return nakBodyFixed + 8*len(seqs), nil
}

// AppendEncode appends the authenticated datagram for p to dst and returns
// the extended slice. On error dst is returned unchanged (same length). It
// does not allocate when cap(dst)-len(dst) is at least the datagram size.
func (c *Codec) AppendEncode(dst []byte, p *Packet) ([]byte, error) {
	body, err := bodySize(p)
	if err != nil {
		return dst, err
	}
	total := WireHeaderLen + body + WireTagLen
	if total > c.maxDatagram {
		return dst, fmt.Errorf("%w: %v packet is %d bytes, limit %d", ErrWireOversize, p.Kind, total, c.maxDatagram)
	}
	start := len(dst)
	be := binary.BigEndian
	b := append(dst, wireMagic0, wireMagic1, WireVersion, byte(p.Kind))
	b = be.AppendUint32(b, uint32(p.From))
	switch p.Kind {
	case KindData:
		d := p.Data
		b = appendID(b, d.ID)
		b = be.AppendUint16(b, d.FragIndex)
		b = be.AppendUint16(b, d.FragCount)
		var flags byte
		if d.Retransmit {
			flags |= dataFlagRetrans
		}
		b = append(b, flags)
		b = be.AppendUint16(b, uint16(len(d.Payload)))
		b = append(b, d.Payload...)
	case KindRepair:
		r := p.Repair
		b = be.AppendUint16(b, uint16(len(r.Entries)))
		for i := range r.Entries {
			e := &r.Entries[i]
			b = appendID(b, e.ID)
			b = be.AppendUint16(b, e.FragIndex)
			b = be.AppendUint16(b, e.FragCount)
			b = be.AppendUint16(b, uint16(e.Length))
		}
		b = be.AppendUint16(b, uint16(len(r.XOR)))
		b = append(b, r.XOR...)
	case KindNak:
		b = appendSeqList(b, p.Nak.Group, p.Nak.Sender, p.Nak.Seqs)
	case KindNakMiss:
		b = appendSeqList(b, p.NakMiss.Group, p.NakMiss.Sender, p.NakMiss.Seqs)
	case KindSession:
		s := p.Session
		b = be.AppendUint32(b, uint32(s.Group))
		b = be.AppendUint32(b, uint32(s.Sender))
		b = be.AppendUint64(b, s.LastSeq)
	}
	mac := c.macs[0]
	mac.Reset()
	mac.Write(b[start:])
	sum := mac.Sum(c.sum[:0])
	return append(b, sum[:WireTagLen]...), nil
}

func appendID(b []byte, id PacketID) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(id.Group))
	b = binary.BigEndian.AppendUint32(b, uint32(id.Sender))
	return binary.BigEndian.AppendUint64(b, id.Seq)
}

func appendSeqList(b []byte, g GroupID, s NodeID, seqs []uint64) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(g))
	b = binary.BigEndian.AppendUint32(b, uint32(s))
	b = binary.BigEndian.AppendUint16(b, uint16(len(seqs)))
	for _, q := range seqs {
		b = binary.BigEndian.AppendUint64(b, q)
	}
	return b
}

// Decode authenticates and parses one datagram. The returned packet never
// aliases b. Errors wrap one of ErrWireOversize, ErrWireTruncated,
// ErrWireBadMagic, ErrWireVersion, ErrWireKind, ErrWireAuth, ErrWireCount,
// ErrWireMalformed; WireDropReason maps them to counters.
func (c *Codec) Decode(b []byte) (*Packet, error) {
	if len(b) > c.maxDatagram {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrWireOversize, len(b), c.maxDatagram)
	}
	kind, err := checkHeader(b)
	if err != nil {
		return nil, err
	}
	signed := b[:len(b)-WireTagLen]
	tag := b[len(b)-WireTagLen:]
	if !c.verify(signed, tag) {
		return nil, ErrWireAuth
	}
	return decodeBody(kind, NodeID(binary.BigEndian.Uint32(b[4:8])), signed[WireHeaderLen:])
}

// checkHeader validates the key-independent framing of a datagram.
func checkHeader(b []byte) (Kind, error) {
	if len(b) < 2 {
		return 0, fmt.Errorf("%w: %d bytes", ErrWireTruncated, len(b))
	}
	if b[0] != wireMagic0 || b[1] != wireMagic1 {
		return 0, ErrWireBadMagic
	}
	if len(b) < WireMinDatagram {
		return 0, fmt.Errorf("%w: %d bytes, need at least %d", ErrWireTruncated, len(b), WireMinDatagram)
	}
	if b[2] != WireVersion {
		return 0, fmt.Errorf("%w: %d", ErrWireVersion, b[2])
	}
	k := Kind(b[3])
	switch k {
	case KindData, KindRepair, KindNak, KindSession, KindNakMiss:
		return k, nil
	}
	return 0, fmt.Errorf("%w: %d", ErrWireKind, b[3])
}

// verify reports whether tag is a valid truncated HMAC of signed under any key.
func (c *Codec) verify(signed, tag []byte) bool {
	for _, mac := range c.macs {
		mac.Reset()
		mac.Write(signed)
		sum := mac.Sum(c.sum[:0])
		if hmac.Equal(sum[:WireTagLen], tag) {
			return true
		}
	}
	return false
}

// wireReader reads big-endian fields and records the first shortfall.
type wireReader struct {
	b   []byte
	bad bool
}

func (r *wireReader) take(n int) []byte {
	if r.bad || n > len(r.b) {
		r.bad = true
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *wireReader) u8() uint8 {
	if v := r.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *wireReader) u16() uint16 {
	if v := r.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (r *wireReader) u32() uint32 {
	if v := r.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *wireReader) u64() uint64 {
	if v := r.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (r *wireReader) id() PacketID {
	return PacketID{Group: GroupID(r.u32()), Sender: NodeID(r.u32()), Seq: r.u64()}
}

// decodeBody parses an authenticated body. The packet kinds are allocated
// together with their Packet so a data packet costs two allocations (the
// structs and the payload copy).
func decodeBody(kind Kind, from NodeID, body []byte) (*Packet, error) {
	r := wireReader{b: body}
	var p *Packet
	switch kind {
	case KindData:
		x := new(struct {
			p Packet
			d Data
		})
		p, x.p.Data = &x.p, &x.d
		d := &x.d
		d.ID = r.id()
		d.FragIndex = r.u16()
		d.FragCount = r.u16()
		flags := r.u8()
		n := int(r.u16())
		payload := r.take(n)
		if r.bad {
			return nil, fmt.Errorf("%w: data body of %d bytes", ErrWireTruncated, len(body))
		}
		if flags&^dataFlagsAllowed != 0 {
			return nil, fmt.Errorf("%w: data flags %#x", ErrWireMalformed, flags)
		}
		d.Retransmit = flags&dataFlagRetrans != 0
		if err := checkFrag(d.ID.Seq, d.FragIndex, d.FragCount); err != nil {
			return nil, err
		}
		d.Payload = append(make([]byte, 0, n), payload...)
	case KindRepair:
		x := new(struct {
			p Packet
			r Repair
		})
		p, x.p.Repair = &x.p, &x.r
		count := int(r.u16())
		if r.bad {
			return nil, fmt.Errorf("%w: repair body of %d bytes", ErrWireTruncated, len(body))
		}
		if count == 0 || count > WireMaxRepairEntries {
			return nil, fmt.Errorf("%w: %d repair entries, want 1..%d", ErrWireCount, count, WireMaxRepairEntries)
		}
		// Check the bytes are there before allocating count entries.
		if count*repairEntryLen+2 > len(r.b) {
			return nil, fmt.Errorf("%w: %d repair entries in %d bytes", ErrWireTruncated, count, len(r.b))
		}
		entries := make([]RepairEntry, count)
		maxLen := 0
		for i := range entries {
			e := &entries[i]
			e.ID = r.id()
			e.FragIndex = r.u16()
			e.FragCount = r.u16()
			e.Length = uint32(r.u16())
			if err := checkFrag(e.ID.Seq, e.FragIndex, e.FragCount); err != nil {
				return nil, err
			}
			maxLen = max(maxLen, int(e.Length))
		}
		n := int(r.u16())
		xor := r.take(n)
		if r.bad {
			return nil, fmt.Errorf("%w: repair XOR of %d bytes", ErrWireTruncated, n)
		}
		if maxLen > n {
			return nil, fmt.Errorf("%w: repair entry length %d > XOR length %d", ErrWireMalformed, maxLen, n)
		}
		x.r.Entries = entries
		x.r.XOR = append(make([]byte, 0, n), xor...)
	case KindNak, KindNakMiss:
		g, s := GroupID(r.u32()), NodeID(r.u32())
		count := int(r.u16())
		if r.bad {
			return nil, fmt.Errorf("%w: %v body of %d bytes", ErrWireTruncated, kind, len(body))
		}
		if count == 0 || count > WireMaxNakSeqs {
			return nil, fmt.Errorf("%w: %d sequence numbers, want 1..%d", ErrWireCount, count, WireMaxNakSeqs)
		}
		if count*8 > len(r.b) {
			return nil, fmt.Errorf("%w: %d sequence numbers in %d bytes", ErrWireTruncated, count, len(r.b))
		}
		seqs := make([]uint64, count)
		for i := range seqs {
			if seqs[i] = r.u64(); seqs[i] == 0 {
				return nil, fmt.Errorf("%w: sequence number 0", ErrWireMalformed)
			}
		}
		if kind == KindNak {
			x := new(struct {
				p Packet
				n Nak
			})
			x.n = Nak{Group: g, Sender: s, Seqs: seqs}
			p, x.p.Nak = &x.p, &x.n
		} else {
			x := new(struct {
				p Packet
				n NakMiss
			})
			x.n = NakMiss{Group: g, Sender: s, Seqs: seqs}
			p, x.p.NakMiss = &x.p, &x.n
		}
	case KindSession:
		x := new(struct {
			p Packet
			s Session
		})
		p, x.p.Session = &x.p, &x.s
		x.s = Session{Group: GroupID(r.u32()), Sender: NodeID(r.u32()), LastSeq: r.u64()}
		if r.bad {
			return nil, fmt.Errorf("%w: session body of %d bytes", ErrWireTruncated, len(body))
		}
	default:
		return nil, fmt.Errorf("%w: %d", ErrWireKind, uint8(kind))
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes after %v body", ErrWireMalformed, len(r.b), kind)
	}
	p.Kind, p.From = kind, from
	return p, nil
}

// WireDropReason classifies why a received datagram was dropped. The UDP
// transport keeps one counter per reason.
type WireDropReason uint8

// Drop reasons. The first eight mirror the decode errors; the rest are
// transport-level.
const (
	WireDropOversize   WireDropReason = iota // ErrWireOversize: bigger than MaxDatagram
	WireDropTruncated                        // ErrWireTruncated: shorter than its fields
	WireDropBadMagic                         // ErrWireBadMagic: not a Ricochet datagram
	WireDropVersion                          // ErrWireVersion: other wire-format version
	WireDropKind                             // ErrWireKind: unknown packet kind
	WireDropAuth                             // ErrWireAuth: tag matches no cluster key
	WireDropCount                            // ErrWireCount: count over its bound
	WireDropMalformed                        // ErrWireMalformed: inconsistent body
	WireDropOverflow                         // inbound queue full: the consumer is too slow
	NumWireDropReasons                       // number of reasons (array size)
)

var wireDropNames = [NumWireDropReasons]string{
	"oversize", "truncated", "bad_magic", "version", "kind", "auth", "count", "malformed", "overflow",
}

func (r WireDropReason) String() string {
	if r < NumWireDropReasons {
		return wireDropNames[r]
	}
	return fmt.Sprintf("drop(%d)", uint8(r))
}

// WireDropReasonOf maps a Decode error to its drop reason. Errors that wrap
// none of the wire sentinels count as malformed.
func WireDropReasonOf(err error) WireDropReason {
	switch {
	case errors.Is(err, ErrWireOversize):
		return WireDropOversize
	case errors.Is(err, ErrWireTruncated):
		return WireDropTruncated
	case errors.Is(err, ErrWireBadMagic):
		return WireDropBadMagic
	case errors.Is(err, ErrWireVersion):
		return WireDropVersion
	case errors.Is(err, ErrWireKind):
		return WireDropKind
	case errors.Is(err, ErrWireAuth):
		return WireDropAuth
	case errors.Is(err, ErrWireCount):
		return WireDropCount
	}
	return WireDropMalformed
}
