package ricochettest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/tempestrt/tempest/ricochet"
)

// LoadSpec describes a simulated workload for SimulateLoad: nodes in
// groups, senders multicasting messages at a total rate, a faulty network.
type LoadSpec struct {
	// Seed drives everything random (faults, group placement, send times,
	// payloads, engines). Default 1.
	Seed uint64
	// Nodes is the number of nodes (IDs 1..Nodes). Default 6.
	Nodes int
	// Groups is the number of groups (IDs 1..Groups). Default 1.
	Groups int
	// GroupSize is the number of members per group; 0 means every node.
	// Smaller groups are random subsets (overlapping groups with several
	// regions per node).
	GroupSize int
	// SendersPerGroup is how many members of each group send; group i's
	// senders are its members rotated by i so senders spread over nodes.
	// Default 1.
	SendersPerGroup int
	// Rate is the total number of messages per second over all groups
	// (Poisson arrivals, each to a stream chosen round-robin). Default 1000.
	Rate float64
	// Messages is the number of messages to send. Default 5000.
	Messages int
	// PayloadSize is the message size in bytes. Default 1000.
	PayloadSize int
	// Drain is the quiet virtual time after the last send during which
	// recoveries finish. Default 3 s.
	Drain time.Duration
	// Faults is the network model.
	Faults FaultConfig
	// Config is every node's engine configuration; the zero value means DefaultConfig().
	Config ricochet.Config
}

func (s *LoadSpec) defaults() {
	if s.Seed == 0 {
		s.Seed = 1
	}
	if s.Nodes == 0 {
		s.Nodes = 6
	}
	if s.Groups == 0 {
		s.Groups = 1
	}
	if s.GroupSize == 0 || s.GroupSize > s.Nodes {
		s.GroupSize = s.Nodes
	}
	if s.SendersPerGroup == 0 {
		s.SendersPerGroup = 1
	}
	s.SendersPerGroup = min(s.SendersPerGroup, s.GroupSize)
	if s.Rate == 0 {
		s.Rate = 1000
	}
	if s.Messages == 0 {
		s.Messages = 5000
	}
	if s.PayloadSize == 0 {
		s.PayloadSize = 1000
	}
	if s.Drain == 0 {
		s.Drain = 3 * time.Second
	}
	if s.Config.R == 0 {
		s.Config = ricochet.DefaultConfig()
	}
}

// LatencyStats summarizes a set of latencies.
type LatencyStats struct {
	N                  int
	Mean               time.Duration
	P50, P90, P99, Max time.Duration
}

func latencyStats(ds []time.Duration) LatencyStats {
	if len(ds) == 0 {
		return LatencyStats{}
	}
	slices.Sort(ds)
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return LatencyStats{N: len(ds), Mean: sum / time.Duration(len(ds)),
		P50: Percentile(ds, 0.50), P90: Percentile(ds, 0.90), P99: Percentile(ds, 0.99), Max: ds[len(ds)-1]}
}

func (l LatencyStats) String() string {
	if l.N == 0 {
		return "n=0"
	}
	return fmt.Sprintf("n=%d mean=%v p50=%v p90=%v p99=%v max=%v", l.N, l.Mean, l.P50, l.P90, l.P99, l.Max)
}

// LoadReport is the outcome of SimulateLoad. The exactly-once checks
// (DuplicateDeliveries, Vanished, DeliveredAndLost, Corrupt) must be 0 for a
// correct protocol.
type LoadReport struct {
	Spec                LoadSpec
	Messages            int            // messages sent
	Expected            uint64         // (message, receiver) pairs that should be delivered
	Delivered           uint64         // pairs delivered exactly once
	DuplicateDeliveries uint64         // extra deliveries of a pair
	ReportedLost        uint64         // pairs not delivered and reported unrecoverable
	Vanished            uint64         // pairs neither delivered nor reported
	DeliveredAndLost    uint64         // pairs both delivered and reported
	Corrupt             uint64         // deliveries whose payload differs from what was sent
	DataLosses          uint64         // original data copies dropped by the network
	Engine              ricochet.Stats // summed over all nodes
	Faults              FaultStats

	// LECShare is the share of losses recovered by LEC:
	// RecoveredLEC / (RecoveredLEC + RecoveredNAK + Unrecoverable). (Packets
	// that were late rather than lost, LateDirect, are not losses.)
	LECShare float64
	// RepairOverhead is repair packets sent per data packet received
	// directly (expected about C/R).
	RepairOverhead float64
	// Recovery latency as the engine measures it (Delivery.Latency: from
	// detection of the loss to recovery), by path.
	DetectLEC, DetectNAK LatencyStats
	// Delivery latency (delivery time - send time), by path: what the
	// application sees, including the time before the loss was noticed.
	E2EDirect, E2ELEC, E2ENAK LatencyStats
	// Wire traffic (WireSize bytes) by kind, summed over nodes.
	DataPackets, DataBytes, RepairPackets, RepairBytes, ControlPackets, ControlBytes uint64
}

func (r LoadReport) String() string {
	var b bytes.Buffer
	s := r.Spec
	fmt.Fprintf(&b, "seed=%d nodes=%d groups=%d groupSize=%d senders/group=%d rate=%.0f/s msgs=%d payload=%dB R=%d C=%d bins=%d lec=%v\n",
		s.Seed, s.Nodes, s.Groups, s.GroupSize, s.SendersPerGroup, s.Rate, s.Messages, s.PayloadSize, s.Config.R, s.Config.C, s.Config.BinsPerRegion, !s.Config.DisableLEC)
	fmt.Fprintf(&b, "  expected=%d delivered=%d lost=%d vanished=%d dup=%d deliveredAndLost=%d corrupt=%d\n",
		r.Expected, r.Delivered, r.ReportedLost, r.Vanished, r.DuplicateDeliveries, r.DeliveredAndLost, r.Corrupt)
	e := r.Engine
	fmt.Fprintf(&b, "  network data losses=%d detected=%d lec=%d nak=%d late=%d unrecoverable=%d LEC share=%.2f%%\n",
		r.DataLosses, e.LossesDetected, e.RecoveredLEC, e.RecoveredNAK, e.LateDirect, e.Unrecoverable, 100*r.LECShare)
	fmt.Fprintf(&b, "  repairs sent=%d (overhead %.3f per data packet, C/R=%.3f) flushed=%d useless=%d held=%d naks=%d retrans=%d sessions=%d\n",
		e.RepairsSent, r.RepairOverhead, s.Config.RepairOverhead(), e.RepairsFlushed, e.RepairsUseless, e.RepairsHeld, e.NaksSent, e.Retransmissions, e.SessionsSent)
	fmt.Fprintf(&b, "  detect->recovery LEC: %v\n  detect->recovery NAK: %v\n", r.DetectLEC, r.DetectNAK)
	fmt.Fprintf(&b, "  send->deliver direct: %v\n  send->deliver LEC:    %v\n  send->deliver NAK:    %v\n", r.E2EDirect, r.E2ELEC, r.E2ENAK)
	fmt.Fprintf(&b, "  wire: data %d pkts %d B, repair %d pkts %d B (%.1f%% of data bytes), control %d pkts %d B",
		r.DataPackets, r.DataBytes, r.RepairPackets, r.RepairBytes, 100*float64(r.RepairBytes)/math.Max(1, float64(r.DataBytes)), r.ControlPackets, r.ControlBytes)
	return b.String()
}

// loadMsg is one message of the workload.
type loadMsg struct {
	group  ricochet.GroupID
	sender ricochet.NodeID
	first  uint64 // seq of its first fragment
	last   uint64
	sentAt time.Time
}

// loadPayload is message k's payload: its index, then bytes derived from
// (seed, k), so a receiver's copy can be checked without storing it.
func loadPayload(seed uint64, k, size int) []byte {
	p := make([]byte, max(size, 8))
	binary.BigEndian.PutUint64(p, uint64(k))
	r := rand.New(rand.NewPCG(seed, uint64(k)))
	for i := 8; i < len(p); i++ {
		p[i] = byte(r.Uint32())
	}
	return p
}

// SimulateLoad runs spec in a deterministic Sim and checks that every
// message reached every receiver of its group exactly once or was reported
// unrecoverable. It is what the protocol tests assert on and what the
// benchmark command prints.
func SimulateLoad(spec LoadSpec) (LoadReport, error) {
	spec.defaults()
	rep := LoadReport{Spec: spec}
	sim, err := NewSim(spec.Seed, spec.Faults)
	if err != nil {
		return rep, err
	}
	rng := rand.New(rand.NewPCG(spec.Seed, 0x10ad))
	ids := make([]ricochet.NodeID, spec.Nodes)
	for i := range ids {
		ids[i] = ricochet.NodeID(i + 1)
		if _, err := sim.AddNode(ids[i], spec.Config); err != nil {
			return rep, err
		}
	}
	type streamRef struct {
		g ricochet.GroupID
		s ricochet.NodeID
	}
	var streams []streamRef
	members := make(map[ricochet.GroupID][]ricochet.NodeID)
	for gi := range spec.Groups {
		g := ricochet.GroupID(gi + 1)
		ms := slices.Clone(ids)
		if spec.GroupSize < spec.Nodes {
			rng.Shuffle(len(ms), func(i, j int) { ms[i], ms[j] = ms[j], ms[i] })
			ms = ms[:spec.GroupSize]
			slices.Sort(ms)
		}
		members[g] = ms
		sim.SetGroup(g, ms)
		for k := range spec.SendersPerGroup {
			streams = append(streams, streamRef{g, ms[(gi+k)%len(ms)]})
		}
	}

	msgs := make([]loadMsg, 0, spec.Messages)
	byFirst := make(map[ricochet.PacketID]int) // first fragment -> message index
	type pair struct {
		k    int
		node ricochet.NodeID
	}
	delivered := make(map[pair]int)
	lostRanges := make(map[ricochet.NodeID][]ricochet.PacketRange)
	var e2eD, e2eL, e2eN, detL, detN []time.Duration

	sim.OnDeliver = func(node ricochet.NodeID, d ricochet.Delivery, at time.Time) {
		k, ok := byFirst[d.ID]
		if !ok {
			rep.Corrupt++
			return
		}
		delivered[pair{k, node}]++
		if !bytes.Equal(d.Payload, loadPayload(spec.Seed, k, spec.PayloadSize)) {
			rep.Corrupt++
		}
		lat := at.Sub(msgs[k].sentAt)
		switch d.Via {
		case ricochet.ViaDirect:
			e2eD = append(e2eD, lat)
		case ricochet.ViaLEC:
			e2eL = append(e2eL, lat)
			detL = append(detL, d.Latency)
		case ricochet.ViaNAK:
			e2eN = append(e2eN, lat)
			detN = append(detN, d.Latency)
		}
	}
	sim.OnUnrecoverable = func(node ricochet.NodeID, r ricochet.PacketRange, at time.Time) {
		lostRanges[node] = append(lostRanges[node], r)
	}

	var sendErr error
	var sendNext func(k int)
	sendNext = func(k int) {
		if k >= spec.Messages {
			return
		}
		st := streams[k%len(streams)]
		out, err := sim.Send(st.s, st.g, loadPayload(spec.Seed, k, spec.PayloadSize))
		if err != nil {
			sendErr = fmt.Errorf("message %d: %w", k, err)
			return
		}
		m := loadMsg{group: st.g, sender: st.s, sentAt: sim.Now()}
		for i, mc := range out.Multicasts {
			if i == 0 {
				m.first = mc.Packet.Data.ID.Seq
			}
			m.last = mc.Packet.Data.ID.Seq
		}
		msgs = append(msgs, m)
		byFirst[ricochet.PacketID{Group: m.group, Sender: m.sender, Seq: m.first}] = k
		gap := time.Duration(rng.ExpFloat64() / spec.Rate * float64(time.Second))
		sim.At(sim.Now().Add(gap), func() { sendNext(k + 1) })
	}
	sim.At(sim.Now(), func() { sendNext(0) })
	for len(msgs) < spec.Messages && sendErr == nil {
		sim.Run(100 * time.Millisecond)
	}
	if sendErr != nil {
		return rep, sendErr
	}
	sim.Run(spec.Drain)

	rep.Messages = len(msgs)
	for k, m := range msgs {
		for _, n := range members[m.group] {
			if n == m.sender {
				continue
			}
			rep.Expected++
			got := delivered[pair{k, n}]
			lost := false
			for _, r := range lostRanges[n] {
				if r.Group == m.group && r.Sender == m.sender && r.First <= m.last && r.Last >= m.first {
					lost = true
					break
				}
			}
			switch {
			case got == 1 && !lost:
				rep.Delivered++
			case got > 1:
				rep.DuplicateDeliveries += uint64(got - 1)
			case got == 0 && lost:
				rep.ReportedLost++
			case got == 0:
				rep.Vanished++
			}
			if got > 0 && lost {
				rep.DeliveredAndLost++
			}
		}
	}
	for _, id := range sim.Nodes() {
		rep.Engine = SumStats(rep.Engine, sim.Engine(id).Stats())
	}
	rep.Faults = sim.FaultStats()
	rep.DataLosses = rep.Faults.DroppedData
	e := rep.Engine
	if resolved := e.RecoveredLEC + e.RecoveredNAK + e.Unrecoverable; resolved > 0 {
		rep.LECShare = float64(e.RecoveredLEC) / float64(resolved)
	}
	if e.DataReceived > 0 {
		rep.RepairOverhead = float64(e.RepairsSent) / float64(e.DataReceived)
	}
	rep.DetectLEC, rep.DetectNAK = latencyStats(detL), latencyStats(detN)
	rep.E2EDirect, rep.E2ELEC, rep.E2ENAK = latencyStats(e2eD), latencyStats(e2eL), latencyStats(e2eN)
	rep.DataPackets, rep.DataBytes = sim.Traffic(ricochet.KindData)
	rep.RepairPackets, rep.RepairBytes = sim.Traffic(ricochet.KindRepair)
	for _, k := range []ricochet.Kind{ricochet.KindNak, ricochet.KindSession, ricochet.KindNakMiss} {
		p, b := sim.Traffic(k)
		rep.ControlPackets += p
		rep.ControlBytes += b
	}
	return rep, nil
}

// SumStats sums two ricochet.Stats field by field (gauges too).
func SumStats(a, b ricochet.Stats) ricochet.Stats {
	return ricochet.Stats{
		MessagesSent: a.MessagesSent + b.MessagesSent, DataSent: a.DataSent + b.DataSent,
		DataBytesSent: a.DataBytesSent + b.DataBytesSent, Retransmissions: a.Retransmissions + b.Retransmissions,
		NakMissSent: a.NakMissSent + b.NakMissSent, NakMisses: a.NakMisses + b.NakMisses,
		RetransmitHeld: a.RetransmitHeld + b.RetransmitHeld, SessionsSent: a.SessionsSent + b.SessionsSent,
		DataReceived: a.DataReceived + b.DataReceived, DataBytesReceived: a.DataBytesReceived + b.DataBytesReceived,
		Duplicates: a.Duplicates + b.Duplicates, MessagesDelivered: a.MessagesDelivered + b.MessagesDelivered,
		LossesDetected: a.LossesDetected + b.LossesDetected, RecoveredLEC: a.RecoveredLEC + b.RecoveredLEC,
		RecoveredNAK: a.RecoveredNAK + b.RecoveredNAK, LateDirect: a.LateDirect + b.LateDirect,
		Unrecoverable: a.Unrecoverable + b.Unrecoverable, NakMissReceived: a.NakMissReceived + b.NakMissReceived,
		NaksSent: a.NaksSent + b.NaksSent, NakSeqsSent: a.NakSeqsSent + b.NakSeqsSent,
		SessionsReceived: a.SessionsReceived + b.SessionsReceived, JoinSkipped: a.JoinSkipped + b.JoinSkipped,
		ReassemblyDropped: a.ReassemblyDropped + b.ReassemblyDropped, DroppedNotMember: a.DroppedNotMember + b.DroppedNotMember,
		Malformed: a.Malformed + b.Malformed, RepairsSent: a.RepairsSent + b.RepairsSent,
		RepairBytesSent: a.RepairBytesSent + b.RepairBytesSent, RepairsReceived: a.RepairsReceived + b.RepairsReceived,
		RepairBytesRecv: a.RepairBytesRecv + b.RepairBytesRecv, RepairsUseless: a.RepairsUseless + b.RepairsUseless,
		RepairsUnusable: a.RepairsUnusable + b.RepairsUnusable, RepairsHeld: a.RepairsHeld + b.RepairsHeld,
		RepairsExpired: a.RepairsExpired + b.RepairsExpired, RepairsFlushed: a.RepairsFlushed + b.RepairsFlushed,
		PendingMissing: a.PendingMissing + b.PendingMissing, PendingHeldRepairs: a.PendingHeldRepairs + b.PendingHeldRepairs,
	}
}

// TargetScenario is a workload with the recovery figures it must reach.
type TargetScenario struct {
	Name string
	Spec LoadSpec
	// Baseline, when set, is the same workload with LEC off (NAK only):
	// LEC's p50 recovery latency must be at most 1/5 of the baseline's.
	Baseline *LoadSpec
	// MinLECShare is the least share of losses LEC must recover.
	MinLECShare float64
	// MaxOverheadFactor bounds repair packets per data packet received, as
	// a multiple of C/R.
	MaxOverheadFactor float64
	// Slow marks scenarios skipped by go test -short.
	Slow bool
}

// TargetScenarios returns the workloads of the protocol's targets, for the
// tests (which assert them) and the benchmark command (which prints them):
// one group of 6 nodes (1 sender, 5 receivers) at 1% and 5% i.i.d. loss,
// and 32 groups over the same 6 nodes at the same total rate, against a
// NAK-only baseline whose first NAK waits 1 ms. LAN-like network: 100 µs
// one-way delay, 50 µs jitter; 5000 messages/s of 1000 bytes in total;
// default Config.
func TargetScenarios(seed uint64) []TargetScenario {
	net := func(loss float64) FaultConfig {
		return FaultConfig{Loss: loss, Delay: 100 * time.Microsecond, Jitter: 50 * time.Microsecond}
	}
	spec := func(groups int, loss float64) LoadSpec {
		return LoadSpec{Seed: seed, Nodes: 6, Groups: groups, SendersPerGroup: 1, Rate: 5000, Messages: 20000,
			PayloadSize: 1000, Drain: 2 * time.Second, Faults: net(loss), Config: ricochet.DefaultConfig()}
	}
	multi := spec(32, 0.01)
	nakOnly := multi
	nakOnly.Config.DisableLEC = true
	// A fair baseline: no LEC repair can come, so the first NAK waits only
	// a reorder window (as tempest-bench ricochet --nak-only-delay), not
	// the NakTimeout left for LEC.
	nakOnly.Config.NakTimeout = time.Millisecond
	return []TargetScenario{
		{Name: "1group-5receivers-1%loss", Spec: spec(1, 0.01), MinLECShare: 0.99, MaxOverheadFactor: 1.1},
		{Name: "1group-5receivers-5%loss", Spec: spec(1, 0.05), MinLECShare: 0.95, MaxOverheadFactor: 1.1},
		// With 6 senders in one region, a repair target is on average a
		// receiver of 5/6 of a bin's packets, so k is scaled up (see
		// emitRepair): overhead about 1.25 C/R.
		{Name: "32groups-6nodes-1%loss", Spec: multi, Baseline: &nakOnly, MinLECShare: 0.97, MaxOverheadFactor: 1.35, Slow: true},
	}
}
