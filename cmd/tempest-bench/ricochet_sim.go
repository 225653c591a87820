package main

// `tempest-bench ricochet --sim`: the same workload, loss model and
// accounting as over UDP, run in ricochettest's deterministic simulation
// (virtual clock, no goroutines, no sockets). Figures are then a function
// of the flags and --seed: the same run twice gives the same JSON, and the
// latencies are protocol latencies on an idealised LAN (one-way delay
// simDelay plus up to simJitter), free of this machine's scheduling noise.
// --sim-pause stalls a random node now and then, as these machines stall.

import (
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/tempestrt/tempest/ricochet"
	"github.com/tempestrt/tempest/ricochet/ricochettest"
)

// The simulated network: one-way delay and jitter of every copy (the loss
// is the bench's own loss model, as over UDP).
const (
	simDelay  = 100 * time.Microsecond
	simJitter = 50 * time.Microsecond
)

// runModeSim runs one mode in the simulation.
func runModeSim(cfg benchConfig, lec bool, stderr io.Writer) (modeResult, error) {
	name := modeName(lec)
	n := cfg.Nodes
	lay := newLayout(cfg)
	col := newCollector(cfg, lay.senderOf)
	ec, err := engineConfig(cfg, lec)
	if err != nil {
		return modeResult{}, err
	}
	links := make([]*linkCounters, n)
	models := make([]*splitLossModel, n)
	for i := range links {
		links[i] = &linkCounters{}
		models[i] = newSplitLossModel(cfg.Loss, cfg.Burst, cfg.Seed*1000003+uint64(i))
	}
	// The Drop hook sees every copy once, when it is sent: the receiver's
	// loss model decides its fate there (copies are never lost otherwise).
	faults := ricochettest.FaultConfig{Delay: simDelay, Jitter: simJitter, Drop: func(from, to ricochet.NodeID, p *ricochet.Packet) bool {
		if links[to-1].onReceive(models[to-1], p) {
			return true
		}
		col.arrive(to, p)
		return false
	}}
	sim, err := ricochettest.NewSim(cfg.Seed, faults)
	if err != nil {
		return modeResult{}, err
	}
	sim.OnTransmit = func(from, to ricochet.NodeID, p *ricochet.Packet) { links[from-1].onSend(p, 1) }
	sim.OnDeliver = func(node ricochet.NodeID, d ricochet.Delivery, at time.Time) {
		col.deliver(node, benchDelivery{Group: d.ID.Group, Sender: d.ID.Sender, Payload: d.Payload, Via: benchVia(d.Via), At: at, Detect: d.Latency})
	}
	for _, id := range lay.members {
		if _, err := sim.AddNode(id, ec); err != nil {
			return modeResult{}, err
		}
	}
	for _, g := range lay.groups {
		sim.SetGroup(g, lay.members)
	}

	start := sim.Now()
	interval := time.Second / time.Duration(cfg.Rate)
	sendEnd := start.Add(time.Duration(cfg.Packets) * interval)
	// Pauses: every --sim-pause-every, one node drawn at random stalls
	// for --sim-pause (its packets and ticks wait; a stalled sender sends
	// its backlog when it wakes).
	var pauses int
	if cfg.SimPause > 0 {
		rng := rand.New(rand.NewPCG(cfg.Seed, 0x9a05e))
		for at := start.Add(cfg.SimPauseEvery); at.Before(sendEnd); at = at.Add(cfg.SimPauseEvery) {
			id := lay.members[rng.IntN(n)]
			sim.At(at, func() { sim.Pause(id, cfg.SimPause) })
			pauses++
		}
	}
	var sent, sendErrs uint64
	var firstErr error
	var sendNext func(k int)
	sendNext = func(k int) {
		if k >= cfg.Packets {
			return
		}
		g := k % cfg.Groups
		from := lay.senderOfGroup(g)
		if until := sim.Paused(from); !until.IsZero() {
			sim.At(until, func() { sendNext(k) })
			return
		}
		buf := make([]byte, cfg.Payload)
		fillPayload(buf, k, sim.Now())
		if _, err := sim.Send(from, lay.groups[g], buf); err != nil {
			sendErrs++
			if firstErr == nil {
				firstErr = err
			}
		}
		sent++
		next := start.Add(time.Duration(k+1) * interval)
		if next.Before(sim.Now()) {
			next = sim.Now() // catching up after a pause: back to back
		}
		sim.At(next, func() { sendNext(k + 1) })
	}
	sim.At(start, func() { sendNext(0) })
	fmt.Fprintf(stderr, "[%s] simulation: %d nodes; sending %d packets at %d pkt/s over %d groups, %d pauses of %v\n",
		name, n, cfg.Packets, cfg.Rate, cfg.Groups, pauses, cfg.SimPause)
	for sent < uint64(cfg.Packets) && sendErrs == 0 {
		sim.Run(100 * time.Millisecond)
	}
	if firstErr != nil {
		return modeResult{}, fmt.Errorf("%s: send: %w", name, firstErr)
	}
	sendDone := sim.Now()
	expected := uint64(cfg.Packets) * uint64(n-1)
	timedOut := false
	for deadline := sendDone.Add(cfg.Drain); col.delivered.Load() < expected; {
		if !sim.Now().Before(deadline) {
			timedOut = true
			break
		}
		sim.Run(10 * time.Millisecond)
	}
	fmt.Fprintf(stderr, "[%s] done: sent %d, delivered %d/%d receptions (virtual %v)\n",
		name, sent, col.delivered.Load(), expected, sim.Now().Sub(start).Round(time.Millisecond))
	var es ricochet.Stats
	for _, id := range lay.members {
		es = ricochettest.SumStats(es, sim.Engine(id).Stats())
	}
	r, err := finishMode(name, cfg, lec, col, sent, expected, timedOut, links, es, start, sendDone)
	r.Pauses = pauses
	return r, err
}
