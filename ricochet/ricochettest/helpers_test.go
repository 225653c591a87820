package ricochettest

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tempestrt/tempest/ricochet"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testSeed(t testing.TB, seed uint64) uint64 {
	t.Helper()
	return Seed(t, seed)
}

// skipUnderRace skips a heavy single-threaded simulation test under -race.
func skipUnderRace(t testing.TB) {
	t.Helper()
	if raceEnabled {
		t.Skip("single-threaded simulation: nothing for the race detector; run without -race")
	}
}

func msec(n float64) time.Duration { return time.Duration(n * float64(time.Millisecond)) }

func newTestEngine(t testing.TB, cfg ricochet.Config, self ricochet.NodeID, seed uint64) *ricochet.Engine {
	t.Helper()
	e, err := ricochet.NewEngine(cfg, self, rand.New(rand.NewPCG(seed, uint64(self))))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// cluster is a Sim with recorders of deliveries and unrecoverable ranges.
type simCluster struct {
	t     testing.TB
	sim   *Sim
	ids   []ricochet.NodeID
	got   map[ricochet.NodeID][]simDelivery
	lost  map[ricochet.NodeID][]ricochet.PacketRange
	sends map[ricochet.PacketID][]byte // first fragment -> message
}

type simDelivery struct {
	ricochet.Delivery
	at time.Time
}

func simNewCluster(t testing.TB, seed uint64, n int, cfg ricochet.Config, faults FaultConfig) *simCluster {
	t.Helper()
	sim, err := NewSim(seed, faults)
	if err != nil {
		t.Fatal(err)
	}
	c := &simCluster{t: t, sim: sim, got: map[ricochet.NodeID][]simDelivery{}, lost: map[ricochet.NodeID][]ricochet.PacketRange{}, sends: map[ricochet.PacketID][]byte{}}
	for i := 1; i <= n; i++ {
		if _, err := sim.AddNode(ricochet.NodeID(i), cfg); err != nil {
			t.Fatal(err)
		}
		c.ids = append(c.ids, ricochet.NodeID(i))
	}
	sim.OnDeliver = func(node ricochet.NodeID, d ricochet.Delivery, at time.Time) {
		c.got[node] = append(c.got[node], simDelivery{d, at})
	}
	sim.OnUnrecoverable = func(node ricochet.NodeID, r ricochet.PacketRange, at time.Time) {
		c.lost[node] = append(c.lost[node], r)
	}
	return c
}

// send makes from send a message and returns the ID of its first fragment.
func (c *simCluster) send(from ricochet.NodeID, g ricochet.GroupID, payload []byte) ricochet.PacketID {
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
func (c *simCluster) sendN(from ricochet.NodeID, g ricochet.GroupID, n, size int, gap time.Duration) []ricochet.PacketID {
	var ids []ricochet.PacketID
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
func (c *simCluster) deliveries(node ricochet.NodeID, id ricochet.PacketID) []simDelivery {
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
func (c *simCluster) mustDeliverOnce(node ricochet.NodeID, id ricochet.PacketID) simDelivery {
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

func (c *simCluster) isLost(node ricochet.NodeID, id ricochet.PacketID) bool {
	for _, r := range c.lost[node] {
		if r.Contains(id) {
			return true
		}
	}
	return false
}

func (c *simCluster) stats(node ricochet.NodeID) ricochet.Stats { return c.sim.Engine(node).Stats() }

func simNodes(n int) []ricochet.NodeID { return NodeIDs(n) }

func simDropData(to ricochet.NodeID, ids ...ricochet.PacketID) func(from, dst ricochet.NodeID, p *ricochet.Packet) bool {
	return func(from, dst ricochet.NodeID, p *ricochet.Packet) bool {
		return dst == to && p.Kind == ricochet.KindData && !p.Data.Retransmit && slices.Contains(ids, p.Data.ID)
	}
}

func (r simDelivery) String() string {
	return fmt.Sprintf("%v via %v latency %v", r.ID, r.Via, r.Latency)
}
