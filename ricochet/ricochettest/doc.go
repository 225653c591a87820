// Package ricochettest is test and simulation code for package ricochet,
// kept out of the production package: nothing in ricochet imports it.
//
//   - Sim (sim.go): a deterministic simulation of Ricochet engines, with no
//     goroutines, a virtual clock and a seeded fault model; Pause stalls a
//     node as a descheduled process would. A run is a function of its
//     seed and inputs, so a failure replays exactly.
//   - MemNetwork (memnet.go): an in-memory ricochet.Transport network with
//     the same faults, for tests of ricochet.Node with real goroutines.
//   - FaultConfig (faults.go): i.i.d. and Gilbert–Elliott loss, delay and
//     jitter, reordering, duplication, partitions, a deterministic drop
//     hook.
//   - SimulateLoad and TargetScenarios (load.go): a workload harness that
//     checks exactly-once delivery and reports recovery figures (LEC share,
//     latencies, overhead) for the tests and for cmd/tempest-bench.
//   - Percentile (percentile.go): the one percentile (nearest rank) of the
//     simulation reports and of cmd/tempest-bench.
//   - Seed and NodeIDs (testing.go): helpers for tests (RICOCHET_SEED
//     replays a failing seed).
package ricochettest
