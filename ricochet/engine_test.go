package ricochet

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConfigValidate(t *testing.T) {
	for name, c := range map[string]Config{"lan": DefaultLANConfig(), "wan": DefaultWANConfig(), "default": DefaultConfig()} {
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	mutations := map[string]func(*Config){
		"R=0":                   func(c *Config) { c.R = 0 },
		"R=256":                 func(c *Config) { c.R = 256 },
		"C=0":                   func(c *Config) { c.C = 0 },
		"Bins=0":                func(c *Config) { c.BinsPerRegion = 0 },
		"Flush=0":               func(c *Config) { c.FlushInterval = 0 },
		"NakTimeout=0":          func(c *Config) { c.NakTimeout = 0 },
		"NakRetries=0":          func(c *Config) { c.NakRetries = 0 },
		"NakRetries=101":        func(c *Config) { c.NakRetries = 101 },
		"NakRetryMax<Interval":  func(c *Config) { c.NakRetryMax = c.NakRetryInterval - 1 },
		"NakRetryInterval<0":    func(c *Config) { c.NakRetryInterval = -1 },
		"MaxNakSeqs=2000":       func(c *Config) { c.MaxNakSeqs = 2000 },
		"RetransmitWindow=0":    func(c *Config) { c.RetransmitWindow = 0 },
		"RetransmitBytes<1pkt":  func(c *Config) { c.RetransmitBytes = c.MaxPayload + RetransmitPacketOverhead - 1 },
		"MaxPayload=0":          func(c *Config) { c.MaxPayload = 0 },
		"MaxPayload=70000":      func(c *Config) { c.MaxPayload = 70000 },
		"MaxMessageSize=0":      func(c *Config) { c.MaxMessageSize = 0 },
		"ReassemblyTimeout=0":   func(c *Config) { c.ReassemblyTimeout = 0 },
		"MaxReassemblyBytes=1":  func(c *Config) { c.MaxReassemblyBytes = 1 },
		"SessionInterval=0":     func(c *Config) { c.SessionInterval = 0 },
		"SessionRepeat<Session": func(c *Config) { c.SessionRepeat = c.SessionInterval / 2 },
		"MaxHeldRepairs<0":      func(c *Config) { c.MaxHeldRepairs = -1 },
		"RepairExpiry=0":        func(c *Config) { c.RepairExpiry = 0 },
		"PayloadCache<0":        func(c *Config) { c.PayloadCache = -1 },
		"MaxGap=0":              func(c *Config) { c.MaxGap = 0 },
		"JoinWindow<0":          func(c *Config) { c.JoinWindow = -1 },
		"TickInterval=0":        func(c *Config) { c.TickInterval = 0 },
		"StreamLinger=0":        func(c *Config) { c.StreamLinger = 0 },
	}
	for name, mut := range mutations {
		c := DefaultConfig()
		mut(&c)
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: Validate() = %v, want ErrInvalidConfig", name, err)
		}
		if _, err := NewEngine(c, 1, rand.New(rand.NewPCG(1, 1))); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: NewEngine error = %v, want ErrInvalidConfig", name, err)
		}
	}
	if _, err := NewEngine(DefaultConfig(), 1, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("nil rng: %v", err)
	}
}

// The sender numbers packets 1, 2, 3 per (group, sender), multicasts them
// to the other members; a receiver delivers on receipt (no ordering) and
// suppresses duplicates.
func TestDirectDeliveryAndDuplicateSuppression(t *testing.T) {
	seed := engSeed(t, 1)
	a := engNew(t, DefaultConfig(), 1, seed)
	b := engNew(t, DefaultConfig(), 2, seed)
	for _, e := range []*Engine{a, b} {
		e.SetGroup(7, []NodeID{1, 2, 3})
	}
	var pkts []*Packet
	for i := range 3 {
		out, err := a.Send(engT0, 7, []byte{byte(i)})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Multicasts) != 1 || !slices.Equal(out.Multicasts[0].Members, []NodeID{2, 3}) {
			t.Fatalf("send %d: multicasts %+v, want one to [2 3]", i, out.Multicasts)
		}
		p := out.Multicasts[0].Packet
		if p.Data.ID != (PacketID{7, 1, uint64(i + 1)}) {
			t.Fatalf("send %d: id %v", i, p.Data.ID)
		}
		pkts = append(pkts, p)
	}
	// Out of order: 3 before 1 and 2 is delivered at once.
	for _, i := range []int{2, 0, 1} {
		out := b.Step(engT0, pkts[i])
		if len(out.Deliveries) != 1 {
			t.Fatalf("packet %d: %d deliveries", i+1, len(out.Deliveries))
		}
		d := out.Deliveries[0]
		if d.ID != pkts[i].Data.ID || d.Via != ViaDirect || !bytes.Equal(d.Payload, []byte{byte(i)}) || d.Fragments != 1 {
			t.Fatalf("packet %d: delivery %+v", i+1, d)
		}
		if i == 2 {
			continue // 1 and 2 now missing
		}
		if d.Latency != 0 {
			t.Fatalf("packet %d: latency %v for a packet that arrived at the time of detection", i+1, d.Latency)
		}
	}
	for _, p := range pkts {
		if out := b.Step(engT0.Add(engMs(1)), p); len(out.Deliveries) != 0 {
			t.Fatalf("duplicate %v delivered again", p.Data.ID)
		}
	}
	st := b.Stats()
	if st.Duplicates != 3 || st.DataReceived != 3 || st.MessagesDelivered != 3 {
		t.Fatalf("stats %+v", st)
	}
	if st.LateDirect != 2 || st.PendingMissing != 0 {
		t.Fatalf("late %d pending %d, want 2 0", st.LateDirect, st.PendingMissing)
	}
	// The delivered payload is the receiver's own copy.
	out := b.Step(engT0, engData(7, 3, 1, 4))
	out.Deliveries[0].Payload[0] ^= 0xff
	if _, err := a.Send(engT0, 9, nil); !errors.Is(err, ErrNotMember) {
		t.Fatalf("send to a group we are not in: %v", err)
	}
}

// Gaps in sequence numbers, and Sessions (tail loss), reveal losses; a
// missing packet not recovered within NakTimeout is NAKed to its sender.
func TestGapDetection(t *testing.T) {
	seed := engSeed(t, 2)
	cfg := DefaultConfig()
	b := engNew(t, cfg, 2, seed)
	b.SetGroup(1, []NodeID{1, 2})
	b.Step(engT0, engData(1, 1, 1, 10))
	b.Step(engT0, engData(1, 1, 4, 10)) // 2, 3 missing
	if st := b.Stats(); st.LossesDetected != 2 || st.PendingMissing != 2 {
		t.Fatalf("after a gap: %+v", st)
	}
	if n := engNaks(b.Tick(engT0.Add(cfg.NakTimeout - time.Microsecond))); len(n) != 0 {
		t.Fatalf("NAK before NakTimeout: %+v", n)
	}
	ns := engNaks(b.Tick(engT0.Add(cfg.NakTimeout)))
	if len(ns) != 1 || ns[0].Sender != 1 || ns[0].Group != 1 || !slices.Equal(ns[0].Seqs, []uint64{2, 3}) {
		t.Fatalf("NAKs %+v, want one for [2 3]", ns)
	}
	// Tail loss: a Session says 6 was sent; 5 and 6 are missing.
	b.Step(engT0, &Packet{Kind: KindSession, From: 1, Session: &Session{Group: 1, Sender: 1, LastSeq: 6}})
	if st := b.Stats(); st.LossesDetected != 4 {
		t.Fatalf("after session: detected %d, want 4", st.LossesDetected)
	}
	// A late packet reports how long it was missing.
	out := b.Step(engT0.Add(engMs(3)), engData(1, 1, 5, 10))
	if len(out.Deliveries) != 1 || out.Deliveries[0].Latency != engMs(3) || out.Deliveries[0].Via != ViaDirect {
		t.Fatalf("late delivery %+v", out.Deliveries)
	}
}

// The sender side of Sessions: once idle for SessionInterval after
// sending, and every SessionRepeat anyway.
func TestSessionsSentWhenIdle(t *testing.T) {
	seed := engSeed(t, 3)
	cfg := DefaultConfig()
	a := engNew(t, cfg, 1, seed)
	a.SetGroup(1, []NodeID{1, 2})
	sessions := func(o Output) []*Session {
		var s []*Session
		for _, m := range o.Multicasts {
			if m.Packet.Kind == KindSession {
				s = append(s, m.Packet.Session)
			}
		}
		return s
	}
	if s := sessions(a.Tick(engT0)); len(s) != 0 {
		t.Fatalf("session before any send: %+v", s)
	}
	now := engT0
	a.Send(now, 1, []byte("x"))
	a.Tick(now) // the first repeat announcement may go out at once
	a.Send(now, 1, []byte("y"))
	if s := sessions(a.Tick(now.Add(cfg.SessionInterval / 2))); len(s) != 0 {
		t.Fatalf("session while busy: %+v", s)
	}
	s := sessions(a.Tick(now.Add(cfg.SessionInterval)))
	if len(s) != 1 || s[0].LastSeq != 2 {
		t.Fatalf("idle session %+v, want LastSeq 2", s)
	}
	if s := sessions(a.Tick(now.Add(2 * cfg.SessionInterval))); len(s) != 0 {
		t.Fatalf("repeated idle session: %+v", s)
	}
	if s := sessions(a.Tick(now.Add(cfg.SessionInterval + cfg.SessionRepeat))); len(s) != 1 || s[0].LastSeq != 2 {
		t.Fatalf("periodic session %+v", s)
	}
}

// A repair missing exactly one packet recovers it at once by XOR.
func TestLECRecoversSingleLoss(t *testing.T) {
	seed := engSeed(t, 4)
	cfg := DefaultConfig()
	b := engNew(t, cfg, 2, seed)
	b.SetGroup(1, []NodeID{1, 2, 3})
	var ps []*Packet
	for seq := uint64(1); seq <= 8; seq++ {
		ps = append(ps, engData(1, 1, seq, 50+int(seq)*10)) // different lengths: padding
	}
	for i, p := range ps {
		if i != 2 && i != 7 { // lose 3 (detected by gap) and 8 (nothing reveals it)
			b.Step(engT0, p)
		}
	}
	out := b.Step(engT0.Add(engMs(2)), engRepair(3, ps[:4]...))
	if len(out.Deliveries) != 1 {
		t.Fatalf("deliveries %v", engIDs(out))
	}
	d := out.Deliveries[0]
	if d.ID != ps[2].Data.ID || d.Via != ViaLEC || d.Latency != engMs(2) || !bytes.Equal(d.Payload, ps[2].Data.Payload) {
		t.Fatalf("recovered %+v", d)
	}
	// 8 is named by a repair before anything revealed its loss: detected
	// and recovered in one step, latency 0.
	out = b.Step(engT0.Add(engMs(3)), engRepair(3, ps[4:]...))
	if len(out.Deliveries) != 1 || out.Deliveries[0].ID != ps[7].Data.ID || out.Deliveries[0].Latency != 0 ||
		!bytes.Equal(out.Deliveries[0].Payload, ps[7].Data.Payload) {
		t.Fatalf("tail recovery %+v", out.Deliveries)
	}
	if n := engNaks(b.Tick(engT0.Add(time.Second))); len(n) != 0 {
		t.Fatalf("NAKs after LEC recovered everything: %+v", n)
	}
	if st := b.Stats(); st.RecoveredLEC != 2 || st.LossesDetected != 2 || st.NaksSent != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// A repair naming no missing packet is dropped.
func TestRepairWithNothingMissingDropped(t *testing.T) {
	seed := engSeed(t, 5)
	b := engNew(t, DefaultConfig(), 2, seed)
	b.SetGroup(1, []NodeID{1, 2, 3})
	var ps []*Packet
	for seq := uint64(1); seq <= 4; seq++ {
		ps = append(ps, engData(1, 1, seq, 100))
		b.Step(engT0, ps[len(ps)-1])
	}
	out := b.Step(engT0, engRepair(3, ps...))
	if !out.Empty() {
		t.Fatalf("output for a useless repair: %+v", out)
	}
	if st := b.Stats(); st.RepairsUseless != 1 || st.RepairsHeld != 0 || st.RecoveredLEC != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// A repair missing two packets is held and retried as packets arrive or
// are recovered (iterative recovery), in either order.
func TestIterativeRecovery(t *testing.T) {
	seed := engSeed(t, 6)
	for _, order := range []string{"held-first", "resolver-first"} {
		t.Run(order, func(t *testing.T) {
			b := engNew(t, DefaultConfig(), 2, seed)
			b.SetGroup(1, []NodeID{1, 2, 3, 4})
			ps := map[uint64]*Packet{}
			for seq := uint64(1); seq <= 6; seq++ {
				ps[seq] = engData(1, 1, seq, 64)
			}
			for _, seq := range []uint64{1, 4, 5, 6} { // 2 and 3 lost
				b.Step(engT0, ps[seq])
			}
			wide := engRepair(3, ps[1], ps[2], ps[3], ps[4]) // misses 2 and 3
			narrow := engRepair(4, ps[3], ps[5], ps[6])      // misses 3 only
			var got []Delivery
			if order == "held-first" {
				out := b.Step(engT0.Add(engMs(1)), wide)
				if len(out.Deliveries) != 0 || b.Stats().PendingHeldRepairs != 1 {
					t.Fatalf("wide repair: %v held %d", engIDs(out), b.Stats().PendingHeldRepairs)
				}
				got = b.Step(engT0.Add(engMs(2)), narrow).Deliveries
			} else {
				got = b.Step(engT0.Add(engMs(1)), narrow).Deliveries
				got = append(got, b.Step(engT0.Add(engMs(2)), wide).Deliveries...)
			}
			if len(got) != 2 {
				t.Fatalf("recovered %d, want 2 (%+v)", len(got), got)
			}
			for _, d := range got {
				if d.Via != ViaLEC || !bytes.Equal(d.Payload, ps[d.ID.Seq].Data.Payload) {
					t.Fatalf("bad recovery %+v", d)
				}
			}
			if st := b.Stats(); st.RecoveredLEC != 2 || st.PendingHeldRepairs != 0 || st.PendingMissing != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// Held repairs are bounded (MaxHeldRepairs) and expire (RepairExpiry).
func TestHeldRepairsBounded(t *testing.T) {
	seed := engSeed(t, 7)
	cfg := DefaultConfig()
	cfg.MaxHeldRepairs = 3
	b := engNew(t, cfg, 2, seed)
	b.SetGroup(1, []NodeID{1, 2, 3})
	for i := range 10 { // each repair names two unknown packets
		s := uint64(2*i + 1)
		b.Step(engT0, engRepair(3, engData(1, 1, s, 10), engData(1, 1, s+1, 10)))
	}
	if st := b.Stats(); st.PendingHeldRepairs != 3 || st.RepairsExpired != 7 {
		t.Fatalf("held %d expired %d, want 3 and 7", st.PendingHeldRepairs, st.RepairsExpired)
	}
	b.Tick(engT0.Add(cfg.RepairExpiry))
	if st := b.Stats(); st.PendingHeldRepairs != 0 || st.RepairsExpired != 10 {
		t.Fatalf("after expiry: held %d expired %d", st.PendingHeldRepairs, st.RepairsExpired)
	}
}

// The sender answers a NAK from its buffer (unicast retransmission) and
// with a NakMiss for what the buffer no longer holds; the receiver reports
// those as unrecoverable.
func TestNakAnsweredFromBufferOrNakMiss(t *testing.T) {
	seed := engSeed(t, 8)
	cfg := DefaultConfig()
	cfg.MaxPayload, cfg.MaxMessageSize = 16, 16
	cfg.RetransmitBytes = 4 * (1 + RetransmitPacketOverhead) // four 1-byte packets
	a := engNew(t, cfg, 1, seed)
	b := engNew(t, cfg, 2, seed)
	a.SetGroup(1, []NodeID{1, 2})
	b.SetGroup(1, []NodeID{1, 2})
	var ps []*Packet
	for i := range 10 {
		out, _ := a.Send(engT0, 1, []byte{byte(i)})
		ps = append(ps, out.Multicasts[0].Packet)
	}
	b.Step(engT0, ps[0])
	b.Step(engT0, ps[9]) // 2..9 missing; a still has 7..10
	out := b.Tick(engT0.Add(cfg.NakTimeout))
	ns := engNaks(out)
	if len(ns) != 1 || len(ns[0].Seqs) != 8 {
		t.Fatalf("NAKs %+v", ns)
	}
	ans := a.Step(engT0.Add(cfg.NakTimeout), out.Unicasts[0].Packet)
	var retrans []uint64
	var miss []uint64
	for _, u := range ans.Unicasts {
		if u.To != 2 {
			t.Fatalf("answer to %d", u.To)
		}
		switch u.Packet.Kind {
		case KindData:
			if !u.Packet.Data.Retransmit {
				t.Fatal("retransmission not flagged")
			}
			retrans = append(retrans, u.Packet.Data.ID.Seq)
		case KindNakMiss:
			miss = append(miss, u.Packet.NakMiss.Seqs...)
		}
	}
	if !slices.Equal(retrans, []uint64{7, 8, 9}) || !slices.Equal(miss, []uint64{2, 3, 4, 5, 6}) {
		t.Fatalf("retransmitted %v, missed %v", retrans, miss)
	}
	var delivered []Delivery
	var lost []PacketRange
	for _, u := range ans.Unicasts {
		o := b.Step(engT0.Add(cfg.NakTimeout+engMs(1)), u.Packet)
		delivered = append(delivered, o.Deliveries...)
		lost = append(lost, o.Unrecoverable...)
	}
	if len(delivered) != 3 || delivered[0].Via != ViaNAK || delivered[0].Latency != cfg.NakTimeout+engMs(1) {
		t.Fatalf("delivered %+v", delivered)
	}
	if len(lost) != 1 || lost[0] != (PacketRange{Group: 1, Sender: 1, First: 2, Last: 6}) {
		t.Fatalf("unrecoverable %+v", lost)
	}
	st := b.Stats()
	if st.Unrecoverable != 5 || st.RecoveredNAK != 3 || st.NakMissReceived != 5 || st.PendingMissing != 0 {
		t.Fatalf("receiver stats %+v", st)
	}
	if st := a.Stats(); st.Retransmissions != 3 || st.NakMissSent != 1 {
		t.Fatalf("sender stats %+v", st)
	}
}

// A NAK retried NakRetries times without answer ends as unrecoverable.
func TestNakRetriesRunOut(t *testing.T) {
	seed := engSeed(t, 9)
	cfg := DefaultConfig()
	b := engNew(t, cfg, 2, seed)
	b.SetGroup(1, []NodeID{1, 2})
	b.Step(engT0, engData(1, 1, 2, 10)) // 1 missing
	var nakAt []time.Duration
	var lost []PacketRange
	var lostAt time.Duration
	now := engT0
	for range 1000 { // 1 s, one tick per ms
		out := b.Tick(now)
		for range engNaks(out) {
			nakAt = append(nakAt, now.Sub(engT0))
		}
		if len(out.Unrecoverable) > 0 {
			lostAt = now.Sub(engT0)
		}
		lost = append(lost, out.Unrecoverable...)
		now = now.Add(time.Millisecond)
	}
	// NakTimeout, then waits of NakRetryInterval doubling after each NAK
	// up to NakRetryMax.
	want := []time.Duration{engMs(20), engMs(40), engMs(80), engMs(160), engMs(320), engMs(480)}
	if !slices.Equal(nakAt, want) || len(nakAt) != cfg.NakRetries {
		t.Fatalf("NAKs at %v, want %v", nakAt, want)
	}
	if len(lost) != 1 || lost[0] != (PacketRange{1, 1, 1, 1}) || lostAt != engMs(640) {
		t.Fatalf("unrecoverable %+v at %v, want seq 1 at 640ms", lost, lostAt)
	}
	// A late retransmission of a packet given up on is not delivered.
	if out := b.Step(now, engData(1, 1, 1, 10)); len(out.Deliveries) != 0 {
		t.Fatal("delivered a packet already reported unrecoverable")
	}
}

// MaxGap bounds the state of one stream: a jump far ahead gives up the
// oldest part at once, as one range.
func TestMaxGapBoundsState(t *testing.T) {
	seed := engSeed(t, 10)
	cfg := DefaultConfig()
	cfg.MaxGap = 100
	b := engNew(t, cfg, 2, seed)
	b.SetGroup(1, []NodeID{1, 2})
	b.Step(engT0, engData(1, 1, 1, 10))
	b.Step(engT0, engData(1, 1, 50, 10))                                  // 2..49 missing
	out := b.Step(engT0, engData(1, 1, 1_000_000_000, 10))                // far ahead
	want := []PacketRange{{1, 1, 2, 49}, {1, 1, 51, 1_000_000_000 - 100}} // 50 was received
	if !slices.Equal(out.Unrecoverable, want) {
		t.Fatalf("unrecoverable %+v, want %+v", out.Unrecoverable, want)
	}
	if st := b.Stats(); st.PendingMissing != 99 {
		t.Fatalf("pending %d, want 99", st.PendingMissing)
	}
}

// First contact with a stream: a short history is recovered, a long one is
// taken as predating this node (JoinWindow).
func TestJoinWindow(t *testing.T) {
	seed := engSeed(t, 11)
	cfg := DefaultConfig()
	cfg.JoinWindow = 10
	b := engNew(t, cfg, 2, seed)
	b.SetGroup(1, []NodeID{1, 2, 3})
	b.Step(engT0, engData(1, 1, 5, 10))
	b.Step(engT0, engData(1, 3, 500, 10))
	st := b.Stats()
	if st.LossesDetected != 4 || st.JoinSkipped != 499 {
		t.Fatalf("detected %d skipped %d, want 4 and 499", st.LossesDetected, st.JoinSkipped)
	}
}

// Membership: a node not in members leaves the group; regions follow.
func TestSetGroupMembership(t *testing.T) {
	seed := engSeed(t, 12)
	e := engNew(t, DefaultConfig(), 1, seed)
	e.SetGroup(1, []NodeID{3, 1, 2, 2})
	e.SetGroup(2, []NodeID{1, 3, 4})
	if !slices.Equal(e.Groups(), []GroupID{1, 2}) {
		t.Fatalf("groups %v", e.Groups())
	}
	e.SetGroup(2, []NodeID{3, 4})
	if !slices.Equal(e.Groups(), []GroupID{1}) {
		t.Fatalf("groups after SetGroup without self: %v", e.Groups())
	}
	if _, err := e.Send(engT0, 2, nil); !errors.Is(err, ErrNotMember) {
		t.Fatalf("send after leaving: %v", err)
	}
	e.RemoveGroup(1)
	if len(e.Groups()) != 0 || len(e.Regions()) != 0 {
		t.Fatalf("groups %v regions %v", e.Groups(), e.Regions())
	}
	// Data for a group we are not in is dropped and counted.
	e.Step(engT0, engData(1, 2, 1, 10))
	if e.Stats().DroppedNotMember != 1 {
		t.Fatal("DroppedNotMember not counted")
	}
}

// Malformed packets are counted and ignored, never a panic.
func TestMalformedPacketsIgnored(t *testing.T) {
	seed := engSeed(t, 13)
	e := engNew(t, DefaultConfig(), 2, seed)
	e.SetGroup(1, []NodeID{1, 2})
	bad := []*Packet{
		{Kind: KindData},
		{Kind: KindData, Data: &Data{ID: PacketID{1, 1, 0}, FragCount: 1}},
		{Kind: KindData, Data: &Data{ID: PacketID{1, 1, 1}, FragCount: 0}},
		{Kind: KindData, Data: &Data{ID: PacketID{1, 1, 1}, FragIndex: 3, FragCount: 4}},
		{Kind: KindRepair, Repair: &Repair{}},
		{Kind: KindRepair, Repair: &Repair{Entries: []RepairEntry{{ID: PacketID{1, 1, 1}, FragCount: 1, Length: 9}}, XOR: []byte{1}}},
		{Kind: Kind(99)},
	}
	for _, p := range bad {
		if out := e.Step(engT0, p); len(out.Deliveries) != 0 {
			t.Fatalf("delivered from malformed %+v", p)
		}
	}
	if got := e.Stats().Malformed; got != uint64(len(bad)) {
		t.Fatalf("malformed %d, want %d", got, len(bad))
	}
	e.Step(engT0, nil)
}

// Reassembly memory is bounded: partial messages beyond MaxReassemblyBytes
// (oldest first) and older than ReassemblyTimeout are dropped, and their
// missing fragments reported unrecoverable so the message is accounted for.
func TestReassemblyBounded(t *testing.T) {
	seed := engSeed(t, 15)
	cfg := DefaultConfig()
	cfg.MaxPayload = 10
	cfg.MaxReassemblyBytes = 100
	cfg.MaxMessageSize = 1000
	b := engNew(t, cfg, 2, seed)
	b.SetGroup(1, []NodeID{1, 2})
	frag := func(first uint64, idx uint16) *Packet {
		id := PacketID{1, 1, first + uint64(idx)}
		return &Packet{Kind: KindData, From: 1, Data: &Data{ID: id, FragIndex: idx, FragCount: 5, Payload: engPayload(id, 10)}}
	}
	var lost []PacketRange
	for m := range uint64(12) { // message m: seqs 5m+1..5m+5; only fragment 0 arrives
		out := b.Step(engT0, frag(5*m+1, 0))
		lost = append(lost, out.Unrecoverable...)
	}
	// 12 x 10 bytes > 100: the two oldest messages were dropped.
	if want := []PacketRange{{1, 1, 2, 5}, {1, 1, 7, 10}}; !slices.Equal(lost, want) {
		t.Fatalf("unrecoverable %v, want %v", lost, want)
	}
	if st := b.Stats(); st.ReassemblyDropped != 2 {
		t.Fatalf("dropped %d", st.ReassemblyDropped)
	}
	// Completing the newest message (seqs 56..60) delivers it whole; the
	// fragments it adds first push the three oldest partial messages out.
	var got []Delivery
	lost = nil
	for idx := uint16(1); idx < 5; idx++ {
		out := b.Step(engT0, frag(56, idx))
		got = append(got, out.Deliveries...)
		lost = append(lost, out.Unrecoverable...)
	}
	if len(got) != 1 || got[0].ID.Seq != 56 || got[0].Fragments != 5 || len(got[0].Payload) != 50 {
		t.Fatalf("deliveries %+v", got)
	}
	if len(lost) != 3 || b.Stats().ReassemblyDropped != 5 {
		t.Fatalf("unrecoverable %v, dropped %d", lost, b.Stats().ReassemblyDropped)
	}
	// The other six time out.
	out := b.Tick(engT0.Add(cfg.ReassemblyTimeout))
	if st := b.Stats(); st.ReassemblyDropped != 11 || len(out.Unrecoverable) != 6 || st.PendingMissing != 0 {
		t.Fatalf("after timeout: dropped %d, ranges %v, pending %d", st.ReassemblyDropped, out.Unrecoverable, st.PendingMissing)
	}
	// A late fragment of a dropped message is not delivered.
	for idx := uint16(1); idx < 5; idx++ {
		if out := b.Step(engT0.Add(cfg.ReassemblyTimeout), frag(1, idx)); len(out.Deliveries) != 0 {
			t.Fatal("delivered a dropped message")
		}
	}
}

// Packets are accepted only from group members; a member that left is
// remembered for StreamLinger, so its late duplicates are not delivered
// again, then forgotten.
func TestDepartedSenderRemembered(t *testing.T) {
	seed := engSeed(t, 16)
	cfg := DefaultConfig()
	b := engNew(t, cfg, 2, seed)
	b.SetGroup(1, []NodeID{1, 2, 3})
	if out := b.Step(engT0, engData(1, 4, 1, 10)); len(out.Deliveries) != 0 || b.Stats().DroppedNotMember != 1 {
		t.Fatal("accepted data from a non-member")
	}
	p := engData(1, 3, 1, 10)
	if out := b.Step(engT0, p); len(out.Deliveries) != 1 {
		t.Fatal("member's packet not delivered")
	}
	b.SetGroup(1, []NodeID{1, 2}) // 3 leaves
	b.Tick(engT0.Add(time.Second))
	if out := b.Step(engT0.Add(time.Second), p); len(out.Deliveries) != 0 || b.Stats().Duplicates != 1 {
		t.Fatal("late duplicate from a departed member delivered again")
	}
	if out := b.Step(engT0.Add(time.Second), engData(1, 3, 2, 10)); len(out.Deliveries) != 1 {
		t.Fatal("in-flight packet of a departed member refused while remembered")
	}
	later := engT0.Add(time.Second + cfg.StreamLinger)
	b.Tick(later)
	if out := b.Step(later, p); len(out.Deliveries) != 0 {
		t.Fatal("packet of a forgotten former member delivered")
	}
	if b.Stats().DroppedNotMember != 2 {
		t.Fatalf("stats %+v", b.Stats())
	}
}

// Regions: the members sharing exactly the same groups with a node.
func TestRegionsComputed(t *testing.T) {
	seed := engSeed(t, 23)
	e := engNew(t, DefaultConfig(), 1, seed)
	e.SetGroup(10, []NodeID{1, 2, 3, 5})
	e.SetGroup(20, []NodeID{1, 3, 4, 5})
	e.SetGroup(30, []NodeID{2, 6}) // not a member: no effect
	got := e.Regions()
	want := [][]NodeID{{3, 5}, {2}, {4}} // key order: "10,20", "10", "20"
	slices.SortFunc(got, func(a, b []NodeID) int { return int(a[0]) - int(b[0]) })
	slices.SortFunc(want, func(a, b []NodeID) int { return int(a[0]) - int(b[0]) })
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("regions %v, want %v", got, want)
	}
	// Two groups with the same members form one region.
	e2 := engNew(t, DefaultConfig(), 1, seed)
	e2.SetGroup(1, []NodeID{1, 2, 3})
	e2.SetGroup(2, []NodeID{1, 2, 3})
	if r := e2.Regions(); len(r) != 1 || !slices.Equal(r[0], []NodeID{2, 3}) {
		t.Fatalf("regions %v", r)
	}
}
