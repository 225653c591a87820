package ricochettest

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/tempestrt/tempest/ricochet"
)

// MemNetwork is an in-memory network of Transports for Node-level tests
// (real goroutines and wall-clock time; for reproducible protocol tests use
// the Sim). It applies the same fault model as the Sim (FaultConfig: loss,
// Gilbert–Elliott bursts, delay and jitter, reordering, duplication,
// partitions), drawing from a seeded *rand.Rand; with goroutines the
// interleaving, hence the exact outcome, still varies between runs.
//
// Every delivered packet is a deep copy (as if decoded from a datagram), so
// receivers never share memory with the sender or each other. A receiver
// whose inbound queue is full drops the packet, like a UDP socket buffer.
// One goroutine delivers delayed packets; Close stops it.
type MemNetwork struct {
	mu       sync.Mutex
	faults   *faultModel
	nodes    map[ricochet.NodeID]*MemTransport
	q        simQueue
	seq      uint64
	queueLen int
	closed   bool
	wake     chan struct{}
	done     chan struct{}
	wg       sync.WaitGroup
	stats    MemNetStats
	delays   []time.Duration
}

// MemNetStats counts the packets a MemNetwork carried.
type MemNetStats struct {
	Faults    FaultStats
	Delivered uint64 // copies handed to a receiver's inbound queue
	QueueFull uint64 // copies dropped because the receiver's queue was full
	NoRoute   uint64 // copies to a node with no (open) transport
}

// DefaultMemQueue is the inbound queue length of a MemTransport, in packets.
const DefaultMemQueue = 4096

// NewMemNetwork returns a network whose faults draw from seed.
func NewMemNetwork(seed uint64, faults FaultConfig) (*MemNetwork, error) {
	if err := faults.Validate(); err != nil {
		return nil, err
	}
	n := &MemNetwork{
		faults:   newFaultModel(faults, rand.New(rand.NewPCG(seed, 0x3e3_4e7))),
		nodes:    make(map[ricochet.NodeID]*MemTransport),
		queueLen: DefaultMemQueue,
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	n.wg.Add(1)
	go n.run()
	return n, nil
}

// Transport attaches node id to the network. Errors: ErrClosed, or
// ErrInvalidConfig when id already has an open transport.
func (n *MemNetwork) Transport(id ricochet.NodeID) (*MemTransport, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, ricochet.ErrClosed
	}
	if t := n.nodes[id]; t != nil && !t.closed {
		return nil, fmt.Errorf("%w: node %d already attached", ricochet.ErrInvalidConfig, id)
	}
	t := &MemTransport{net: n, id: id, in: make(chan ricochet.Inbound, n.queueLen)}
	n.nodes[id] = t
	return t, nil
}

// Partition splits the nodes into sides that cannot talk to each other
// (nodes not listed form one more side). Packets already in flight arrive.
func (n *MemNetwork) Partition(sets ...[]ricochet.NodeID) {
	n.mu.Lock()
	n.faults.partition(sets)
	n.mu.Unlock()
}

// Heal removes the partition.
func (n *MemNetwork) Heal() {
	n.mu.Lock()
	n.faults.heal()
	n.mu.Unlock()
}

// SetFaults replaces the fault model's parameters (the random stream and
// the burst and partition state are kept).
func (n *MemNetwork) SetFaults(f FaultConfig) error {
	if err := f.Validate(); err != nil {
		return err
	}
	n.mu.Lock()
	n.faults.cfg = f
	n.mu.Unlock()
	return nil
}

// Stats returns the network's counters.
func (n *MemNetwork) Stats() MemNetStats {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.stats
	s.Faults = n.faults.stats
	return s
}

// Close closes every transport and stops the delivery goroutine.
func (n *MemNetwork) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	for _, t := range n.nodes {
		t.closeLocked()
	}
	n.q = nil
	n.mu.Unlock()
	close(n.done)
	n.wg.Wait()
	return nil
}

// send puts copies of p on the way to each of tos.
func (n *MemNetwork) send(from ricochet.NodeID, tos []ricochet.NodeID, p *ricochet.Packet) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return ricochet.ErrClosed
	}
	if t := n.nodes[from]; t == nil || t.closed {
		return ricochet.ErrClosed
	}
	now := time.Now()
	woke := false
	for _, to := range tos {
		if to == from {
			continue
		}
		n.delays = n.faults.plan(from, to, p, n.delays[:0])
		for _, d := range n.delays {
			c := clonePacket(p)
			if d <= 0 {
				n.deliverLocked(to, c, now)
				continue
			}
			n.seq++
			heap.Push(&n.q, &simEvent{at: now.Add(d), seq: n.seq, to: to, pkt: c})
			woke = true
		}
	}
	if woke {
		select {
		case n.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

func (n *MemNetwork) deliverLocked(to ricochet.NodeID, p *ricochet.Packet, at time.Time) {
	t := n.nodes[to]
	if t == nil || t.closed {
		n.stats.NoRoute++
		return
	}
	select {
	case t.in <- ricochet.Inbound{Packet: p, At: at}:
		n.stats.Delivered++
	default:
		n.stats.QueueFull++
	}
}

// run delivers delayed packets when they are due.
func (n *MemNetwork) run() {
	defer n.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		n.mu.Lock()
		now := time.Now()
		for len(n.q) > 0 && !n.q[0].at.After(now) {
			ev := heap.Pop(&n.q).(*simEvent)
			n.deliverLocked(ev.to, ev.pkt, now)
		}
		wait := time.Hour
		if len(n.q) > 0 {
			wait = n.q[0].at.Sub(now)
		}
		n.mu.Unlock()
		timer.Reset(wait)
		select {
		case <-n.done:
			return
		case <-n.wake:
		case <-timer.C:
		}
	}
}

// MemTransport is one node's attachment to a MemNetwork; it implements
// Transport and is safe for concurrent use.
type MemTransport struct {
	net    *MemNetwork
	id     ricochet.NodeID
	in     chan ricochet.Inbound
	closed bool // guarded by net.mu
}

var _ ricochet.Transport = (*MemTransport)(nil)

// ID returns the node this transport belongs to.
func (t *MemTransport) ID() ricochet.NodeID { return t.id }

// Unicast sends p to one node.
func (t *MemTransport) Unicast(to ricochet.NodeID, p *ricochet.Packet) error {
	return t.net.send(t.id, []ricochet.NodeID{to}, p)
}

// Multicast sends p to every node in members (fan-out of independent copies).
func (t *MemTransport) Multicast(_ ricochet.GroupID, members []ricochet.NodeID, p *ricochet.Packet) error {
	return t.net.send(t.id, members, p)
}

// Inbound yields received packets; it is closed by Close.
func (t *MemTransport) Inbound() <-chan ricochet.Inbound { return t.in }

// Close detaches the node; packets to it are dropped from now on.
func (t *MemTransport) Close() error {
	t.net.mu.Lock()
	defer t.net.mu.Unlock()
	t.closeLocked()
	return nil
}

func (t *MemTransport) closeLocked() {
	if !t.closed {
		t.closed = true
		close(t.in)
	}
}

// clonePacket deep-copies p, as decoding a datagram would.
func clonePacket(p *ricochet.Packet) *ricochet.Packet {
	c := *p
	if p.Data != nil {
		d := *p.Data
		d.Payload = slices.Clone(p.Data.Payload)
		c.Data = &d
	}
	if p.Repair != nil {
		c.Repair = &ricochet.Repair{Entries: slices.Clone(p.Repair.Entries), XOR: slices.Clone(p.Repair.XOR)}
	}
	if p.Nak != nil {
		k := *p.Nak
		k.Seqs = slices.Clone(p.Nak.Seqs)
		c.Nak = &k
	}
	if p.NakMiss != nil {
		k := *p.NakMiss
		k.Seqs = slices.Clone(p.NakMiss.Seqs)
		c.NakMiss = &k
	}
	if p.Session != nil {
		s := *p.Session
		c.Session = &s
	}
	return &c
}
