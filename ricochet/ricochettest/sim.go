package ricochettest

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/tempestrt/tempest/ricochet"
)

// Sim is a fully deterministic simulation of Ricochet nodes: no
// goroutines, a virtual clock, and a priority queue of in-flight packets,
// ticks and scheduled actions that steps the nodes' engines directly. The
// network misbehaves as its FaultConfig says, drawing from a seeded
// *rand.Rand, so a run is a function of its seed and inputs: a failing test
// is replayed exactly from the seed it prints.
//
// Each node's engine is ticked every Config.TickInterval of virtual time.
// Packets are shared between receivers (the engine never modifies a packet).
type Sim struct {
	now    time.Time
	seed   uint64
	faults *faultModel
	nodes  map[ricochet.NodeID]*simNode
	ids    []ricochet.NodeID // sorted
	q      simQueue
	seq    uint64
	delays []time.Duration

	// OnDeliver, when set, is called for every message a node delivers.
	OnDeliver func(node ricochet.NodeID, d ricochet.Delivery, at time.Time)
	// OnUnrecoverable, when set, is called for every range a node declares unrecoverable.
	OnUnrecoverable func(node ricochet.NodeID, r ricochet.PacketRange, at time.Time)
	// OnTransmit, when set, is called for every packet copy a node puts on
	// the network (before faults): for traffic accounting.
	OnTransmit func(from, to ricochet.NodeID, p *ricochet.Packet)

	traffic [ricochet.KindNakMiss + 1]struct{ packets, bytes uint64 }
}

type simNode struct {
	id     ricochet.NodeID
	engine *ricochet.Engine
	tick   time.Duration
	paused time.Time // the node does nothing before this time (see Pause)
}

// SimEpoch is the virtual time at which every Sim starts.
var SimEpoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// NewSim returns an empty simulation whose randomness (faults, and every
// engine's *rand.Rand) derives from seed.
func NewSim(seed uint64, faults FaultConfig) (*Sim, error) {
	if err := faults.Validate(); err != nil {
		return nil, err
	}
	return &Sim{
		now:    SimEpoch,
		seed:   seed,
		faults: newFaultModel(faults, rand.New(rand.NewPCG(seed, 0x5eed_fa17))),
		nodes:  make(map[ricochet.NodeID]*simNode),
	}, nil
}

// Seed returns the seed the simulation was built with.
func (s *Sim) Seed() uint64 { return s.seed }

// Now returns the current virtual time.
func (s *Sim) Now() time.Time { return s.now }

// AddNode adds a node running an engine with cfg (seeded from the sim's
// seed and id) and starts ticking it.
func (s *Sim) AddNode(id ricochet.NodeID, cfg ricochet.Config) (*ricochet.Engine, error) {
	if _, ok := s.nodes[id]; ok {
		return nil, fmt.Errorf("%w: node %d added twice", ricochet.ErrInvalidConfig, id)
	}
	e, err := ricochet.NewEngine(cfg, id, rand.New(rand.NewPCG(s.seed, uint64(id)+1)))
	if err != nil {
		return nil, err
	}
	n := &simNode{id: id, engine: e, tick: cfg.TickInterval}
	s.nodes[id] = n
	s.ids = append(s.ids, id)
	slices.Sort(s.ids)
	s.push(&simEvent{at: s.now.Add(n.tick), to: id, tick: true})
	return e, nil
}

// Engine returns node id's engine (nil if unknown).
func (s *Sim) Engine(id ricochet.NodeID) *ricochet.Engine {
	if n := s.nodes[id]; n != nil {
		return n.engine
	}
	return nil
}

// Nodes returns the node IDs, sorted.
func (s *Sim) Nodes() []ricochet.NodeID { return slices.Clone(s.ids) }

// SetGroup sets group g's members on every node (nodes not in members leave g).
func (s *Sim) SetGroup(g ricochet.GroupID, members []ricochet.NodeID) {
	for _, id := range s.ids {
		s.nodes[id].engine.SetGroup(g, members)
	}
}

// Send makes node from send payload to group g now.
func (s *Sim) Send(from ricochet.NodeID, g ricochet.GroupID, payload []byte) (ricochet.Output, error) {
	n := s.nodes[from]
	if n == nil {
		return ricochet.Output{}, fmt.Errorf("%w: %d", ricochet.ErrUnknownNode, from)
	}
	out, err := n.engine.Send(s.now, g, payload)
	if err != nil {
		return out, err
	}
	s.perform(from, out)
	return out, nil
}

// At schedules fn to run at virtual time t (now if t is in the past).
func (s *Sim) At(t time.Time, fn func()) {
	if t.Before(s.now) {
		t = s.now
	}
	s.push(&simEvent{at: t, fn: fn})
}

// Pause stalls node id for d from now, as a process that stops running (a
// GC pause, a descheduled VM, a loaded machine): packets that reach it and
// its ticks wait, and when the pause ends it handles them all at once, in
// arrival order, at the end time. Packets it sent before go on. A pause
// that ends before one already in force changes nothing. Sends made through
// Sim.Send are not held: a caller modelling a stalled sender checks Paused.
func (s *Sim) Pause(id ricochet.NodeID, d time.Duration) {
	if n := s.nodes[id]; n != nil && s.now.Add(d).After(n.paused) {
		n.paused = s.now.Add(d)
	}
}

// Paused returns when node id's current pause ends, or the zero time when
// it is running.
func (s *Sim) Paused(id ricochet.NodeID) time.Time {
	if n := s.nodes[id]; n != nil && n.paused.After(s.now) {
		return n.paused
	}
	return time.Time{}
}

// Partition splits the nodes into sides that cannot talk to each other
// (nodes not listed form one more side). Packets in flight still arrive.
func (s *Sim) Partition(sets ...[]ricochet.NodeID) { s.faults.partition(sets) }

// Heal removes the partition.
func (s *Sim) Heal() { s.faults.heal() }

// FaultStats returns what the fault model did so far.
func (s *Sim) FaultStats() FaultStats { return s.faults.stats }

// Traffic returns the packet copies and wire bytes (WireSize: header, body
// and tag) transmitted so far for kind k.
func (s *Sim) Traffic(k ricochet.Kind) (packets, bytes uint64) {
	if int(k) >= len(s.traffic) {
		return 0, 0
	}
	return s.traffic[k].packets, s.traffic[k].bytes
}

// Run advances virtual time by d, processing every event due until then.
func (s *Sim) Run(d time.Duration) { s.RunUntil(s.now.Add(d)) }

// RunUntil processes every event due at or before t, then sets the clock to t.
func (s *Sim) RunUntil(t time.Time) {
	for len(s.q) > 0 && !s.q[0].at.After(t) {
		ev := heap.Pop(&s.q).(*simEvent)
		s.now = ev.at
		switch {
		case ev.fn != nil:
			ev.fn()
		case s.nodes[ev.to] != nil && s.nodes[ev.to].paused.After(s.now):
			// Held until the pause ends; re-queued in pop order, so the
			// node then handles its backlog in arrival order.
			ev.at = s.nodes[ev.to].paused
			s.push(ev)
		case ev.tick:
			n := s.nodes[ev.to]
			s.perform(ev.to, n.engine.Tick(s.now))
			s.push(&simEvent{at: s.now.Add(n.tick), to: ev.to, tick: true})
		default:
			if n := s.nodes[ev.to]; n != nil {
				s.perform(ev.to, n.engine.Step(s.now, ev.pkt))
			}
		}
	}
	if t.After(s.now) {
		s.now = t
	}
}

// perform carries out a node's output: packets into the network, deliveries
// and unrecoverable ranges to the callbacks.
func (s *Sim) perform(from ricochet.NodeID, out ricochet.Output) {
	for _, u := range out.Unicasts {
		s.transmit(from, u.To, u.Packet)
	}
	for _, m := range out.Multicasts {
		for _, to := range m.Members {
			s.transmit(from, to, m.Packet)
		}
	}
	if s.OnDeliver != nil {
		for _, d := range out.Deliveries {
			s.OnDeliver(from, d, s.now)
		}
	}
	if s.OnUnrecoverable != nil {
		for _, r := range out.Unrecoverable {
			s.OnUnrecoverable(from, r, s.now)
		}
	}
}

func (s *Sim) transmit(from, to ricochet.NodeID, p *ricochet.Packet) {
	if to == from {
		return
	}
	if s.OnTransmit != nil {
		s.OnTransmit(from, to, p)
	}
	if int(p.Kind) < len(s.traffic) {
		s.traffic[p.Kind].packets++
		if n, err := ricochet.WireSize(p); err == nil {
			s.traffic[p.Kind].bytes += uint64(n)
		}
	}
	s.delays = s.faults.plan(from, to, p, s.delays[:0])
	for _, d := range s.delays {
		s.push(&simEvent{at: s.now.Add(d), to: to, pkt: p})
	}
}

func (s *Sim) push(ev *simEvent) {
	s.seq++
	ev.seq = s.seq
	heap.Push(&s.q, ev)
}

// simEvent is a packet arrival, a node tick or a scheduled action.
type simEvent struct {
	at   time.Time
	seq  uint64 // FIFO among events at the same instant: determinism
	to   ricochet.NodeID
	pkt  *ricochet.Packet
	tick bool
	fn   func()
}

type simQueue []*simEvent

func (q simQueue) Len() int { return len(q) }
func (q simQueue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q simQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *simQueue) Push(x any)   { *q = append(*q, x.(*simEvent)) }
func (q *simQueue) Pop() any {
	old := *q
	ev := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return ev
}
