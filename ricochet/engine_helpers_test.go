package ricochet

import (
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"
)

// engSeed is ricochettest.Seed for the engine's own tests, which cannot
// import ricochettest (it imports ricochet): seed, or RICOCHET_SEED when
// set (to replay a failure), printed by every failure of t.
func engSeed(t testing.TB, seed uint64) uint64 {
	t.Helper()
	if s := os.Getenv("RICOCHET_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("RICOCHET_SEED: %v", err)
		}
		seed = v
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("seed = %d (replay with RICOCHET_SEED=%d)", seed, seed)
		}
	})
	return seed
}

// engT0 is the engine tests' time origin (the simulation epoch of ricochettest).
var engT0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// skipUnderRace skips a heavy single-threaded simulation test under -race.
func skipUnderRace(t testing.TB) {
	t.Helper()
	if raceEnabled {
		t.Skip("single-threaded simulation: nothing for the race detector; run without -race")
	}
}

func engMs(n float64) time.Duration { return time.Duration(n * float64(time.Millisecond)) }

func engNew(t testing.TB, cfg Config, self NodeID, seed uint64) *Engine {
	t.Helper()
	e, err := NewEngine(cfg, self, rand.New(rand.NewPCG(seed, uint64(self))))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func engPayload(id PacketID, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(uint64(i)*7 + id.Seq*13 + uint64(id.Sender)*31 + uint64(id.Group)*101)
	}
	return p
}

func engData(g GroupID, s NodeID, seq uint64, n int) *Packet {
	id := PacketID{Group: g, Sender: s, Seq: seq}
	return &Packet{Kind: KindData, From: s, Data: &Data{ID: id, FragCount: 1, Payload: engPayload(id, n)}}
}

// repairOf builds the repair a receiver would build over ds.
func engRepair(from NodeID, ds ...*Packet) *Packet {
	r := &Repair{}
	for _, p := range ds {
		d := p.Data
		r.Entries = append(r.Entries, RepairEntry{ID: d.ID, FragIndex: d.FragIndex, FragCount: d.FragCount, Length: uint32(len(d.Payload))})
		if len(d.Payload) > len(r.XOR) {
			r.XOR = append(r.XOR, make([]byte, len(d.Payload)-len(r.XOR))...)
		}
		xorInto(r.XOR, d.Payload)
	}
	return &Packet{Kind: KindRepair, From: from, Repair: r}
}

func engIDs(o Output) []PacketID {
	var ids []PacketID
	for _, d := range o.Deliveries {
		ids = append(ids, d.ID)
	}
	return ids
}

func engNaks(o Output) []*Nak {
	var ns []*Nak
	for _, u := range o.Unicasts {
		if u.Packet.Kind == KindNak {
			ns = append(ns, u.Packet.Nak)
		}
	}
	return ns
}
