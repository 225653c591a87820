package ricochet

import (
	"slices"
	"testing"
	"time"
)

// rtxAnswer splits a sender's answer to a NAK into retransmitted seqs and
// seqs reported gone (NakMiss).
func rtxAnswer(t *testing.T, out Output) (retrans, miss []uint64) {
	t.Helper()
	for _, u := range out.Unicasts {
		switch u.Packet.Kind {
		case KindData:
			if !u.Packet.Data.Retransmit {
				t.Fatalf("answer to a NAK not flagged as a retransmission: %+v", u.Packet.Data.ID)
			}
			retrans = append(retrans, u.Packet.Data.ID.Seq)
		case KindNakMiss:
			miss = append(miss, u.Packet.NakMiss.Seqs...)
		}
	}
	return retrans, miss
}

// A receiver that stalls (GC, scheduler, a loaded machine: these pause
// 30-110 ms now and then) NAKs late, while the sender keeps sending at a
// high rate. With the default configuration the sender must still hold the
// NAKed packet: the retransmission buffer is sized by time (and bytes), not
// by a count of packets that 15,000 packets/s overrun in 70 ms.
func TestRetransmitBufferSurvivesStall(t *testing.T) {
	seed := engSeed(t, 41)
	cfg := DefaultConfig()
	a := engNew(t, cfg, 1, seed)
	b := engNew(t, cfg, 2, seed)
	a.SetGroup(1, []NodeID{1, 2})
	b.SetGroup(1, []NodeID{1, 2})
	const rate = 15000 // packets/s
	gap := time.Second / rate
	payload := make([]byte, 1024)
	var ps []*Packet
	now := engT0
	send := func() {
		out, err := a.Send(now, 1, payload)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, out.Multicasts[0].Packet)
		a.Tick(now)
		now = now.Add(gap)
	}
	// Packet 5 is lost on the way to b; b gets 1..4, then stalls 100 ms
	// while the sender goes on.
	for range 5 {
		send()
	}
	for _, p := range ps[:4] {
		b.Step(engT0, p)
	}
	stall := 100 * time.Millisecond
	for now.Sub(engT0) < stall {
		send()
	}
	// b wakes up, reads what queued up meanwhile (6..), sees the gap, and
	// NAKs after NakTimeout; the sender has sent for another NakTimeout.
	for _, p := range ps[5:] {
		b.Step(now, p)
	}
	nakAt := now.Add(cfg.NakTimeout)
	for now.Before(nakAt) {
		send()
	}
	out := b.Tick(now)
	ns := engNaks(out)
	if len(ns) != 1 || !slices.Equal(ns[0].Seqs, []uint64{5}) {
		t.Fatalf("NAKs %+v, want one for seq 5", ns)
	}
	retrans, miss := rtxAnswer(t, a.Step(now, out.Unicasts[0].Packet))
	if !slices.Equal(retrans, []uint64{5}) || len(miss) != 0 {
		t.Fatalf("after a %v stall at %d packets/s (%d packets sent since seq 5): retransmitted %v, NakMiss %v; want seq 5 retransmitted",
			stall, rate, len(ps)-5, retrans, miss)
	}
	if st := a.Stats(); st.NakMissSent != 0 {
		t.Fatalf("sender stats %+v", st)
	}
}

// Kept packets leave the buffer once older than RetransmitWindow (on Send
// or Tick), oldest first.
func TestRetransmitWindowExpires(t *testing.T) {
	seed := engSeed(t, 42)
	cfg := DefaultConfig()
	cfg.RetransmitWindow = 50 * time.Millisecond
	a := engNew(t, cfg, 1, seed)
	a.SetGroup(1, []NodeID{1, 2})
	for i := range 10 { // seqs 1..10 at 0, 10, ..., 90 ms
		if _, err := a.Send(engT0.Add(time.Duration(i)*10*time.Millisecond), 1, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	now := engT0.Add(95 * time.Millisecond)
	a.Tick(now) // seqs sent before 45 ms (1..5) are gone
	if got := a.Stats().RetransmitHeld; got != 5 {
		t.Fatalf("held %d packets, want 5", got)
	}
	nak := &Packet{Kind: KindNak, From: 2, Nak: &Nak{Group: 1, Sender: 1, Seqs: []uint64{4, 5, 6, 10, 11}}}
	retrans, miss := rtxAnswer(t, a.Step(now, nak))
	// 11 was never sent: neither retransmitted nor reported gone.
	if !slices.Equal(retrans, []uint64{6, 10}) || !slices.Equal(miss, []uint64{4, 5}) {
		t.Fatalf("retransmitted %v, missed %v", retrans, miss)
	}
	if st := a.Stats(); st.NakMisses != 2 || st.NakMissSent != 1 || st.Retransmissions != 2 {
		t.Fatalf("stats %+v", st)
	}
	a.Tick(now.Add(time.Second))
	if got := a.Stats().RetransmitHeld; got != 0 {
		t.Fatalf("held %d packets after the window, want 0", got)
	}
	// The stream goes on where it was; the buffer refills.
	out, _ := a.Send(now.Add(time.Second), 1, []byte("x"))
	if seq := out.Multicasts[0].Packet.Data.ID.Seq; seq != 11 {
		t.Fatalf("next seq %d", seq)
	}
	retrans, miss = rtxAnswer(t, a.Step(now.Add(time.Second), nak))
	if !slices.Equal(retrans, []uint64{11}) || !slices.Equal(miss, []uint64{4, 5, 6, 10}) {
		t.Fatalf("after refill: retransmitted %v, missed %v", retrans, miss)
	}
}

// RetransmitBytes caps the buffer of all groups together: sending over the
// cap drops the oldest packets of any group, even within the window.
func TestRetransmitBytesCapAcrossGroups(t *testing.T) {
	seed := engSeed(t, 43)
	cfg := DefaultConfig()
	cfg.MaxPayload = 100
	cfg.RetransmitBytes = 5 * (100 + RetransmitPacketOverhead) // five full packets
	a := engNew(t, cfg, 1, seed)
	a.SetGroup(1, []NodeID{1, 2})
	a.SetGroup(2, []NodeID{1, 2})
	p := make([]byte, 100)
	// g1#1, g2#1, g1#2, g2#2, g1#3, g2#3, g1#4: the first two are pushed out.
	for i := range 7 {
		if _, err := a.Send(engT0, GroupID(1+i%2), p); err != nil {
			t.Fatal(err)
		}
	}
	if got := a.Stats().RetransmitHeld; got != 5 {
		t.Fatalf("held %d, want 5", got)
	}
	// (g2#4 was never sent: not reported gone.)
	for g, want := range map[GroupID][2][]uint64{1: {{2, 3, 4}, {1}}, 2: {{2, 3}, {1}}} {
		nak := &Packet{Kind: KindNak, From: 2, Nak: &Nak{Group: g, Sender: 1, Seqs: []uint64{1, 2, 3, 4}}}
		retrans, miss := rtxAnswer(t, a.Step(engT0, nak))
		if !slices.Equal(retrans, want[0]) || !slices.Equal(miss, want[1]) {
			t.Fatalf("group %d: retransmitted %v, missed %v; want %v, %v", g, retrans, miss, want[0], want[1])
		}
	}
	// A fragmented message larger than the cap keeps only its newest fragments.
	if _, err := a.Send(engT0, 1, make([]byte, 700)); err != nil { // g1#5..#11
		t.Fatal(err)
	}
	nak := &Packet{Kind: KindNak, From: 2, Nak: &Nak{Group: 1, Sender: 1, Seqs: []uint64{4, 5, 6, 7, 8, 9, 10, 11}}}
	retrans, miss := rtxAnswer(t, a.Step(engT0, nak))
	if !slices.Equal(retrans, []uint64{7, 8, 9, 10, 11}) || !slices.Equal(miss, []uint64{4, 5, 6}) {
		t.Fatalf("fragments: retransmitted %v, missed %v", retrans, miss)
	}
}
