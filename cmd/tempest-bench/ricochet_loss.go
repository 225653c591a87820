package main

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"github.com/tempestrt/tempest/ricochet"
)

// lossModel decides, packet by packet, whether a receiver loses it.
//
// With burst <= 1 the losses are i.i.d. with probability loss. Otherwise it
// is a Gilbert–Elliott channel (the simple Gilbert form: every packet in the
// Bad state is lost, none in the Good state) whose stationary loss rate is
// loss and whose mean burst (run of consecutive losses) is burst packets:
//
//	P(Bad -> Good) = 1/burst                  (geometric bursts, mean burst)
//	P(Good -> Bad) = loss/(1-loss) * 1/burst  (so P(Bad) = loss)
//
// A lossModel is used by one goroutine and owns its seeded generator, so a
// run is reproducible from --seed for a given packet arrival order.
type lossModel struct {
	rng        *rand.Rand
	loss       float64
	bad        bool
	pGoodToBad float64
	pBadToGood float64
	burst      bool
}

func newLossModel(loss, burst float64, seed uint64) *lossModel {
	m := &lossModel{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), loss: loss}
	if burst > 1 && loss > 0 && loss < 1 {
		m.burst = true
		m.pBadToGood = 1 / burst
		m.pGoodToBad = loss / (1 - loss) * m.pBadToGood
	}
	return m
}

// drop reports whether the next packet is lost.
func (m *lossModel) drop() bool {
	if !m.burst {
		return m.loss > 0 && m.rng.Float64() < m.loss
	}
	if m.bad {
		if m.rng.Float64() < m.pBadToGood {
			m.bad = false
		}
	} else if m.rng.Float64() < m.pGoodToBad {
		m.bad = true
	}
	return m.bad
}

// splitLossModel keeps separate loss streams for data packets and for the
// other kinds, so the data-loss pattern a receiver sees does not depend on
// how many repairs or NAKs happen to be interleaved (which differs between
// the LEC and NAK-only modes).
type splitLossModel struct {
	data, other *lossModel
}

func newSplitLossModel(loss, burst float64, seed uint64) *splitLossModel {
	return &splitLossModel{data: newLossModel(loss, burst, seed), other: newLossModel(loss, burst, seed^0x5bd1e995)}
}

func (m *splitLossModel) drop(k ricochet.Kind) bool {
	if k == ricochet.KindData {
		return m.data.drop()
	}
	return m.other.drop()
}

// kindCounters counts datagrams and their wire bytes per packet kind.
type kindCounters struct {
	n     [6]atomic.Uint64
	bytes [6]atomic.Uint64
}

func (k *kindCounters) add(kind ricochet.Kind, copies int, size int) {
	if int(kind) < len(k.n) {
		k.n[kind].Add(uint64(copies))
		k.bytes[kind].Add(uint64(copies * size))
	}
}

// lossyTransport wraps a node's transport. Outbound it counts every
// datagram by kind (wire size, one copy per intended receiver, so a
// multicast to 4 members counts 4 whether it went as IP multicast or
// fan-out). Inbound it drops packets per its lossModel before the node sees
// them: all kinds are subject to loss (data, repairs, NAKs, sessions), as on
// a real lossy link.
type lossyTransport struct {
	inner ricochet.Transport
	self  ricochet.NodeID
	out   chan ricochet.Inbound
	model *splitLossModel
	// onArrive, when set, is called (on the forwarding goroutine) for every
	// packet that passes the loss model, before the node sees it.
	onArrive func(*ricochet.Packet)
	wg       sync.WaitGroup
	once     sync.Once

	linkCounters
}

// linkCounters count one node's traffic: what it sent and what its loss
// model did to what it received.
type linkCounters struct {
	sent         kindCounters  // outbound, per intended receiver
	recvd        kindCounters  // inbound before loss
	dropped      kindCounters  // inbound packets dropped by the loss model
	droppedFirst atomic.Uint64 // original (non-retransmitted) data packets dropped
	retransBytes atomic.Uint64 // retransmitted data bytes sent (part of sent[KindData])
}

// onSend counts copies of p sent.
func (c *linkCounters) onSend(p *ricochet.Packet, copies int) {
	size, _ := ricochet.WireSize(p)
	c.sent.add(p.Kind, copies, size)
	if p.Kind == ricochet.KindData && p.Data.Retransmit {
		c.retransBytes.Add(uint64(copies * size))
	}
}

// onReceive runs the loss model on an inbound packet, counts, and reports
// whether it is dropped.
func (c *linkCounters) onReceive(m *splitLossModel, p *ricochet.Packet) (drop bool) {
	size, _ := ricochet.WireSize(p)
	c.recvd.add(p.Kind, 1, size)
	if !m.drop(p.Kind) {
		return false
	}
	c.dropped.add(p.Kind, 1, size)
	if p.Kind == ricochet.KindData && !p.Data.Retransmit {
		c.droppedFirst.Add(1)
	}
	return true
}

func newLossyTransport(self ricochet.NodeID, inner ricochet.Transport, model *splitLossModel, queue int, onArrive func(*ricochet.Packet)) *lossyTransport {
	t := &lossyTransport{inner: inner, self: self, out: make(chan ricochet.Inbound, queue), model: model, onArrive: onArrive}
	t.wg.Add(1)
	go t.forward()
	return t
}

func (t *lossyTransport) forward() {
	defer t.wg.Done()
	defer close(t.out)
	for in := range t.inner.Inbound() {
		p := in.Packet
		if t.onReceive(t.model, p) {
			continue
		}
		if t.onArrive != nil {
			t.onArrive(p)
		}
		// Blocking is fine here: the UDP transport's reader never blocks (it
		// counts overflow), and this goroutine only relays.
		t.out <- in
	}
}

func (t *lossyTransport) Unicast(to ricochet.NodeID, p *ricochet.Packet) error {
	err := t.inner.Unicast(to, p)
	if err == nil {
		t.onSend(p, 1)
	}
	return err
}

func (t *lossyTransport) Multicast(g ricochet.GroupID, members []ricochet.NodeID, p *ricochet.Packet) error {
	err := t.inner.Multicast(g, members, p)
	if err == nil {
		copies := 0
		for _, m := range members {
			if m != t.self {
				copies++
			}
		}
		t.onSend(p, copies)
	}
	return err
}

func (t *lossyTransport) Inbound() <-chan ricochet.Inbound { return t.out }

func (t *lossyTransport) Close() error {
	var err error
	t.once.Do(func() {
		err = t.inner.Close() // closes inner.Inbound, which ends forward
		for range t.out {     // unblock forward if nobody reads any more
		}
		t.wg.Wait()
	})
	return err
}

var _ ricochet.Transport = (*lossyTransport)(nil)
