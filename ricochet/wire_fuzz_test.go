package ricochet

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// Fuzz targets for the wire decoder. Run each with e.g.
//
//	go test ./ricochet -run '^$' -fuzz '^FuzzDecode$' -fuzztime 60s
//	go test ./ricochet -run '^$' -fuzz '^FuzzDecodeSigned$' -fuzztime 60s
//	go test ./ricochet -run '^$' -fuzz '^FuzzDecodeRoundTrip$' -fuzztime 60s
//
// Without -fuzz, `go test` runs the seed corpus as ordinary tests.
//
// On Go 1.26 a duration budget can end with a spurious "context deadline
// exceeded" FAIL and no crasher written (a race in the fuzz coordinator,
// golang/go#75804, fixed in Go 1.27), mostly on a loaded machine. A count
// budget avoids it: -fuzztime 500000x (about 40 s here). A real failure
// always writes its input under testdata/fuzz/<target>/.

func fuzzSeeds(f *testing.F, c *Codec) [][]byte {
	var out [][]byte
	for _, p := range samplePackets() {
		b, err := c.AppendEncode(nil, p)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// checkCanonical asserts the decoder's contract on any input: either an
// error that maps to a drop reason, or a packet whose re-encoding is
// byte-identical to the input (the encoding is canonical, so anything
// accepted must be exactly what an honest encoder would produce).
func checkCanonical(t *testing.T, c *Codec, in []byte) {
	p, err := c.Decode(in)
	if err != nil {
		if p != nil {
			t.Fatalf("Decode returned a packet and an error %v", err)
		}
		if r := WireDropReasonOf(err); r >= NumWireDropReasons {
			t.Fatalf("error %v maps to no reason", err)
		}
		return
	}
	out, err := c.AppendEncode(nil, p)
	if err != nil {
		t.Fatalf("accepted packet %+v does not re-encode: %v", p, err)
	}
	if !bytes.Equal(out, in) {
		t.Fatalf("non-canonical accept:\n in % x\nout % x", in, out)
	}
}

// FuzzDecode feeds raw datagrams to Decode: the path of every byte arriving
// from the network. Nearly all inputs fail authentication; the seeds are
// valid datagrams so the fuzzer explores mutations of real packets too.
func FuzzDecode(f *testing.F) {
	c := mustCodec(f, LoopbackWireConfig(testKey1, testKey2))
	for _, s := range fuzzSeeds(f, c) {
		f.Add(s)
	}
	f.Add([]byte{})
	f.Add([]byte("TR"))
	f.Add([]byte("TR\x01\x01garbagegarbagegarbagegarbage"))
	f.Fuzz(func(t *testing.T, in []byte) {
		checkCanonical(t, c, in)
	})
}

// FuzzDecodeSigned signs an arbitrary kind, sender and body with the cluster
// key before decoding, so the fuzzer drives the body parsers (which only see
// authenticated bytes) instead of bouncing off the tag check.
func FuzzDecodeSigned(f *testing.F) {
	c := mustCodec(f, LoopbackWireConfig(testKey1))
	for _, s := range fuzzSeeds(f, c) {
		f.Add(s[3], uint32(7), s[WireHeaderLen:len(s)-WireTagLen])
	}
	f.Add(byte(KindRepair), uint32(1), []byte{0xFF, 0xFF})
	f.Add(byte(KindNak), uint32(1), []byte{0, 0, 0, 1, 0, 0, 0, 2, 0xFF, 0xFF})
	f.Fuzz(func(t *testing.T, kind byte, from uint32, body []byte) {
		if len(body) > WireMaxDatagram-WireMinDatagram {
			body = body[:WireMaxDatagram-WireMinDatagram]
		}
		in := signRaw(testKey1, kind, from, body)
		checkCanonical(t, c, in)
	})
}

// FuzzDecodeRoundTrip builds packets of every kind from fuzzed fields: every
// packet the encoder accepts must decode to an equal packet, and the encoder
// must reject invalid ones with a wire error rather than panic.
func FuzzDecodeRoundTrip(f *testing.F) {
	c := mustCodec(f, LoopbackWireConfig(testKey1))
	f.Add(uint8(1), uint32(1), uint32(2), uint32(3), uint64(4), uint16(0), uint16(1), true, []byte("payload"), uint8(3))
	f.Add(uint8(2), uint32(1), uint32(2), uint32(3), uint64(4), uint16(1), uint16(2), false, []byte("xor"), uint8(9))
	f.Add(uint8(3), uint32(0), uint32(0), uint32(0), uint64(1), uint16(0), uint16(0), false, []byte{}, uint8(0))
	f.Add(uint8(4), uint32(5), uint32(6), uint32(7), uint64(0), uint16(0), uint16(0), false, []byte{}, uint8(0))
	f.Add(uint8(5), uint32(5), uint32(6), uint32(7), uint64(9), uint16(0), uint16(0), false, []byte{}, uint8(200))
	f.Fuzz(func(t *testing.T, kind uint8, from, group, sender uint32, seq uint64, idx, cnt uint16, flag bool, payload []byte, n uint8) {
		p := &Packet{Kind: Kind(kind), From: NodeID(from)}
		id := PacketID{Group: GroupID(group), Sender: NodeID(sender), Seq: seq}
		seqs := make([]uint64, int(n))
		for i := range seqs {
			seqs[i] = seq + uint64(i)
		}
		switch Kind(kind) {
		case KindData:
			p.Data = &Data{ID: id, FragIndex: idx, FragCount: cnt, Retransmit: flag, Payload: payload}
		case KindRepair:
			r := &Repair{XOR: payload}
			for i := 0; i < int(n); i++ {
				r.Entries = append(r.Entries, RepairEntry{ID: PacketID{Group: id.Group, Sender: id.Sender, Seq: id.Seq + uint64(i)},
					FragIndex: idx, FragCount: cnt, Length: uint32(len(payload) - i%max(1, len(payload)+1))})
			}
			p.Repair = r
		case KindNak:
			p.Nak = &Nak{Group: id.Group, Sender: id.Sender, Seqs: seqs}
		case KindNakMiss:
			p.NakMiss = &NakMiss{Group: id.Group, Sender: id.Sender, Seqs: seqs}
		default:
			p.Session = &Session{Group: id.Group, Sender: id.Sender, LastSeq: seq}
		}
		b, err := c.AppendEncode(nil, p)
		if err != nil {
			var known bool
			for _, e := range []error{ErrWireMalformed, ErrWireCount, ErrWireOversize, ErrWireKind} {
				known = known || errors.Is(err, e)
			}
			if !known || len(b) != 0 {
				t.Fatalf("encode error %v (known=%v), %d bytes written", err, known, len(b))
			}
			return
		}
		got, err := c.Decode(b)
		if err != nil {
			t.Fatalf("encoded packet %+v does not decode: %v", p, err)
		}
		if p.Data != nil && p.Data.Payload == nil {
			p.Data.Payload = []byte{}
		}
		if p.Repair != nil && p.Repair.XOR == nil {
			p.Repair.XOR = []byte{}
		}
		if !reflect.DeepEqual(got, p) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, p)
		}
	})
}
