package ricochet

import (
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkEngineReceive measures a receiver's cost per data packet with
// LEC on (bins, repairs built and emitted every R packets).
func BenchmarkEngineReceive(b *testing.B) {
	e, _ := NewEngine(DefaultConfig(), 2, rand.New(rand.NewPCG(1, 2)))
	e.SetGroup(1, []NodeID{1, 2, 3, 4, 5, 6})
	payload := make([]byte, 1000)
	now := engT0
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		p := &Packet{Kind: KindData, From: 1, Data: &Data{ID: PacketID{1, 1, uint64(i + 1)}, FragCount: 1, Payload: payload}}
		now = now.Add(100 * time.Microsecond)
		e.Step(now, p)
		if i%10 == 0 {
			e.Tick(now)
		}
	}
}

// BenchmarkEngineRepairDecode measures decoding a repair that recovers one
// packet (R-1 payloads XORed out).
func BenchmarkEngineRepairDecode(b *testing.B) {
	cfg := DefaultConfig()
	payload := make([]byte, 1000)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	var seq uint64
	e, _ := NewEngine(cfg, 2, rand.New(rand.NewPCG(1, 2)))
	e.SetGroup(1, []NodeID{1, 2, 3})
	for b.Loop() {
		var ds []*Packet
		for range cfg.R {
			seq++
			ds = append(ds, &Packet{Kind: KindData, From: 1, Data: &Data{ID: PacketID{1, 1, seq}, FragCount: 1, Payload: payload}})
		}
		rp := engRepair(3, ds...)
		for _, d := range ds[1:] {
			e.Step(engT0, d)
		}
		if out := e.Step(engT0, rp); len(out.Deliveries) != 1 {
			b.Fatal("not recovered")
		}
	}
}
