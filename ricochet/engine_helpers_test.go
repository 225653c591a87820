package ricochet

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"
)

// testSeed returns seed, or RICOCHET_SEED when set (to replay a failure),
// and makes every failure of t print it.
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

var engT0 = SimEpoch

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

// cluster is a Sim with recorders of deliveries and unrecoverable ranges.
type simCluster struct {
	t     testing.TB
	sim   *Sim
	ids   []NodeID
	got   map[NodeID][]simDelivery
	lost  map[NodeID][]PacketRange
	sends map[PacketID][]byte // first fragment -> message
}

type simDelivery struct {
	Delivery
	at time.Time
}

func simNewCluster(t testing.TB, seed uint64, n int, cfg Config, faults FaultConfig) *simCluster {
	t.Helper()
	sim, err := NewSim(seed, faults)
	if err != nil {
		t.Fatal(err)
	}
	c := &simCluster{t: t, sim: sim, got: map[NodeID][]simDelivery{}, lost: map[NodeID][]PacketRange{}, sends: map[PacketID][]byte{}}
	for i := 1; i <= n; i++ {
		if _, err := sim.AddNode(NodeID(i), cfg); err != nil {
			t.Fatal(err)
		}
		c.ids = append(c.ids, NodeID(i))
	}
	sim.OnDeliver = func(node NodeID, d Delivery, at time.Time) { c.got[node] = append(c.got[node], simDelivery{d, at}) }
	sim.OnUnrecoverable = func(node NodeID, r PacketRange, at time.Time) { c.lost[node] = append(c.lost[node], r) }
	return c
}

// send makes from send a message and returns the ID of its first fragment.
func (c *simCluster) send(from NodeID, g GroupID, payload []byte) PacketID {
	c.t.Helper()
	out, err := c.sim.Send(from, g, payload)
	if err != nil {
		c.t.Fatal(err)
	}
	if len(out.Multicasts) == 0 {
		c.t.Fatalf("send produced no multicast")
	}
	id := out.Multicasts[0].Packet.Data.ID
	c.sends[id] = slices.Clone(payload)
	return id
}

// sendN sends n messages of size bytes from `from` to g, every gap.
func (c *simCluster) sendN(from NodeID, g GroupID, n, size int, gap time.Duration) []PacketID {
	var ids []PacketID
	for i := range n {
		p := make([]byte, size)
		for j := range p {
			p[j] = byte(i*17 + j + int(from))
		}
		ids = append(ids, c.send(from, g, p))
		c.sim.Run(gap)
	}
	return ids
}

// delivery returns node's deliveries of message id.
func (c *simCluster) deliveries(node NodeID, id PacketID) []simDelivery {
	var out []simDelivery
	for _, d := range c.got[node] {
		if d.ID == id {
			out = append(out, d)
		}
	}
	return out
}

// mustDeliverOnce checks that node delivered message id exactly once with
// the payload sent, and returns that delivery.
func (c *simCluster) mustDeliverOnce(node NodeID, id PacketID) simDelivery {
	c.t.Helper()
	ds := c.deliveries(node, id)
	if len(ds) != 1 {
		c.t.Fatalf("node %d delivered %v %d times, want 1", node, id, len(ds))
	}
	if want, ok := c.sends[id]; ok && string(want) != string(ds[0].Payload) {
		c.t.Fatalf("node %d delivered %v with a wrong payload", node, id)
	}
	return ds[0]
}

func (c *simCluster) isLost(node NodeID, id PacketID) bool {
	for _, r := range c.lost[node] {
		if r.Contains(id) {
			return true
		}
	}
	return false
}

func (c *simCluster) stats(node NodeID) Stats { return c.sim.Engine(node).Stats() }

func simNodes(n int) []NodeID {
	ids := make([]NodeID, n)
	for i := range ids {
		ids[i] = NodeID(i + 1)
	}
	return ids
}

func simDropData(to NodeID, ids ...PacketID) func(from, dst NodeID, p *Packet) bool {
	return func(from, dst NodeID, p *Packet) bool {
		return dst == to && p.Kind == KindData && !p.Data.Retransmit && slices.Contains(ids, p.Data.ID)
	}
}

func (r simDelivery) String() string {
	return fmt.Sprintf("%v via %v latency %v", r.ID, r.Via, r.Latency)
}
