package ricochet

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// nodeCluster is n Nodes on a MemNetwork recording their deliveries.
type nodeCluster struct {
	t     *testing.T
	net   *MemNetwork
	nodes []*Node
	mu    sync.Mutex
	got   map[NodeID]map[PacketID]int
	via   map[Via]int
	lost  map[NodeID][]PacketRange
}

func nodeNewCluster(t *testing.T, seed uint64, n int, cfg Config, faults FaultConfig) *nodeCluster {
	t.Helper()
	net, err := NewMemNetwork(seed, faults)
	if err != nil {
		t.Fatal(err)
	}
	c := &nodeCluster{t: t, net: net, got: map[NodeID]map[PacketID]int{}, via: map[Via]int{}, lost: map[NodeID][]PacketRange{}}
	for i := 1; i <= n; i++ {
		id := NodeID(i)
		tr, err := net.Transport(id)
		if err != nil {
			t.Fatal(err)
		}
		c.got[id] = map[PacketID]int{}
		node, err := NewNode(cfg, id, tr, NodeOptions{
			Seed: seed,
			OnDeliver: func(d Delivery) {
				c.mu.Lock()
				c.got[id][d.ID]++
				c.via[d.Via]++
				c.mu.Unlock()
			},
			OnUnrecoverable: func(r PacketRange) {
				c.mu.Lock()
				c.lost[id] = append(c.lost[id], r)
				c.mu.Unlock()
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, node)
	}
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			nd.Close()
		}
		net.Close()
	})
	return c
}

func (c *nodeCluster) setGroup(g GroupID, members []NodeID) {
	for _, nd := range c.nodes {
		nd.SetGroup(g, members)
	}
}

// waitAll waits until every receiver in rcv delivered every id once.
func (c *nodeCluster) waitAll(rcv []NodeID, ids []PacketID) {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c.mu.Lock()
		missing := 0
		var example string
		for _, n := range rcv {
			for _, id := range ids {
				switch k := c.got[n][id]; {
				case k > 1:
					c.mu.Unlock()
					c.t.Fatalf("node %d delivered %v %d times", n, id, k)
				case k == 0:
					missing++
					example = fmt.Sprintf("node %d %v", n, id)
				}
			}
		}
		lost := c.lost
		c.mu.Unlock()
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%d deliveries missing (e.g. %s); unrecoverable %v", missing, example, lost)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Nodes over the in-memory network with loss deliver every message to
// every receiver exactly once, recovering losses by LEC and NAK.
func TestNodeOverMemNetwork(t *testing.T) {
	seed := engSeed(t, 31)
	c := nodeNewCluster(t, seed, 5, DefaultConfig(), FaultConfig{Loss: 0.03, Delay: 200 * time.Microsecond, Jitter: 100 * time.Microsecond})
	c.setGroup(1, simNodes(5))
	c.setGroup(2, []NodeID{1, 2, 3})
	var ids1, ids2 []PacketID
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i, nd := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range 100 {
				if err := nd.Send(1, []byte(fmt.Sprint(i, "-", k))); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				ids1 = append(ids1, PacketID{1, nd.ID(), uint64(k + 1)})
				mu.Unlock()
				time.Sleep(100 * time.Microsecond)
			}
		}()
	}
	for k := range 50 {
		big := make([]byte, 3000) // 3 fragments
		big[0] = byte(k)
		if err := c.nodes[0].Send(2, big); err != nil {
			t.Fatal(err)
		}
		ids2 = append(ids2, PacketID{2, 1, uint64(3*k + 1)})
	}
	wg.Wait()
	// Every receiver of group 1 gets every other node's messages.
	for _, nd := range c.nodes {
		var theirs []PacketID
		for _, id := range ids1 {
			if id.Sender != nd.ID() {
				theirs = append(theirs, id)
			}
		}
		c.waitAll([]NodeID{nd.ID()}, theirs)
	}
	c.waitAll([]NodeID{2, 3}, ids2)
	var st Stats
	for _, nd := range c.nodes {
		st = addStats(st, nd.Stats())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t.Logf("via %v; detected %d, lec %d, nak %d, unrecoverable %d; network %+v", c.via, st.LossesDetected, st.RecoveredLEC, st.RecoveredNAK, st.Unrecoverable, c.net.Stats())
	if st.RecoveredLEC == 0 || c.via[ViaLEC] == 0 {
		t.Fatal("no LEC recovery at 3% loss")
	}
	if st.Unrecoverable != 0 {
		t.Fatalf("unrecoverable %d", st.Unrecoverable)
	}
}

// Partition then heal with real Nodes.
func TestNodePartitionThenHeal(t *testing.T) {
	seed := engSeed(t, 32)
	c := nodeNewCluster(t, seed, 3, DefaultConfig(), FaultConfig{Delay: 100 * time.Microsecond})
	c.setGroup(1, simNodes(3))
	var ids []PacketID
	send := func(n int) {
		for range n {
			if err := c.nodes[0].Send(1, []byte("x")); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, PacketID{1, 1, uint64(len(ids) + 1)})
			time.Sleep(200 * time.Microsecond)
		}
	}
	send(10)
	c.net.Partition([]NodeID{3})
	send(30)
	c.net.Heal()
	send(5)
	c.waitAll([]NodeID{2, 3}, ids)
	if c.net.Stats().Faults.Partitioned == 0 {
		t.Fatal("nothing partitioned")
	}
}

func TestNodeLifecycle(t *testing.T) {
	seed := engSeed(t, 33)
	net, err := NewMemNetwork(seed, FaultConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close()
	tr, _ := net.Transport(1)
	if _, err := net.Transport(1); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("second transport for node 1: %v", err)
	}
	bad := DefaultConfig()
	bad.R = 0
	if _, err := NewNode(bad, 1, tr, NodeOptions{}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("bad config: %v", err)
	}
	if _, err := NewNode(DefaultConfig(), 1, nil, NodeOptions{}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("nil transport: %v", err)
	}
	n, err := NewNode(DefaultConfig(), 1, tr, NodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Send(1, []byte("x")); !errors.Is(err, ErrNotMember) {
		t.Fatalf("send before SetGroup: %v", err)
	}
	n.SetGroup(1, []NodeID{1, 2})
	if err := n.Send(1, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if n.TransportErrors() != 0 {
		// Node 2 has no transport: the network drops the copy silently (like UDP).
		t.Fatalf("transport errors %d", n.TransportErrors())
	}
	n.RemoveGroup(1)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := n.Send(1, []byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("send after Close: %v", err)
	}
	if err := tr.Unicast(2, &Packet{Kind: KindSession, Session: &Session{}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("transport not closed by Node.Close: %v", err)
	}
	if s := n.Stats(); s.MessagesSent != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// A Node whose network closes under it keeps running until Close.
func TestNodeSurvivesNetworkClose(t *testing.T) {
	net, _ := NewMemNetwork(1, FaultConfig{})
	tr, _ := net.Transport(1)
	n, err := NewNode(DefaultConfig(), 1, tr, NodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.SetGroup(1, []NodeID{1, 2})
	net.Close()
	time.Sleep(5 * time.Millisecond)
	n.Send(1, []byte("x"))
	if n.TransportErrors() == 0 {
		t.Fatal("send on a closed network not counted")
	}
	n.Close()
}

func TestMemNetworkFaults(t *testing.T) {
	seed := engSeed(t, 34)
	recv := func(tr *MemTransport, wait time.Duration) []Inbound {
		var got []Inbound
		timeout := time.After(wait)
		for {
			select {
			case m := <-tr.Inbound():
				got = append(got, m)
			case <-timeout:
				return got
			}
		}
	}
	pkt := func() *Packet {
		return &Packet{Kind: KindData, From: 1, Data: &Data{ID: PacketID{1, 1, 1}, FragCount: 1, Payload: []byte("hello")}}
	}
	t.Run("copies-are-independent", func(t *testing.T) {
		net, _ := NewMemNetwork(seed, FaultConfig{})
		defer net.Close()
		a, _ := net.Transport(1)
		b, _ := net.Transport(2)
		c, _ := net.Transport(3)
		p := pkt()
		a.Multicast(1, []NodeID{1, 2, 3}, p)
		gb, gc := recv(b, 20*time.Millisecond), recv(c, 20*time.Millisecond)
		if len(gb) != 1 || len(gc) != 1 || len(recv(a, 5*time.Millisecond)) != 0 {
			t.Fatalf("got %d %d", len(gb), len(gc))
		}
		gb[0].Packet.Data.Payload[0] = 'X'
		if string(gc[0].Packet.Data.Payload) != "hello" || string(p.Data.Payload) != "hello" {
			t.Fatal("receivers share memory")
		}
	})
	t.Run("delay-loss-dup-partition", func(t *testing.T) {
		net, _ := NewMemNetwork(seed, FaultConfig{Delay: 20 * time.Millisecond, Duplicate: 1})
		defer net.Close()
		a, _ := net.Transport(1)
		b, _ := net.Transport(2)
		start := time.Now()
		a.Unicast(2, pkt())
		got := recv(b, 200*time.Millisecond)
		if len(got) != 2 {
			t.Fatalf("duplicate=1: %d copies", len(got))
		}
		if got[0].At.Sub(start) < 20*time.Millisecond {
			t.Fatalf("delivered after %v, before the 20ms delay", got[0].At.Sub(start))
		}
		net.Partition([]NodeID{2})
		a.Unicast(2, pkt())
		if got := recv(b, 50*time.Millisecond); len(got) != 0 {
			t.Fatal("delivered across a partition")
		}
		net.Heal()
		net.SetFaults(FaultConfig{Loss: 1})
		a.Unicast(2, pkt())
		if got := recv(b, 10*time.Millisecond); len(got) != 0 {
			t.Fatal("delivered at 100% loss")
		}
		st := net.Stats()
		if st.Faults.Partitioned != 1 || st.Faults.Dropped != 1 || st.Faults.Duplicated != 1 || st.Delivered != 2 {
			t.Fatalf("stats %+v", st)
		}
		if err := net.SetFaults(FaultConfig{Loss: 2}); !errors.Is(err, ErrInvalidConfig) {
			t.Fatalf("bad faults: %v", err)
		}
	})
	t.Run("queue-full-drops", func(t *testing.T) {
		net, _ := NewMemNetwork(seed, FaultConfig{})
		defer net.Close()
		a, _ := net.Transport(1)
		net.Transport(2)
		for range DefaultMemQueue + 10 {
			a.Unicast(2, pkt())
		}
		if st := net.Stats(); st.QueueFull != 10 {
			t.Fatalf("queue full %d, want 10", st.QueueFull)
		}
	})
}

// The Gilbert–Elliott model produces bursts with the configured mean loss
// and mean burst length (seeded: deterministic).
func TestGilbertElliottBursts(t *testing.T) {
	seed := engSeed(t, 35)
	ge := GilbertElliott{PGoodBad: 0.01, PBadGood: 0.2, LossBad: 1}
	f := newFaultModel(FaultConfig{Burst: &ge}, rand.New(rand.NewPCG(seed, 1)))
	p := &Packet{Kind: KindSession, Session: &Session{}}
	const n = 400000
	lost, bursts, run := 0, 0, 0
	var d []time.Duration
	for range n {
		d = f.plan(1, 2, p, d[:0])
		if len(d) == 0 {
			lost++
			run++
		} else if run > 0 {
			bursts++
			run = 0
		}
	}
	rate := float64(lost) / n
	meanBurst := float64(lost) / float64(bursts)
	t.Logf("loss %.4f (want %.4f), mean burst %.2f (want %.2f)", rate, ge.MeanLoss(), meanBurst, 1/ge.PBadGood)
	if rate < 0.85*ge.MeanLoss() || rate > 1.15*ge.MeanLoss() {
		t.Fatalf("loss rate %.4f, want about %.4f", rate, ge.MeanLoss())
	}
	if meanBurst < 4 || meanBurst > 6 {
		t.Fatalf("mean burst %.2f, want about 5", meanBurst)
	}
	if err := (FaultConfig{Burst: &GilbertElliott{PGoodBad: -1}}).Validate(); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("bad burst: %v", err)
	}
}
