package ricochet

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

var (
	testKey1 = []byte("tempest-test-cluster-key-one-32b")
	testKey2 = []byte("tempest-test-cluster-key-two-32b")
)

func mustCodec(t testing.TB, cfg WireConfig) *Codec {
	t.Helper()
	c, err := NewCodec(cfg)
	if err != nil {
		t.Fatalf("NewCodec: %v", err)
	}
	return c
}

// samplePackets covers every kind, with boundary values.
func samplePackets() []*Packet {
	xor := bytes.Repeat([]byte{0xA5}, 300)
	return []*Packet{
		{Kind: KindData, From: 7, Data: &Data{ID: PacketID{Group: 3, Sender: 7, Seq: 1}, FragCount: 1, Payload: []byte("hello")}},
		{Kind: KindData, From: math.MaxUint32, Data: &Data{ID: PacketID{Group: math.MaxUint32, Sender: math.MaxUint32, Seq: math.MaxUint64},
			FragIndex: 4, FragCount: 5, Retransmit: true, Payload: []byte{}}},
		{Kind: KindRepair, From: 2, Repair: &Repair{Entries: []RepairEntry{
			{ID: PacketID{Group: 1, Sender: 9, Seq: 10}, FragCount: 1, Length: 300},
			{ID: PacketID{Group: 2, Sender: 8, Seq: 11}, FragIndex: 1, FragCount: 2, Length: 0},
			{ID: PacketID{Group: 1, Sender: 9, Seq: 12}, FragCount: 1, Length: 17},
		}, XOR: xor}},
		{Kind: KindNak, From: 4, Nak: &Nak{Group: 1, Sender: 9, Seqs: []uint64{3, 4, 99, math.MaxUint64}}},
		{Kind: KindSession, From: 9, Session: &Session{Group: 1, Sender: 9, LastSeq: 12345}},
		{Kind: KindSession, From: 9, Session: &Session{Group: 1, Sender: 9, LastSeq: 0}},
		{Kind: KindNakMiss, From: 9, NakMiss: &NakMiss{Group: 1, Sender: 9, Seqs: []uint64{3}}},
	}
}

func TestWireRoundTripEveryKind(t *testing.T) {
	c := mustCodec(t, DefaultWireConfig(testKey1))
	for _, p := range samplePackets() {
		buf, err := c.AppendEncode(nil, p)
		if err != nil {
			t.Fatalf("encode %v: %v", p.Kind, err)
		}
		size, err := WireSize(p)
		if err != nil || size != len(buf) {
			t.Fatalf("%v: WireSize = %d, %v; encoded %d bytes", p.Kind, size, err, len(buf))
		}
		got, err := c.Decode(buf)
		if err != nil {
			t.Fatalf("decode %v: %v", p.Kind, err)
		}
		if !reflect.DeepEqual(got, p) {
			t.Fatalf("%v round trip:\n got %+v\nwant %+v", p.Kind, got, p)
		}
	}
}

// TestWireGoldenData pins the version-1 layout of a data packet byte by byte,
// so an accidental format change breaks a test instead of a mixed-version cluster.
func TestWireGoldenData(t *testing.T) {
	c := mustCodec(t, DefaultWireConfig(testKey1))
	p := &Packet{Kind: KindData, From: 0x01020304, Data: &Data{
		ID: PacketID{Group: 0x0A0B0C0D, Sender: 0x01020304, Seq: 0x1122334455667788}, FragIndex: 1, FragCount: 2,
		Retransmit: true, Payload: []byte("xyz")}}
	got, err := c.AppendEncode(nil, p)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{'T', 'R', 1, 1, 1, 2, 3, 4, // header
		0x0A, 0x0B, 0x0C, 0x0D, 1, 2, 3, 4, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, // id
		0, 1, 0, 2, 1, 0, 3, 'x', 'y', 'z'} // frag index, frag count, flags, len, payload
	m := hmac.New(sha256.New, testKey1)
	m.Write(want)
	want = append(want, m.Sum(nil)[:16]...)
	if !bytes.Equal(got, want) {
		t.Fatalf("encoding changed:\n got % x\nwant % x", got, want)
	}
	if len(got) != WireDataOverhead+3 {
		t.Fatalf("WireDataOverhead = %d, datagram %d bytes for 3-byte payload", WireDataOverhead, len(got))
	}
}

func TestWireRepairOverhead(t *testing.T) {
	c := mustCodec(t, LoopbackWireConfig(testKey1))
	for _, n := range []int{1, 8, WireMaxRepairEntries} {
		r := &Repair{XOR: make([]byte, 100)}
		for i := 0; i < n; i++ {
			r.Entries = append(r.Entries, RepairEntry{ID: PacketID{Group: 1, Sender: 2, Seq: uint64(i + 1)}, FragCount: 1, Length: 100})
		}
		b, err := c.AppendEncode(nil, &Packet{Kind: KindRepair, Repair: r})
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != WireRepairOverhead(n)+100 {
			t.Fatalf("%d entries: %d bytes, WireRepairOverhead says %d+100", n, len(b), WireRepairOverhead(n))
		}
	}
}

func TestWireAppendKeepsPrefix(t *testing.T) {
	c := mustCodec(t, DefaultWireConfig(testKey1))
	p := samplePackets()[0]
	prefix := []byte("prefix")
	b, err := c.AppendEncode(append([]byte(nil), prefix...), p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, prefix) {
		t.Fatalf("prefix overwritten: %q", b[:6])
	}
	if _, err := c.Decode(b[len(prefix):]); err != nil {
		t.Fatalf("appended datagram does not decode: %v", err)
	}
}

func TestWireKeyRotation(t *testing.T) {
	old := mustCodec(t, DefaultWireConfig(testKey1))
	rolling := mustCodec(t, DefaultWireConfig(testKey2, testKey1)) // new key first, old still accepted
	fresh := mustCodec(t, DefaultWireConfig(testKey2))
	p := samplePackets()[0]

	fromOld, _ := old.AppendEncode(nil, p)
	fromRolling, _ := rolling.AppendEncode(nil, p)
	if _, err := rolling.Decode(fromOld); err != nil {
		t.Fatalf("rolling codec rejects the old key: %v", err)
	}
	if _, err := fresh.Decode(fromRolling); err != nil {
		t.Fatalf("rolling codec does not sign with its first key: %v", err)
	}
	if _, err := fresh.Decode(fromOld); !errors.Is(err, ErrWireAuth) {
		t.Fatalf("codec without the old key accepted it: err = %v", err)
	}
	if _, err := old.Decode(fromRolling); !errors.Is(err, ErrWireAuth) {
		t.Fatalf("old codec accepted the new key: err = %v", err)
	}
}

// Flipping any single bit anywhere in a datagram must make it rejected.
func TestWireEveryBitFlipRejected(t *testing.T) {
	c := mustCodec(t, DefaultWireConfig(testKey1))
	for _, p := range samplePackets() {
		b, _ := c.AppendEncode(nil, p)
		for i := range b {
			for bit := 0; bit < 8; bit++ {
				b[i] ^= 1 << bit
				if got, err := c.Decode(b); err == nil {
					t.Fatalf("%v: flipping bit %d of byte %d accepted: %+v", p.Kind, bit, i, got)
				}
				b[i] ^= 1 << bit
			}
		}
	}
}

func TestWireEveryTruncationRejected(t *testing.T) {
	c := mustCodec(t, DefaultWireConfig(testKey1))
	for _, p := range samplePackets() {
		b, _ := c.AppendEncode(nil, p)
		for n := 0; n < len(b); n++ {
			if _, err := c.Decode(b[:n]); err == nil {
				t.Fatalf("%v: %d-byte prefix of %d accepted", p.Kind, n, len(b))
			}
		}
		if _, err := c.Decode(append(b, 0)); err == nil {
			t.Fatalf("%v: trailing byte accepted", p.Kind)
		}
	}
}

func TestWireHeaderErrors(t *testing.T) {
	c := mustCodec(t, DefaultWireConfig(testKey1))
	good, _ := c.AppendEncode(nil, samplePackets()[0])
	mod := func(i int, v byte) []byte {
		b := append([]byte(nil), good...)
		b[i] = v
		return b
	}
	cases := []struct {
		name string
		in   []byte
		want error
		why  WireDropReason
	}{
		{"empty", nil, ErrWireTruncated, WireDropTruncated},
		{"short", good[:10], ErrWireTruncated, WireDropTruncated},
		{"magic", mod(0, 'X'), ErrWireBadMagic, WireDropBadMagic},
		{"version", mod(2, 2), ErrWireVersion, WireDropVersion},
		{"kind", mod(3, 9), ErrWireKind, WireDropKind},
		{"kind0", mod(3, 0), ErrWireKind, WireDropKind},
		{"from", mod(4, 0xFF), ErrWireAuth, WireDropAuth},
		{"tag", mod(len(good)-1, good[len(good)-1]^1), ErrWireAuth, WireDropAuth},
		{"oversize", make([]byte, WireDefaultMaxDatagram+1), ErrWireOversize, WireDropOversize},
		{"garbage", []byte(strings.Repeat("garbage!", 20)), ErrWireBadMagic, WireDropBadMagic},
	}
	for _, tc := range cases {
		_, err := c.Decode(tc.in)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
		if got := WireDropReasonOf(err); got != tc.why {
			t.Errorf("%s: reason %v, want %v", tc.name, got, tc.why)
		}
	}
}

// signRaw builds a correctly signed datagram around an arbitrary body, to
// reach the body parser past authentication.
func signRaw(key []byte, kind byte, from uint32, body []byte) []byte {
	b := []byte{'T', 'R', WireVersion, kind}
	b = binary.BigEndian.AppendUint32(b, from)
	b = append(b, body...)
	m := hmac.New(sha256.New, key)
	m.Write(b)
	return append(b, m.Sum(nil)[:WireTagLen]...)
}

func TestWireBodyErrors(t *testing.T) {
	c := mustCodec(t, LoopbackWireConfig(testKey1))
	be := binary.BigEndian
	id := func(b []byte, seq uint64) []byte {
		b = be.AppendUint32(b, 1)
		b = be.AppendUint32(b, 2)
		return be.AppendUint64(b, seq)
	}
	data := func(seq uint64, idx, cnt uint16, flags byte, plen uint16, payload []byte) []byte {
		b := id(nil, seq)
		b = be.AppendUint16(b, idx)
		b = be.AppendUint16(b, cnt)
		b = append(b, flags)
		b = be.AppendUint16(b, plen)
		return append(b, payload...)
	}
	seqs := func(count uint16, vals ...uint64) []byte {
		b := be.AppendUint32(nil, 1)
		b = be.AppendUint32(b, 2)
		b = be.AppendUint16(b, count)
		for _, v := range vals {
			b = be.AppendUint64(b, v)
		}
		return b
	}
	entry := func(b []byte, seq uint64, length uint16) []byte {
		b = id(b, seq)
		b = be.AppendUint16(b, 0)
		b = be.AppendUint16(b, 1)
		return be.AppendUint16(b, length)
	}
	repair := func(count uint16, entries []byte, xorLen uint16, xor []byte) []byte {
		b := be.AppendUint16(nil, count)
		b = append(b, entries...)
		b = be.AppendUint16(b, xorLen)
		return append(b, xor...)
	}
	many := make([]uint64, WireMaxNakSeqs+1)
	for i := range many {
		many[i] = uint64(i + 1)
	}
	cases := []struct {
		name string
		kind Kind
		body []byte
		want error
	}{
		{"data ok", KindData, data(1, 0, 1, 0, 2, []byte("ab")), nil},
		{"data payload short", KindData, data(1, 0, 1, 0, 3, []byte("ab")), ErrWireTruncated},
		{"data payload long", KindData, data(1, 0, 1, 0, 1, []byte("ab")), ErrWireMalformed},
		{"data seq 0", KindData, data(0, 0, 1, 0, 0, nil), ErrWireMalformed},
		{"data frag count 0", KindData, data(1, 0, 0, 0, 0, nil), ErrWireMalformed},
		{"data frag index", KindData, data(1, 3, 3, 0, 0, nil), ErrWireMalformed},
		{"data flags", KindData, data(1, 0, 1, 0x80, 0, nil), ErrWireMalformed},
		{"data empty body", KindData, nil, ErrWireTruncated},
		{"session ok", KindSession, id(nil, 5), nil},
		{"session short", KindSession, id(nil, 5)[:15], ErrWireTruncated},
		{"session long", KindSession, append(id(nil, 5), 0), ErrWireMalformed},
		{"nak ok", KindNak, seqs(2, 5, 6), nil},
		{"nak zero count", KindNak, seqs(0), ErrWireCount},
		{"nak count over bound", KindNak, seqs(WireMaxNakSeqs+1, many...), ErrWireCount},
		{"nak count > bytes", KindNak, seqs(3, 5, 6), ErrWireTruncated},
		{"nak huge count no bytes", KindNak, seqs(0xFFFF), ErrWireCount},
		{"nak seq 0", KindNakMiss, seqs(2, 5, 0), ErrWireMalformed},
		{"nak trailing", KindNak, append(seqs(1, 5), 1), ErrWireMalformed},
		{"repair ok", KindRepair, repair(2, entry(entry(nil, 1, 3), 2, 4), 4, []byte("abcd")), nil},
		{"repair zero entries", KindRepair, repair(0, nil, 4, []byte("abcd")), ErrWireCount},
		{"repair too many entries", KindRepair, repair(WireMaxRepairEntries+1, nil, 0, nil), ErrWireCount},
		{"repair entries > bytes", KindRepair, repair(3, entry(nil, 1, 3), 4, []byte("abcd")), ErrWireTruncated},
		{"repair entry longer than xor", KindRepair, repair(1, entry(nil, 1, 5), 4, []byte("abcd")), ErrWireMalformed},
		{"repair xor short", KindRepair, repair(1, entry(nil, 1, 3), 5, []byte("abcd")), ErrWireTruncated},
		{"repair entry seq 0", KindRepair, repair(1, entry(nil, 0, 3), 4, []byte("abcd")), ErrWireMalformed},
	}
	for _, tc := range cases {
		_, err := c.Decode(signRaw(testKey1, byte(tc.kind), 2, tc.body))
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestWireEncodeRejectsInvalidPackets(t *testing.T) {
	c := mustCodec(t, DefaultWireConfig(testKey1))
	id := PacketID{Group: 1, Sender: 2, Seq: 3}
	seqs := make([]uint64, WireMaxNakSeqs+1)
	for i := range seqs {
		seqs[i] = uint64(i + 1)
	}
	cases := []struct {
		name string
		p    *Packet
		want error
	}{
		{"nil", nil, ErrWireMalformed},
		{"no body", &Packet{Kind: KindData}, ErrWireMalformed},
		{"wrong body", &Packet{Kind: KindData, Nak: &Nak{Seqs: []uint64{1}}}, ErrWireMalformed},
		{"two bodies", &Packet{Kind: KindData, Data: &Data{ID: id, FragCount: 1}, Session: &Session{}}, ErrWireMalformed},
		{"unknown kind", &Packet{Kind: 77, Session: &Session{}}, ErrWireKind},
		{"seq 0", &Packet{Kind: KindData, Data: &Data{ID: PacketID{Group: 1, Sender: 2}, FragCount: 1}}, ErrWireMalformed},
		{"frag count 0", &Packet{Kind: KindData, Data: &Data{ID: id}}, ErrWireMalformed},
		{"payload over datagram", &Packet{Kind: KindData, Data: &Data{ID: id, FragCount: 1, Payload: make([]byte, 1500)}}, ErrWireOversize},
		{"payload over u16", &Packet{Kind: KindData, Data: &Data{ID: id, FragCount: 1, Payload: make([]byte, 70000)}}, ErrWireOversize},
		{"empty repair", &Packet{Kind: KindRepair, Repair: &Repair{XOR: []byte{1}}}, ErrWireCount},
		{"repair entry too long", &Packet{Kind: KindRepair, Repair: &Repair{Entries: []RepairEntry{{ID: id, FragCount: 1, Length: 2}}, XOR: []byte{1}}}, ErrWireMalformed},
		{"empty nak", &Packet{Kind: KindNak, Nak: &Nak{}}, ErrWireCount},
		{"nak over bound", &Packet{Kind: KindNak, Nak: &Nak{Seqs: seqs}}, ErrWireCount},
		{"nak-miss seq 0", &Packet{Kind: KindNakMiss, NakMiss: &NakMiss{Seqs: []uint64{0}}}, ErrWireMalformed},
	}
	for _, tc := range cases {
		dst := []byte("keep")
		out, err := c.AppendEncode(dst, tc.p)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
		if string(out) != "keep" {
			t.Errorf("%s: dst modified on error: %q", tc.name, out)
		}
	}
}

func TestWireDecodedPacketDoesNotAliasInput(t *testing.T) {
	c := mustCodec(t, DefaultWireConfig(testKey1))
	for _, p := range samplePackets() {
		b, _ := c.AppendEncode(nil, p)
		got, err := c.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		for i := range b {
			b[i] = 0xEE
		}
		if !reflect.DeepEqual(got, p) {
			t.Fatalf("%v: decoded packet changed when the input buffer was overwritten", p.Kind)
		}
	}
}

func TestWireConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  WireConfig
		ok   bool
	}{
		{"default", DefaultWireConfig(testKey1), true},
		{"loopback two keys", LoopbackWireConfig(testKey1, testKey2), true},
		{"no key", DefaultWireConfig(), false},
		{"short key", DefaultWireConfig([]byte("short")), false},
		{"second key short", DefaultWireConfig(testKey1, []byte("x")), false},
		{"datagram too small", WireConfig{Keys: [][]byte{testKey1}, MaxDatagram: 10}, false},
		{"datagram too big", WireConfig{Keys: [][]byte{testKey1}, MaxDatagram: 70000}, false},
		{"zero datagram", WireConfig{Keys: [][]byte{testKey1}}, false},
	}
	for _, tc := range cases {
		err := tc.cfg.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("%s: Validate = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrWireConfig) {
			t.Errorf("%s: error %v does not wrap ErrWireConfig", tc.name, err)
		}
	}
}

func TestWireKeysCopied(t *testing.T) {
	key := append([]byte(nil), testKey1...)
	c := mustCodec(t, DefaultWireConfig(key))
	key[0] ^= 0xFF // caller reuses its slice
	b, _ := c.AppendEncode(nil, samplePackets()[0])
	if _, err := mustCodec(t, DefaultWireConfig(testKey1)).Decode(b); err != nil {
		t.Fatalf("codec did not copy its key: %v", err)
	}
}

func TestWireCloneIndependent(t *testing.T) {
	c := mustCodec(t, DefaultWireConfig(testKey1, testKey2))
	d := c.Clone()
	if d.MaxDatagram() != c.MaxDatagram() {
		t.Fatal("clone changed MaxDatagram")
	}
	p := samplePackets()[2]
	b1, _ := c.AppendEncode(nil, p)
	b2, _ := d.AppendEncode(nil, p)
	if !bytes.Equal(b1, b2) {
		t.Fatal("clone encodes differently")
	}
}

func TestWireEncodeDoesNotAllocate(t *testing.T) {
	c := mustCodec(t, LoopbackWireConfig(testKey1))
	buf := make([]byte, 0, WireMaxDatagram)
	for _, p := range samplePackets() {
		allocs := testing.AllocsPerRun(100, func() {
			var err error
			if _, err = c.AppendEncode(buf[:0], p); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%v: AppendEncode allocates %.1f times per call into a reused buffer", p.Kind, allocs)
		}
	}
}

func TestWireDecodeAllocations(t *testing.T) {
	c := mustCodec(t, LoopbackWireConfig(testKey1))
	want := map[Kind]float64{KindData: 2, KindRepair: 3, KindNak: 2, KindNakMiss: 2, KindSession: 1}
	for _, p := range samplePackets() {
		b, _ := c.AppendEncode(nil, p)
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := c.Decode(b); err != nil {
				t.Fatal(err)
			}
		})
		if allocs > want[p.Kind] {
			t.Errorf("%v: Decode allocates %.1f times, budget %.0f", p.Kind, allocs, want[p.Kind])
		}
	}
}

func TestWireDropReasonNames(t *testing.T) {
	seen := map[string]bool{}
	for r := WireDropReason(0); r < NumWireDropReasons; r++ {
		s := r.String()
		if s == "" || seen[s] || strings.HasPrefix(s, "drop(") {
			t.Fatalf("reason %d has bad or duplicate name %q", r, s)
		}
		seen[s] = true
	}
	if WireDropReasonOf(errors.New("other")) != WireDropMalformed {
		t.Fatal("foreign error not classed as malformed")
	}
}

func BenchmarkWireEncodeData1K(b *testing.B) {
	c := mustCodec(b, DefaultWireConfig(testKey1))
	p := &Packet{Kind: KindData, From: 1, Data: &Data{ID: PacketID{Group: 1, Sender: 1, Seq: 1}, FragCount: 1, Payload: make([]byte, 1024)}}
	buf := make([]byte, 0, 2048)
	b.SetBytes(1024)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = c.AppendEncode(buf[:0], p)
	}
}

func BenchmarkWireDecodeData1K(b *testing.B) {
	c := mustCodec(b, DefaultWireConfig(testKey1))
	p := &Packet{Kind: KindData, From: 1, Data: &Data{ID: PacketID{Group: 1, Sender: 1, Seq: 1}, FragCount: 1, Payload: make([]byte, 1024)}}
	buf, _ := c.AppendEncode(nil, p)
	b.SetBytes(1024)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Decode(buf); err != nil {
			b.Fatal(err)
		}
	}
}
