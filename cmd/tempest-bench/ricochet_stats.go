package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/tempestrt/tempest/ricochet/ricochettest"
)

// latencySummary summarizes a set of durations, in milliseconds.
type latencySummary struct {
	Count int     `json:"count"`
	P50Ms float64 `json:"p50_ms"`
	P90Ms float64 `json:"p90_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
	AvgMs float64 `json:"avg_ms"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// summarizeLatency sorts ds in place and summarizes it.
func summarizeLatency(ds []time.Duration) latencySummary {
	if len(ds) == 0 {
		return latencySummary{}
	}
	slices.Sort(ds)
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return latencySummary{
		Count: len(ds),
		P50Ms: ms(ricochettest.Percentile(ds, 0.50)),
		P90Ms: ms(ricochettest.Percentile(ds, 0.90)),
		P99Ms: ms(ricochettest.Percentile(ds, 0.99)),
		MaxMs: ms(ds[len(ds)-1]),
		AvgMs: ms(sum / time.Duration(len(ds))),
	}
}

// modeResult holds the figures of one protocol mode (LEC+NAK or NAK-only).
//
// Accounting, per (receiver, data packet) pair: expected = packets sent ×
// receivers per packet (every node but the sender). A pair is LOST when the
// packet's original datagram never reached the receiver's node (dropped by
// the loss model, the kernel or the transport); lost = recovered_lec +
// recovered_nak + unrecovered. Losses therefore include every cause, not
// only the injected ones (reported apart as injected_data_drops). A pair
// that was not lost is delivered directly, or - when a repair or a
// retransmission overtook the direct copy - early via LEC/NAK (early_lec,
// early_nak; not losses, not in the recovery latencies); arrived_undelivered
// counts pairs that arrived but were never delivered (should be 0).
// expected = direct + early_lec + early_nak + arrived_undelivered + lost.
type modeResult struct {
	Mode         string `json:"mode"`
	Sent         uint64 `json:"sent"`
	Expected     uint64 `json:"expected"`
	Direct       uint64 `json:"direct"`
	Lost         uint64 `json:"lost"`
	RecoveredLEC uint64 `json:"recovered_lec"`
	RecoveredNAK uint64 `json:"recovered_nak"`
	Unrecovered  uint64 `json:"unrecovered"`
	// NakMisses: NAKed packets the senders could no longer serve (gone
	// from their retransmission buffers; answered by NakMiss), summed
	// over nodes. Each is a loss the receiver declares unrecoverable.
	NakMisses  uint64 `json:"nak_misses"`
	Duplicates uint64 `json:"duplicates"`
	EarlyLEC   uint64 `json:"early_lec"`
	EarlyNAK   uint64 `json:"early_nak"`
	// ArrivedUndelivered: original datagram reached the node, never delivered.
	ArrivedUndelivered uint64  `json:"arrived_undelivered"`
	LECShare           float64 `json:"lec_share"` // recovered_lec / lost

	RecoveryMsP50 float64        `json:"recovery_ms_p50"`
	RecoveryMsP99 float64        `json:"recovery_ms_p99"`
	RecoveryMsMax float64        `json:"recovery_ms_max"`
	Recovery      latencySummary `json:"recovery"`     // LEC and NAK recoveries together
	RecoveryLEC   latencySummary `json:"recovery_lec"` // LEC recoveries only
	RecoveryNAK   latencySummary `json:"recovery_nak"` // NAK recoveries only
	DirectLatency latencySummary `json:"direct_latency"`
	// RecoveryEngine is the engines' own measure (loss detected -> recovered),
	// which excludes the time before the loss was noticed; for reference.
	RecoveryEngine latencySummary `json:"recovery_engine"`

	InjectedDataDrops uint64 `json:"injected_data_drops"`    // original data packets dropped by the loss model
	InjectedDrops     uint64 `json:"injected_drops"`         // all packets (any kind) dropped by the loss model
	TransportDrops    uint64 `json:"transport_drops"`        // dropped by the UDP transports (queue overflow, bad datagrams)
	UDPSent           uint64 `json:"udp_datagrams_sent"`     // datagrams the transports handed to the kernel
	UDPReceived       uint64 `json:"udp_datagrams_received"` // datagrams the transports read (sent - received = lost in the kernel)
	UDPSendErrors     uint64 `json:"udp_send_errors"`

	DataBytes        uint64  `json:"data_bytes"`              // original data datagrams, per intended receiver
	RepairBytes      uint64  `json:"repair_bytes"`            // repair datagrams sent
	RepairPackets    uint64  `json:"repair_packets"`          // repair datagrams sent
	NakBytes         uint64  `json:"nak_bytes"`               // NAK + NAK-miss + retransmitted data + session datagrams
	RepairOverhead   float64 `json:"repair_overhead"`         // repair_bytes / data_bytes
	RepairPerData    float64 `json:"repair_packets_per_data"` // repair_packets / expected receptions (compare with c/r)
	NakOverhead      float64 `json:"nak_overhead"`            // nak_bytes / data_bytes
	ExpectedOverhead float64 `json:"expected_overhead"`       // c/r (0 without LEC)

	SendSeconds      float64 `json:"send_s"`     // first to last send
	DurationSeconds  float64 `json:"duration_s"` // first send to last delivery
	ThroughputMBs    float64 `json:"throughput_mb_s"`
	ThroughputPkts   float64 `json:"throughput_pkt_s"`
	OfferedPktPerSec float64 `json:"offered_pkt_s"`
	DrainTimedOut    bool    `json:"drain_timed_out"`
	Pauses           int     `json:"pauses"` // --sim: node pauses injected

	Engine engineSummary `json:"engine"` // the engines' own counters, summed over nodes
}

// engineSummary is a subset of ricochet.Stats summed over all nodes, for
// diagnosing a run (e.g. repairs that arrive useless or too late).
type engineSummary struct {
	LossesDetected  uint64 `json:"losses_detected"`
	RecoveredLEC    uint64 `json:"recovered_lec"`
	RecoveredNAK    uint64 `json:"recovered_nak"`
	Unrecoverable   uint64 `json:"unrecoverable"`
	NaksSent        uint64 `json:"naks_sent"`
	NakSeqsSent     uint64 `json:"nak_seqs_sent"`
	Retransmissions uint64 `json:"retransmissions"`
	NakMisses       uint64 `json:"nak_misses"`        // NAKed seqs senders no longer had
	NakMissReceived uint64 `json:"nak_miss_received"` // seqs receivers were told are gone
	RepairsSent     uint64 `json:"repairs_sent"`
	RepairsReceived uint64 `json:"repairs_received"`
	RepairsUseless  uint64 `json:"repairs_useless"`
	RepairsUnusable uint64 `json:"repairs_unusable"`
	RepairsHeld     uint64 `json:"repairs_held"`
	RepairsExpired  uint64 `json:"repairs_expired"`
	RepairsFlushed  uint64 `json:"repairs_flushed"`
	Duplicates      uint64 `json:"duplicates"`  // data packets received again after they were resolved
	LateDirect      uint64 `json:"late_direct"` // missing packets that then arrived directly
}

// benchReport is the whole output of `tempest-bench ricochet`.
type benchReport struct {
	Config          benchConfig      `json:"config"`
	EngineConfig    engineCfgSummary `json:"engine_config"`
	LEC             modeResult       `json:"lec"`
	NakOnly         modeResult       `json:"nak_only"`
	P50Ratio        float64          `json:"lec_p50_over_nak_only_p50"`
	Method          string           `json:"method"`
	MulticastSocket bool             `json:"ip_multicast"`
}

// engineCfgSummary is the engine configuration used (LEC mode; NAK-only
// differs by DisableLEC and its first-NAK wait, NakOnlyDelayMs).
type engineCfgSummary struct {
	R               int     `json:"r"`
	C               int     `json:"c"`
	BinsPerRegion   int     `json:"bins_per_region"`
	FlushIntervalMs float64 `json:"flush_interval_ms"`
	// NakTimeoutMs: LEC+NAK mode's wait before the first NAK (time for LEC).
	NakTimeoutMs float64 `json:"nak_timeout_ms"`
	// NakOnlyDelayMs: NAK-only mode's wait before the first NAK (reorder window).
	NakOnlyDelayMs     float64 `json:"nak_only_delay_ms"`
	NakRetryIntervalMs float64 `json:"nak_retry_interval_ms"`
	SessionIntervalMs  float64 `json:"session_interval_ms"`
	TickIntervalMs     float64 `json:"tick_interval_ms"`
	MaxPayload         int     `json:"max_payload"`
}

// writeJSON prints v as indented JSON: what every --json prints.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func writeText(w io.Writer, r *benchReport) {
	c := r.Config
	tr := "unicast fan-out"
	if r.MulticastSocket {
		tr = "IP multicast on lo"
	}
	where := fmt.Sprintf("over UDP loopback (%s)", tr)
	if c.Sim {
		where = "in the deterministic simulation (virtual time, one-way 100us + up to 50us)"
		if c.SimPause > 0 {
			where += fmt.Sprintf(", a random node paused %v every %v", c.SimPause, c.SimPauseEvery)
		}
	}
	fmt.Fprintf(w, "Ricochet %s: %d nodes, %d groups, %d packets of %d B at %d pkt/s total\n",
		where, c.Nodes, c.Groups, c.Packets, c.Payload, c.Rate)
	lossDesc := fmt.Sprintf("i.i.d. %.2f%%", 100*c.Loss)
	if c.Burst > 1 {
		lossDesc = fmt.Sprintf("Gilbert-Elliott %.2f%%, mean burst %.1f", 100*c.Loss, c.Burst)
	}
	e := r.EngineConfig
	fmt.Fprintf(w, "loss %s at receivers (all packet kinds), seed %d\n", lossDesc, c.Seed)
	fmt.Fprintf(w, "engine: r=%d c=%d, %d bins/region, flush %.1f ms, first NAK after %.1f ms (LEC+NAK) / %.1f ms (NAK-only), retry %.1f ms, session %.1f ms, tick %.1f ms\n",
		e.R, e.C, e.BinsPerRegion, e.FlushIntervalMs, e.NakTimeoutMs, e.NakOnlyDelayMs, e.NakRetryIntervalMs, e.SessionIntervalMs, e.TickIntervalMs)
	fmt.Fprintf(w, "recovery latency = delivery time - send time (timestamp in payload, same host clock)\n\n")
	fmt.Fprintf(w, "%-28s %14s %14s\n", "", "LEC+NAK", "NAK-only")
	row := func(name string, f func(m *modeResult) string) {
		fmt.Fprintf(w, "%-28s %14s %14s\n", name, f(&r.LEC), f(&r.NakOnly))
	}
	u := func(v uint64) string { return fmt.Sprint(v) }
	f2 := func(v float64) string { return fmt.Sprintf("%.2f", v) }
	f3 := func(v float64) string { return fmt.Sprintf("%.3f", v) }
	row("packets sent", func(m *modeResult) string { return u(m.Sent) })
	row("receptions expected", func(m *modeResult) string { return u(m.Expected) })
	row("losses", func(m *modeResult) string { return u(m.Lost) })
	row("  injected data drops", func(m *modeResult) string { return u(m.InjectedDataDrops) })
	row("recovered by LEC", func(m *modeResult) string { return u(m.RecoveredLEC) })
	row("recovered by NAK", func(m *modeResult) string { return u(m.RecoveredNAK) })
	row("unrecovered", func(m *modeResult) string { return u(m.Unrecovered) })
	row("NAK misses (sender lacked)", func(m *modeResult) string { return u(m.NakMisses) })
	row("not lost, LEC beat direct", func(m *modeResult) string { return u(m.EarlyLEC) })
	row("not lost, NAK beat direct", func(m *modeResult) string { return u(m.EarlyNAK) })
	row("arrived, never delivered", func(m *modeResult) string { return u(m.ArrivedUndelivered) })
	row("LEC share of losses %", func(m *modeResult) string { return f2(100 * m.LECShare) })
	row("recovery p50 ms", func(m *modeResult) string { return f2(m.RecoveryMsP50) })
	row("recovery p99 ms", func(m *modeResult) string { return f2(m.RecoveryMsP99) })
	row("recovery max ms", func(m *modeResult) string { return f2(m.RecoveryMsMax) })
	row("  LEC recovery p50 ms", func(m *modeResult) string { return f2(m.RecoveryLEC.P50Ms) })
	row("  NAK recovery p50 ms", func(m *modeResult) string { return f2(m.RecoveryNAK.P50Ms) })
	row("  engine-measured p50 ms", func(m *modeResult) string { return f2(m.RecoveryEngine.P50Ms) })
	row("  engine-measured p99 ms", func(m *modeResult) string { return f2(m.RecoveryEngine.P99Ms) })
	row("direct one-way p50 ms", func(m *modeResult) string { return f3(m.DirectLatency.P50Ms) })
	row("repair overhead (bytes)", func(m *modeResult) string { return f3(m.RepairOverhead) })
	row("repair packets per data", func(m *modeResult) string { return f3(m.RepairPerData) })
	row("  expected c/r", func(m *modeResult) string { return f3(m.ExpectedOverhead) })
	row("NAK+retransmit overhead", func(m *modeResult) string { return f3(m.NakOverhead) })
	row("delivered MB/s (payload)", func(m *modeResult) string { return f2(m.ThroughputMBs) })
	row("delivered packets/s", func(m *modeResult) string { return fmt.Sprintf("%.0f", m.ThroughputPkts) })
	row("injected drops (all kinds)", func(m *modeResult) string { return u(m.InjectedDrops) })
	row("transport drops", func(m *modeResult) string { return u(m.TransportDrops) })
	row("UDP datagrams sent", func(m *modeResult) string { return u(m.UDPSent) })
	row("UDP datagrams received", func(m *modeResult) string { return u(m.UDPReceived) })
	row("UDP send errors", func(m *modeResult) string { return u(m.UDPSendErrors) })
	row("engine: repairs sent", func(m *modeResult) string { return u(m.Engine.RepairsSent) })
	row("engine: repairs flushed", func(m *modeResult) string { return u(m.Engine.RepairsFlushed) })
	row("engine: repairs useless", func(m *modeResult) string { return u(m.Engine.RepairsUseless) })
	row("engine: repairs held", func(m *modeResult) string { return u(m.Engine.RepairsHeld) })
	row("engine: repairs expired", func(m *modeResult) string { return u(m.Engine.RepairsExpired) })
	row("engine: unrecoverable", func(m *modeResult) string { return u(m.Engine.Unrecoverable) })
	row("engine: late direct", func(m *modeResult) string { return u(m.Engine.LateDirect) })
	row("engine: NAKs sent", func(m *modeResult) string { return u(m.Engine.NaksSent) })
	row("engine: retransmissions", func(m *modeResult) string { return u(m.Engine.Retransmissions) })
	row("duplicates", func(m *modeResult) string { return u(m.Duplicates) })
	row("drain timed out", func(m *modeResult) string { return fmt.Sprint(m.DrainTimedOut) })
	fmt.Fprintf(w, "\nLEC p50 / NAK-only p50 = %.3f\n", r.P50Ratio)
}
