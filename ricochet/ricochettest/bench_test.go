package ricochettest

import "testing"

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
