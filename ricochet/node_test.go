package ricochet_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tempestrt/tempest/ricochet"
	"github.com/tempestrt/tempest/ricochet/ricochettest"
)

// nodeCluster is n Nodes on a ricochettest.MemNetwork recording their deliveries.
type nodeCluster struct {
	t     *testing.T
	net   *ricochettest.MemNetwork
	nodes []*ricochet.Node
	mu    sync.Mutex
	got   map[ricochet.NodeID]map[ricochet.PacketID]int
	via   map[ricochet.Via]int
	lost  map[ricochet.NodeID][]ricochet.PacketRange
}

func nodeNewCluster(t *testing.T, seed uint64, n int, cfg ricochet.Config, faults ricochettest.FaultConfig) *nodeCluster {
	t.Helper()
	net, err := ricochettest.NewMemNetwork(seed, faults)
	if err != nil {
		t.Fatal(err)
	}
	c := &nodeCluster{t: t, net: net, got: map[ricochet.NodeID]map[ricochet.PacketID]int{}, via: map[ricochet.Via]int{}, lost: map[ricochet.NodeID][]ricochet.PacketRange{}}
	for i := 1; i <= n; i++ {
		id := ricochet.NodeID(i)
		tr, err := net.Transport(id)
		if err != nil {
			t.Fatal(err)
		}
		c.got[id] = map[ricochet.PacketID]int{}
		node, err := ricochet.NewNode(cfg, id, tr, ricochet.NodeOptions{
			Seed: seed,
			OnDeliver: func(d ricochet.Delivery) {
				c.mu.Lock()
				c.got[id][d.ID]++
				c.via[d.Via]++
				c.mu.Unlock()
			},
			OnUnrecoverable: func(r ricochet.PacketRange) {
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

func (c *nodeCluster) setGroup(g ricochet.GroupID, members []ricochet.NodeID) {
	for _, nd := range c.nodes {
		nd.SetGroup(g, members)
	}
}

// waitAll waits until every receiver in rcv delivered every id once.
func (c *nodeCluster) waitAll(rcv []ricochet.NodeID, ids []ricochet.PacketID) {
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
	seed := ricochettest.Seed(t, 31)
	c := nodeNewCluster(t, seed, 5, ricochet.DefaultConfig(), ricochettest.FaultConfig{Loss: 0.03, Delay: 200 * time.Microsecond, Jitter: 100 * time.Microsecond})
	c.setGroup(1, ricochettest.NodeIDs(5))
	c.setGroup(2, []ricochet.NodeID{1, 2, 3})
	var ids1, ids2 []ricochet.PacketID
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
				ids1 = append(ids1, ricochet.PacketID{Group: 1, Sender: nd.ID(), Seq: uint64(k + 1)})
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
		ids2 = append(ids2, ricochet.PacketID{Group: 2, Sender: 1, Seq: uint64(3*k + 1)})
	}
	wg.Wait()
	// Every receiver of group 1 gets every other node's messages.
	for _, nd := range c.nodes {
		var theirs []ricochet.PacketID
		for _, id := range ids1 {
			if id.Sender != nd.ID() {
				theirs = append(theirs, id)
			}
		}
		c.waitAll([]ricochet.NodeID{nd.ID()}, theirs)
	}
	c.waitAll([]ricochet.NodeID{2, 3}, ids2)
	var st ricochet.Stats
	for _, nd := range c.nodes {
		st = ricochettest.SumStats(st, nd.Stats())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t.Logf("via %v; detected %d, lec %d, nak %d, unrecoverable %d; network %+v", c.via, st.LossesDetected, st.RecoveredLEC, st.RecoveredNAK, st.Unrecoverable, c.net.Stats())
	if st.RecoveredLEC == 0 || c.via[ricochet.ViaLEC] == 0 {
		t.Fatal("no LEC recovery at 3% loss")
	}
	if st.Unrecoverable != 0 {
		t.Fatalf("unrecoverable %d", st.Unrecoverable)
	}
}

// Partition then heal with real Nodes.
func TestNodePartitionThenHeal(t *testing.T) {
	seed := ricochettest.Seed(t, 32)
	c := nodeNewCluster(t, seed, 3, ricochet.DefaultConfig(), ricochettest.FaultConfig{Delay: 100 * time.Microsecond})
	c.setGroup(1, ricochettest.NodeIDs(3))
	var ids []ricochet.PacketID
	send := func(n int) {
		for range n {
			if err := c.nodes[0].Send(1, []byte("x")); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, ricochet.PacketID{Group: 1, Sender: 1, Seq: uint64(len(ids) + 1)})
			time.Sleep(200 * time.Microsecond)
		}
	}
	send(10)
	c.net.Partition([]ricochet.NodeID{3})
	send(30)
	c.net.Heal()
	send(5)
	c.waitAll([]ricochet.NodeID{2, 3}, ids)
	if c.net.Stats().Faults.Partitioned == 0 {
		t.Fatal("nothing partitioned")
	}
}

func TestNodeLifecycle(t *testing.T) {
	seed := ricochettest.Seed(t, 33)
	net, err := ricochettest.NewMemNetwork(seed, ricochettest.FaultConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close()
	tr, _ := net.Transport(1)
	if _, err := net.Transport(1); !errors.Is(err, ricochet.ErrInvalidConfig) {
		t.Fatalf("second transport for node 1: %v", err)
	}
	bad := ricochet.DefaultConfig()
	bad.R = 0
	if _, err := ricochet.NewNode(bad, 1, tr, ricochet.NodeOptions{}); !errors.Is(err, ricochet.ErrInvalidConfig) {
		t.Fatalf("bad config: %v", err)
	}
	if _, err := ricochet.NewNode(ricochet.DefaultConfig(), 1, nil, ricochet.NodeOptions{}); !errors.Is(err, ricochet.ErrInvalidConfig) {
		t.Fatalf("nil transport: %v", err)
	}
	n, err := ricochet.NewNode(ricochet.DefaultConfig(), 1, tr, ricochet.NodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Send(1, []byte("x")); !errors.Is(err, ricochet.ErrNotMember) {
		t.Fatalf("send before SetGroup: %v", err)
	}
	n.SetGroup(1, []ricochet.NodeID{1, 2})
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
	if err := n.Send(1, []byte("x")); !errors.Is(err, ricochet.ErrClosed) {
		t.Fatalf("send after Close: %v", err)
	}
	if err := tr.Unicast(2, &ricochet.Packet{Kind: ricochet.KindSession, Session: &ricochet.Session{}}); !errors.Is(err, ricochet.ErrClosed) {
		t.Fatalf("transport not closed by Node.Close: %v", err)
	}
	if s := n.Stats(); s.MessagesSent != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// A Node whose network closes under it keeps running until Close.
func TestNodeSurvivesNetworkClose(t *testing.T) {
	net, _ := ricochettest.NewMemNetwork(1, ricochettest.FaultConfig{})
	tr, _ := net.Transport(1)
	n, err := ricochet.NewNode(ricochet.DefaultConfig(), 1, tr, ricochet.NodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.SetGroup(1, []ricochet.NodeID{1, 2})
	net.Close()
	time.Sleep(5 * time.Millisecond)
	n.Send(1, []byte("x"))
	if n.TransportErrors() == 0 {
		t.Fatal("send on a closed network not counted")
	}
	n.Close()
}
