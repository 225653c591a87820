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
	now := SimEpoch
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
			e.Step(SimEpoch, d)
		}
		if out := e.Step(SimEpoch, rp); len(out.Deliveries) != 1 {
			b.Fatal("not recovered")
		}
	}
}

// BenchmarkRecoveryTargets runs the target scenarios in the deterministic
// simulation and reports their figures (virtual-time latencies, so the
// figures do not depend on the machine; ns/op is the simulation's cost).
func BenchmarkRecoveryTargets(b *testing.B) {
	for _, sc := range TargetScenarios(1) {
		b.Run(sc.Name, func(b *testing.B) {
			var r, base LoadReport
			for b.Loop() {
				var err error
				if r, err = SimulateLoad(sc.Spec); err != nil {
					b.Fatal(err)
				}
				if sc.Baseline != nil {
					if base, err = SimulateLoad(*sc.Baseline); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(100*r.LECShare, "lec_%")
			b.ReportMetric(float64(r.Engine.Unrecoverable), "unrecovered")
			b.ReportMetric(r.RepairOverhead, "repairs/pkt")
			b.ReportMetric(float64(r.E2ELEC.P50)/1e6, "lec_p50_ms")
			b.ReportMetric(float64(r.E2ELEC.P99)/1e6, "lec_p99_ms")
			if sc.Baseline != nil {
				b.ReportMetric(float64(base.E2ENAK.P50)/1e6, "nakonly_p50_ms")
			}
		})
	}
}
