package ricochettest

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/tempestrt/tempest/ricochet"
)

// lecOnly returns cfg with NAKs pushed out of the picture, so a recovery
// can only come from LEC.
func lecOnly(cfg ricochet.Config) ricochet.Config {
	cfg.NakTimeout = time.Hour
	cfg.ReassemblyTimeout = 2 * time.Hour
	return cfg
}

// A packet lost at one receiver is recovered from the repairs of the
// others, without any NAK.
func TestSimLECRecoversLoss(t *testing.T) {
	seed := testSeed(t, 21)
	lostID := ricochet.PacketID{Group: 1, Sender: 1, Seq: 5}
	c := simNewCluster(t, seed, 6, lecOnly(ricochet.DefaultConfig()), FaultConfig{Delay: msec(0.1), Drop: simDropData(3, lostID)})
	c.sim.SetGroup(1, simNodes(6))
	ids := c.sendN(1, 1, 40, 300, msec(1))
	c.sim.Run(time.Second)
	for _, n := range c.ids[1:] {
		for _, id := range ids {
			d := c.mustDeliverOnce(n, id)
			want := ricochet.ViaDirect
			if n == 3 && id == lostID {
				want = ricochet.ViaLEC
			}
			if d.Via != want {
				t.Fatalf("node %d %v", n, d)
			}
		}
	}
	if st := c.stats(3); st.NaksSent != 0 || st.RecoveredLEC != 1 {
		t.Fatalf("node 3 stats %+v", st)
	}
}

// Staggering: with several bins per region filled round-robin, a burst of
// consecutive losses at one node is spread over several repairs, each
// missing at most one or two of them; with one bin, each repair from a
// neighbour holds most of the burst and cannot be decoded.
func TestSimStaggeringSurvivesBurst(t *testing.T) {
	skipUnderRace(t)
	base := testSeed(t, 100)
	burst := []ricochet.PacketID{}
	for s := uint64(21); s <= 24; s++ {
		burst = append(burst, ricochet.PacketID{Group: 1, Sender: 1, Seq: s})
	}
	run := func(bins int, seed uint64) (lec int) {
		cfg := lecOnly(ricochet.DefaultConfig())
		cfg.BinsPerRegion = bins
		cfg.FlushInterval = time.Second // only full bins: the burst is not split by timer flushes
		c := simNewCluster(t, seed, 6, cfg, FaultConfig{Delay: msec(0.1), Drop: simDropData(2, burst...)})
		c.sim.SetGroup(1, simNodes(6))
		c.sendN(1, 1, 200, 200, msec(0.5))
		c.sim.Run(2 * time.Second)
		return int(c.stats(2).RecoveredLEC)
	}
	full1, total1 := 0, 0
	for i := range uint64(10) {
		seed := base + i
		if got := run(4, seed); got != len(burst) {
			t.Fatalf("seed %d: 4 bins recovered %d of a burst of %d by LEC", seed, got, len(burst))
		}
		got := run(1, seed)
		total1 += got
		if got == len(burst) {
			full1++
		}
	}
	t.Logf("1 bin: recovered the whole burst in %d of 10 runs (%d of 40 packets); 4 bins: 10 of 10", full1, total1)
	if full1 > 5 {
		t.Fatalf("one bin recovered the whole burst in %d of 10 runs: the test does not show staggering", full1)
	}
}

// Timer flush: a slow group never fills a bin of R packets; partly filled
// bins are sent after FlushInterval so its losses are still repaired by LEC.
func TestSimTimerFlushRepairsSlowGroup(t *testing.T) {
	seed := testSeed(t, 22)
	cfg := lecOnly(ricochet.DefaultConfig())
	lost := ricochet.PacketID{Group: 1, Sender: 1, Seq: 2}
	var repairs []*ricochet.Repair
	c := simNewCluster(t, seed, 4, cfg, FaultConfig{Delay: msec(0.1), Drop: func(from, to ricochet.NodeID, p *ricochet.Packet) bool {
		if to == 4 && p.Kind == ricochet.KindRepair {
			repairs = append(repairs, p.Repair)
		}
		return simDropData(4, lost)(from, to, p)
	}})
	c.sim.SetGroup(1, simNodes(4))
	c.sendN(1, 1, 3, 100, 100*time.Millisecond) // 10 packets/s, far below R per FlushInterval
	c.sim.Run(time.Second)
	d := c.mustDeliverOnce(4, lost)
	if d.Via != ricochet.ViaLEC {
		t.Fatalf("slow group loss: %v", d)
	}
	if d.Latency > cfg.FlushInterval+2*cfg.TickInterval+msec(1) {
		t.Fatalf("recovered after %v, want within FlushInterval %v", d.Latency, cfg.FlushInterval)
	}
	flushed := uint64(0)
	for _, n := range c.ids {
		flushed += c.stats(n).RepairsFlushed
	}
	if flushed == 0 {
		t.Fatal("no bin was flushed by the timer")
	}
	for _, r := range repairs {
		if len(r.Entries) >= cfg.R {
			t.Fatalf("a repair of a slow group holds %d entries (R=%d): not a timer flush", len(r.Entries), cfg.R)
		}
	}
}

// A node in several overlapping groups recovers a loss in one group from a
// repair built over packets of several groups (one region's bins mix them).
func TestSimRegionsRecoverAcrossGroups(t *testing.T) {
	seed := testSeed(t, 24)
	lost := ricochet.PacketID{Group: 1, Sender: 1, Seq: 6}
	mixed := 0
	c := simNewCluster(t, seed, 4, lecOnly(ricochet.DefaultConfig()), FaultConfig{Delay: msec(0.1), Drop: func(from, to ricochet.NodeID, p *ricochet.Packet) bool {
		if to == 3 && p.Kind == ricochet.KindRepair {
			gs := map[ricochet.GroupID]bool{}
			has := false
			for _, en := range p.Repair.Entries {
				gs[en.ID.Group] = true
				has = has || en.ID == lost
			}
			if has && len(gs) > 1 {
				mixed++
			}
		}
		return simDropData(3, lost)(from, to, p)
	}})
	c.sim.SetGroup(1, simNodes(4))
	c.sim.SetGroup(2, simNodes(4))
	c.sim.SetGroup(3, simNodes(4))
	for i := range 12 { // three slow groups, interleaved: each alone would need flushes
		c.send(1, 1, []byte(fmt.Sprint("a", i)))
		c.send(2, 2, []byte(fmt.Sprint("b", i)))
		c.send(4, 3, []byte(fmt.Sprint("c", i)))
		c.sim.Run(msec(1))
	}
	c.sim.Run(time.Second)
	if d := c.mustDeliverOnce(3, lost); d.Via != ricochet.ViaLEC {
		t.Fatalf("%v", d)
	}
	if mixed == 0 {
		t.Fatal("no repair naming the lost packet mixed several groups")
	}
	if len(c.sim.Engine(3).Regions()) != 1 {
		t.Fatalf("regions of node 3: %v", c.sim.Engine(3).Regions())
	}
}

// NAK fallback recovers what LEC cannot: with LEC off, and with every
// repair packet lost.
func TestSimNAKFallback(t *testing.T) {
	seed := testSeed(t, 25)
	lost := []ricochet.PacketID{{Group: 1, Sender: 1, Seq: 3}, {Group: 1, Sender: 1, Seq: 10}, {Group: 1, Sender: 1, Seq: 30}}
	for _, mode := range []string{"lec-disabled", "repairs-lost"} {
		t.Run(mode, func(t *testing.T) {
			cfg := ricochet.DefaultConfig()
			drop := simDropData(2, lost...)
			if mode == "lec-disabled" {
				cfg.DisableLEC = true
			} else {
				drop = func(from, to ricochet.NodeID, p *ricochet.Packet) bool {
					return p.Kind == ricochet.KindRepair || simDropData(2, lost...)(from, to, p)
				}
			}
			c := simNewCluster(t, seed, 5, cfg, FaultConfig{Delay: msec(0.1), Drop: drop})
			c.sim.SetGroup(1, simNodes(5))
			c.sendN(1, 1, 30, 500, msec(1)) // 30 is the last: only a Session reveals it
			c.sim.Run(time.Second)
			for _, id := range lost {
				d := c.mustDeliverOnce(2, id)
				if d.Via != ricochet.ViaNAK || d.Latency < cfg.NakTimeout {
					t.Fatalf("%v (NakTimeout %v)", d, cfg.NakTimeout)
				}
			}
			st := c.stats(2)
			if st.RecoveredNAK != 3 || st.RecoveredLEC != 0 || st.Unrecoverable != 0 {
				t.Fatalf("stats %+v", st)
			}
			if mode == "lec-disabled" && c.stats(3).RepairsSent != 0 {
				t.Fatal("repairs sent with LEC disabled")
			}
		})
	}
}

// A packet gone from the sender's buffer is reported unrecoverable, once,
// and never delivered.
func TestSimUnrecoverableWhenBufferDropped(t *testing.T) {
	seed := testSeed(t, 26)
	cfg := ricochet.DefaultConfig()
	cfg.DisableLEC = true
	cfg.RetransmitWindow = msec(8) // 8 packets at one per ms
	lost := ricochet.PacketID{Group: 1, Sender: 1, Seq: 2}
	// Node 2's first NAKs are lost too: by the time one gets through, the
	// sender has sent 20 more packets and its 8 ms buffer no longer
	// holds packet 2.
	drop := func(from, to ricochet.NodeID, p *ricochet.Packet) bool {
		if from == 2 && p.Kind == ricochet.KindNak && p.Nak != nil && slices.Contains(p.Nak.Seqs, lost.Seq) {
			return true
		}
		return simDropData(2, lost)(from, to, p)
	}
	var c *simCluster
	c = simNewCluster(t, seed, 3, cfg, FaultConfig{Delay: msec(0.1), Drop: func(from, to ricochet.NodeID, p *ricochet.Packet) bool {
		if c.sim.Now().Sub(SimEpoch) > msec(25) {
			return simDropData(2, lost)(from, to, p)
		}
		return drop(from, to, p)
	}})
	c.sim.SetGroup(1, simNodes(3))
	ids := c.sendN(1, 1, 30, 100, msec(1))
	c.sim.Run(time.Second)
	st := c.stats(2)
	if st.Unrecoverable != 1 || st.NakMissReceived != 1 {
		t.Fatalf("stats %+v", st)
	}
	if !slices.Equal(c.lost[2], []ricochet.PacketRange{{Group: 1, Sender: 1, First: 2, Last: 2}}) {
		t.Fatalf("unrecoverable ranges %v", c.lost[2])
	}
	for _, id := range ids {
		if id == lost {
			if len(c.deliveries(2, id)) != 0 {
				t.Fatal("unrecoverable packet delivered")
			}
			continue
		}
		c.mustDeliverOnce(2, id)
	}
	c.mustDeliverOnce(3, lost)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Messages larger than MaxPayload travel as fragments with consecutive
// seqs and are delivered once whole, however the fragments arrived.
func TestSimFragmentation(t *testing.T) {
	seed := testSeed(t, 27)
	cfg := ricochet.DefaultConfig()
	cfg.MaxPayload = 100
	msg := make([]byte, 950)
	for i := range msg {
		msg[i] = byte(i * 7)
	}
	t.Run("lost-fragments-recovered", func(t *testing.T) {
		// Message 2's fragments are seqs 11..20; lose 13 and 17 at node 2.
		c := simNewCluster(t, seed, 5, cfg, FaultConfig{Delay: msec(0.1), Jitter: msec(0.05),
			Drop: simDropData(2, ricochet.PacketID{Group: 1, Sender: 1, Seq: 13}, ricochet.PacketID{Group: 1, Sender: 1, Seq: 17})})
		c.sim.SetGroup(1, simNodes(5))
		var ids []ricochet.PacketID
		for range 5 {
			ids = append(ids, c.send(1, 1, msg))
			c.sim.Run(msec(1))
		}
		c.sim.Run(time.Second)
		for _, n := range c.ids[1:] {
			for _, id := range ids {
				d := c.mustDeliverOnce(n, id)
				if d.Fragments != 10 {
					t.Fatalf("fragments %d", d.Fragments)
				}
				if n == 2 && id.Seq == 11 && d.Via == ricochet.ViaDirect {
					t.Fatalf("message with lost fragments delivered as direct: %v", d)
				}
			}
		}
	})
	t.Run("unrecoverable-fragment-loses-message", func(t *testing.T) {
		cfg := cfg
		cfg.DisableLEC = true
		cfg.NakRetries = 1
		drop := func(from, to ricochet.NodeID, p *ricochet.Packet) bool {
			// Fragment 15 never reaches node 2, not even retransmitted.
			return to == 2 && p.Kind == ricochet.KindData && p.Data.ID.Seq == 15
		}
		c := simNewCluster(t, seed, 3, cfg, FaultConfig{Delay: msec(0.1), Drop: drop})
		c.sim.SetGroup(1, simNodes(3))
		var ids []ricochet.PacketID
		for range 3 {
			ids = append(ids, c.send(1, 1, msg))
		}
		c.sim.Run(time.Second)
		if len(c.deliveries(2, ids[1])) != 0 || !c.isLost(2, ids[1]) && !c.isLost(2, ricochet.PacketID{Group: 1, Sender: 1, Seq: 15}) {
			t.Fatalf("message with an unrecoverable fragment: delivered %d, lost ranges %v", len(c.deliveries(2, ids[1])), c.lost[2])
		}
		c.mustDeliverOnce(2, ids[0])
		c.mustDeliverOnce(2, ids[2])
		c.mustDeliverOnce(3, ids[1])
		if c.stats(2).ReassemblyDropped != 1 {
			t.Fatalf("stats %+v", c.stats(2))
		}
	})
	t.Run("too-large", func(t *testing.T) {
		e := newTestEngine(t, cfg, 1, seed)
		e.SetGroup(1, []ricochet.NodeID{1, 2})
		if _, err := e.Send(SimEpoch, 1, make([]byte, cfg.MaxMessageSize+1)); err == nil {
			t.Fatal("no error for a message over MaxMessageSize")
		}
	})
}

// Partition then heal: what was sent while a node was cut off is
// recovered after the heal (its loss revealed by later packets and
// Sessions, then NAKed), each message exactly once.
func TestSimPartitionThenHeal(t *testing.T) {
	seed := testSeed(t, 28)
	c := simNewCluster(t, seed, 4, ricochet.DefaultConfig(), FaultConfig{Delay: msec(0.1), Jitter: msec(0.1)})
	c.sim.SetGroup(1, simNodes(4))
	var ids []ricochet.PacketID
	ids = append(ids, c.sendN(1, 1, 20, 200, msec(1))...)
	c.sim.Partition([]ricochet.NodeID{3})
	ids = append(ids, c.sendN(1, 1, 50, 200, msec(1))...)
	c.sim.Heal()
	c.sim.Run(msec(50))
	ids = append(ids, c.sendN(1, 1, 10, 200, msec(1))...)
	c.sim.Run(time.Second)
	for _, n := range []ricochet.NodeID{2, 3, 4} {
		for _, id := range ids {
			c.mustDeliverOnce(n, id)
		}
	}
	if st := c.stats(3); st.LossesDetected < 50 || st.Unrecoverable != 0 {
		t.Fatalf("node 3 stats %+v", st)
	}
	if c.sim.FaultStats().Partitioned == 0 {
		t.Fatal("nothing was partitioned")
	}
}

// Property: under random loss (i.i.d. and bursty), delay, reordering and
// duplication, every message reaches every receiver exactly once with the
// payload sent, or is reported unrecoverable there, never both.
func TestSimExactlyOnceProperty(t *testing.T) {
	skipUnderRace(t)
	rapid.Check(t, func(rt *rapid.T) {
		cfg := ricochet.DefaultConfig()
		cfg.R = rapid.IntRange(1, 12).Draw(rt, "R")
		cfg.C = rapid.IntRange(1, 5).Draw(rt, "C")
		cfg.BinsPerRegion = rapid.IntRange(1, 6).Draw(rt, "bins")
		cfg.StaggerShuffle = rapid.Bool().Draw(rt, "shuffle")
		cfg.DisableLEC = rapid.IntRange(0, 4).Draw(rt, "lec") == 0
		cfg.MaxPayload = rapid.SampledFrom([]int{64, 300, 1200}).Draw(rt, "maxPayload")
		cfg.RetransmitWindow = rapid.SampledFrom([]time.Duration{msec(5), 2 * time.Second}).Draw(rt, "rtxWindow")
		cfg.RetransmitBytes = rapid.SampledFrom([]int{cfg.MaxPayload + ricochet.RetransmitPacketOverhead, 64 << 20}).Draw(rt, "rtxBytes")
		cfg.NakRetries = rapid.IntRange(1, 4).Draw(rt, "nakRetries")
		// A loss at the tail of a stream is revealed only by a Session; on
		// this very lossy network several may be lost in a row, so repeat
		// them often enough for the drain time below.
		cfg.SessionRepeat = 50 * time.Millisecond
		faults := FaultConfig{
			Loss:         rapid.SampledFrom([]float64{0, 0.01, 0.05, 0.2}).Draw(rt, "loss"),
			Delay:        msec(0.1),
			Jitter:       time.Duration(rapid.IntRange(0, 2000).Draw(rt, "jitterUs")) * time.Microsecond,
			Reorder:      rapid.SampledFrom([]float64{0, 0.05}).Draw(rt, "reorder"),
			ReorderDelay: msec(3),
			Duplicate:    rapid.SampledFrom([]float64{0, 0.05}).Draw(rt, "dup"),
		}
		if rapid.Bool().Draw(rt, "burst") {
			faults.Burst = &GilbertElliott{PGoodBad: 0.01, PBadGood: 0.3, LossBad: 0.7}
		}
		spec := LoadSpec{
			Seed:            rapid.Uint64Range(1, 1<<40).Draw(rt, "seed"),
			Nodes:           rapid.IntRange(2, 7).Draw(rt, "nodes"),
			Groups:          rapid.IntRange(1, 4).Draw(rt, "groups"),
			SendersPerGroup: rapid.IntRange(1, 3).Draw(rt, "senders"),
			Rate:            rapid.SampledFrom([]float64{200, 3000}).Draw(rt, "rate"),
			Messages:        rapid.IntRange(1, 250).Draw(rt, "messages"),
			PayloadSize:     rapid.IntRange(1, 2000).Draw(rt, "payload"),
			Drain:           5 * time.Second,
			Faults:          faults,
			Config:          cfg,
		}
		spec.GroupSize = rapid.IntRange(2, spec.Nodes).Draw(rt, "groupSize")
		r, err := SimulateLoad(spec)
		if err != nil {
			rt.Fatal(err)
		}
		if r.Vanished != 0 || r.DuplicateDeliveries != 0 || r.DeliveredAndLost != 0 || r.Corrupt != 0 ||
			r.Delivered+r.ReportedLost != r.Expected {
			rt.Fatalf("exactly-once violated (seed %d):\n%v", spec.Seed, r)
		}
		if faults.Loss == 0 && faults.Burst == nil && r.ReportedLost != 0 {
			rt.Fatalf("losses reported on a lossless network:\n%v", r)
		}
	})
}

// The targets, asserted on seeded deterministic simulations (these
// are protocol properties, not timings: the clock is virtual).
func TestSimRecoveryTargets(t *testing.T) {
	skipUnderRace(t)
	seed := testSeed(t, 1)
	for _, sc := range TargetScenarios(seed) {
		t.Run(sc.Name, func(t *testing.T) {
			if testing.Short() && sc.Slow {
				t.Skip("slow scenario")
			}
			r, err := SimulateLoad(sc.Spec)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s\n%v", sc.Name, r)
			if r.Vanished != 0 || r.DuplicateDeliveries != 0 || r.DeliveredAndLost != 0 || r.Corrupt != 0 {
				t.Fatalf("exactly-once violated")
			}
			if r.Engine.Unrecoverable != 0 {
				t.Fatalf("%d packets unrecoverable, want 0", r.Engine.Unrecoverable)
			}
			if sc.Spec.Config.DisableLEC {
				return
			}
			if r.LECShare < sc.MinLECShare {
				t.Fatalf("LEC recovered %.2f%% of losses, want >= %.0f%%", 100*r.LECShare, 100*sc.MinLECShare)
			}
			if want := sc.Spec.Config.RepairOverhead(); r.RepairOverhead > want*sc.MaxOverheadFactor {
				t.Fatalf("repair overhead %.3f, want <= %.2f x C/R = %.3f", r.RepairOverhead, sc.MaxOverheadFactor, want*sc.MaxOverheadFactor)
			}
			if sc.Baseline == nil {
				return
			}
			b, err := SimulateLoad(*sc.Baseline)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("NAK-only baseline\n%v", b)
			if b.Vanished != 0 || b.Engine.Unrecoverable != 0 {
				t.Fatalf("baseline lost packets")
			}
			if r.E2ELEC.P50*5 > b.E2ENAK.P50 {
				t.Fatalf("LEC p50 %v is more than 1/5 of NAK-only p50 %v", r.E2ELEC.P50, b.E2ENAK.P50)
			}
			if r.DetectLEC.P50*5 > b.DetectNAK.P50 {
				t.Fatalf("LEC detect->recovery p50 %v is more than 1/5 of NAK-only %v", r.DetectLEC.P50, b.DetectNAK.P50)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}, {0, time.Millisecond}, {0.001, time.Millisecond}} {
		if got := Percentile(ds, tc.p); got != tc.want {
			t.Errorf("p%.3f = %v, want %v", tc.p, got, tc.want)
		}
	}
	if Percentile(nil, 0.5) != 0 {
		t.Error("empty percentile not 0")
	}
	if got := Percentile([]time.Duration{7}, 0.99); got != 7 {
		t.Errorf("single sample: %v", got)
	}
}

func TestLatencyStats(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i))
	}
	l := latencyStats(ds)
	if l.N != 100 || l.P50 != 50 || l.P90 != 90 || l.P99 != 99 || l.Max != 100 || l.Mean != 50 {
		t.Fatalf("%+v", l)
	}
	if (latencyStats(nil) != LatencyStats{}) {
		t.Fatal("empty")
	}
	if !bytes.Contains([]byte(l.String()), []byte("p50=50ns")) {
		t.Fatal(l.String())
	}
}

// Every run is a function of the seed.
func TestSimulationDeterministic(t *testing.T) {
	skipUnderRace(t)
	seed := testSeed(t, 14)
	spec := LoadSpec{Seed: seed, Nodes: 5, Groups: 3, GroupSize: 4, SendersPerGroup: 2, Messages: 600, PayloadSize: 1500,
		Faults: FaultConfig{Loss: 0.03, Delay: msec(0.1), Jitter: msec(0.2), Duplicate: 0.01}}
	a, err := SimulateLoad(spec)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := SimulateLoad(spec)
	if a.String() != b.String() || a.Engine != b.Engine {
		t.Fatalf("two runs of seed %d differ:\n%v\n%v", seed, a, b)
	}
	spec.Seed++
	c, _ := SimulateLoad(spec)
	if c.Engine == a.Engine {
		t.Fatal("different seeds gave identical runs")
	}
}
