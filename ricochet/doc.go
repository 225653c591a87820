// Package ricochet is Ricochet: reliable, time-critical multicast with
// lateral error correction (LEC), after Balakrishnan, Birman et al.
//
// It moves opaque payloads to the members of groups; it orders nothing and
// knows nothing of services, collections or actors (the layer above orders
// and repairs what Ricochet declares unrecoverable).
//
// The package has four layers:
//
//   - Engine (engine.go, engine_recv.go, region.go): the protocol as a pure
//     state machine driven by Step/Tick/Send with an injected clock and a
//     seeded *rand.Rand. LEC repair bins per region with staggering and
//     timer flush, iterative recovery, NAK fallback with a bounded
//     retransmission buffer, fragmentation, and a clear Unrecoverable
//     outcome. Its doc comment states the invariants.
//   - Wire (wire.go): a versioned binary format for every Packet kind,
//     authenticated with HMAC-SHA256 (truncated to 16 bytes) under a shared
//     cluster key with key rotation; decoding failures are counted per reason
//     and never panic (fuzzed).
//   - Transport: UDPTransport (udp.go; IP multicast where a group has an
//     address, unicast fan-out otherwise, recvmmsg/sendmmsg batching).
//   - Node (node.go): a goroutine shell that owns an Engine and a Transport.
//
// Test and simulation code lives in package ricochettest: the in-memory
// transport (MemNetwork), the deterministic simulation (Sim) with seeded
// faults (i.i.d. and Gilbert–Elliott loss, delay, reordering, duplication,
// partitions, node pauses) and the load harness (SimulateLoad).
//
// Figures: `go run ./cmd/tempest-bench ricochet` measures LEC+NAK against a
// NAK-only baseline over UDP loopback in one run; `go test -bench
// BenchmarkRecoveryTargets ./ricochet/ricochettest` reproduces the issue's
// targets in the deterministic simulation.
package ricochet
