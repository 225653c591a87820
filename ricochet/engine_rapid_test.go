package ricochet

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// checkInvariants verifies the engine's internal invariants (see stream and
// Engine doc comments).
func checkInvariants(e *Engine) error {
	pending := 0
	for k, st := range e.streams {
		if st.base > st.highest {
			return fmt.Errorf("%v: base %d > highest %d", k, st.base, st.highest)
		}
		if st.highest-st.base > uint64(e.cfg.MaxGap) {
			return fmt.Errorf("%v: window %d > MaxGap", k, st.highest-st.base)
		}
		for seq := range st.done {
			if seq <= st.base || seq > st.highest {
				return fmt.Errorf("%v: done seq %d outside (%d, %d]", k, seq, st.base, st.highest)
			}
			if _, ok := st.missing[seq]; ok {
				return fmt.Errorf("%v: seq %d both done and missing", k, seq)
			}
		}
		for seq := range st.missing {
			if seq <= st.base || seq > st.highest {
				return fmt.Errorf("%v: missing seq %d outside (%d, %d]", k, seq, st.base, st.highest)
			}
		}
		if n := uint64(len(st.done) + len(st.missing)); n != st.highest-st.base {
			return fmt.Errorf("%v: %d done+missing for a window of %d", k, n, st.highest-st.base)
		}
		_, lossy := e.lossy[st]
		if lossy != (len(st.missing) > 0) {
			return fmt.Errorf("%v: in lossy set %v with %d missing", k, lossy, len(st.missing))
		}
		pending += len(st.missing)
	}
	if e.held.live < 0 || (e.held.live > e.cfg.MaxHeldRepairs) {
		return fmt.Errorf("held repairs %d (max %d)", e.held.live, e.cfg.MaxHeldRepairs)
	}
	if e.partials.bytes < 0 || e.partials.bytes > e.cfg.MaxReassemblyBytes+e.cfg.MaxPayload {
		return fmt.Errorf("reassembly bytes %d", e.partials.bytes)
	}
	if len(e.cache.m) > e.cfg.PayloadCache {
		return fmt.Errorf("cache %d entries", len(e.cache.m))
	}
	return nil
}

// Arbitrary (well-typed, possibly nonsensical) packets and ticks never
// panic the engine, keep its invariants, and never report a message twice
// or both delivered and unrecoverable.
func TestEngineArbitraryInput(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		cfg := DefaultConfig()
		cfg.R = rapid.IntRange(1, 6).Draw(rt, "R")
		cfg.MaxGap = rapid.IntRange(1, 64).Draw(rt, "maxGap")
		cfg.JoinWindow = rapid.IntRange(0, 64).Draw(rt, "joinWindow")
		cfg.MaxHeldRepairs = rapid.IntRange(0, 8).Draw(rt, "maxHeld")
		cfg.PayloadCache = rapid.IntRange(0, 32).Draw(rt, "cache")
		cfg.MaxPayload = 16
		cfg.MaxMessageSize = 1000
		cfg.MaxReassemblyBytes = rapid.IntRange(16, 200).Draw(rt, "reasm")
		e, err := NewEngine(cfg, 1, rand.New(rand.NewPCG(rapid.Uint64().Draw(rt, "seed"), 1)))
		if err != nil {
			rt.Fatal(err)
		}
		e.SetGroup(1, []NodeID{1, 2, 3, 4})
		e.SetGroup(2, []NodeID{1, 3})
		seqGen := rapid.OneOf(rapid.Uint64Range(0, 40), rapid.Uint64Range(0, 1<<62))
		idGen := rapid.Custom(func(t *rapid.T) PacketID {
			return PacketID{Group: GroupID(rapid.IntRange(1, 3).Draw(t, "g")), Sender: NodeID(rapid.IntRange(1, 4).Draw(t, "s")), Seq: seqGen.Draw(t, "seq")}
		})
		payloadGen := rapid.SliceOfN(rapid.Byte(), 0, 16)
		now := engT0
		delivered := map[PacketID]bool{}
		lostSeq := map[PacketID]bool{}
		record := func(o Output) {
			for _, d := range o.Deliveries {
				if delivered[d.ID] {
					rt.Fatalf("%v delivered twice", d.ID)
				}
				delivered[d.ID] = true
			}
			for _, r := range o.Unrecoverable {
				if r.Last-r.First > 1<<20 {
					continue // a MaxGap give-up of a huge range: too big to enumerate
				}
				for s := r.First; s <= r.Last; s++ {
					id := PacketID{r.Group, r.Sender, s}
					if lostSeq[id] {
						rt.Fatalf("%v reported unrecoverable twice", id)
					}
					lostSeq[id] = true
				}
			}
		}
		steps := rapid.IntRange(1, 120).Draw(rt, "steps")
		for range steps {
			var out Output
			switch rapid.IntRange(0, 6).Draw(rt, "op") {
			case 0, 1:
				id := idGen.Draw(rt, "id")
				cnt := uint16(rapid.IntRange(1, 4).Draw(rt, "fragCount"))
				idx := uint16(rapid.IntRange(0, int(cnt)).Draw(rt, "fragIndex"))
				out = e.Step(now, &Packet{Kind: KindData, From: id.Sender, Data: &Data{ID: id, FragIndex: idx, FragCount: cnt,
					Retransmit: rapid.Bool().Draw(rt, "rtx"), Payload: payloadGen.Draw(rt, "payload")}})
			case 2:
				n := rapid.IntRange(0, 5).Draw(rt, "entries")
				r := &Repair{XOR: payloadGen.Draw(rt, "xor")}
				for range n {
					cnt := uint16(rapid.IntRange(1, 3).Draw(rt, "fragCount"))
					r.Entries = append(r.Entries, RepairEntry{ID: idGen.Draw(rt, "id"), FragCount: cnt,
						FragIndex: uint16(rapid.IntRange(0, int(cnt)-1).Draw(rt, "fragIndex")), Length: uint32(rapid.IntRange(0, 17).Draw(rt, "len"))})
				}
				out = e.Step(now, &Packet{Kind: KindRepair, From: 2, Repair: r})
			case 3:
				id := idGen.Draw(rt, "id")
				out = e.Step(now, &Packet{Kind: KindSession, From: id.Sender, Session: &Session{Group: id.Group, Sender: id.Sender, LastSeq: id.Seq}})
			case 4:
				id := idGen.Draw(rt, "id")
				out = e.Step(now, &Packet{Kind: KindNakMiss, From: id.Sender, NakMiss: &NakMiss{Group: id.Group, Sender: id.Sender, Seqs: []uint64{id.Seq, id.Seq + 1}}})
			case 5:
				out, _ = e.Send(now, GroupID(rapid.IntRange(1, 3).Draw(rt, "g")), make([]byte, rapid.IntRange(0, 60).Draw(rt, "size")))
				id := idGen.Draw(rt, "id")
				e.Step(now, &Packet{Kind: KindNak, From: 2, Nak: &Nak{Group: id.Group, Sender: 1, Seqs: []uint64{id.Seq}}})
			case 6:
				now = now.Add(time.Duration(rapid.IntRange(0, 3000).Draw(rt, "advanceMs")) * time.Millisecond)
				out = e.Tick(now)
			}
			record(out)
			if err := checkInvariants(e); err != nil {
				rt.Fatal(err)
			}
		}
		for id := range delivered {
			if lostSeq[id] {
				rt.Fatalf("%v both delivered and reported unrecoverable", id)
			}
		}
	})
}
