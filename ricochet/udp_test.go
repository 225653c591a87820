package ricochet

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// These tests use real UDP sockets on 127.0.0.1 (ephemeral ports). The
// multicast test additionally needs the loopback interface to carry IP
// multicast; see TestUDPMulticastLoopback.

const udpWait = 3 * time.Second

// newUDPCluster starts n loopback transports (IDs 1..n) that know each
// other's addresses. mod may adjust each config before start.
func newUDPCluster(t *testing.T, n int, mod func(*UDPConfig)) []*UDPTransport {
	t.Helper()
	ts := make([]*UDPTransport, n)
	for i := range ts {
		cfg := LoopbackUDPConfig(NodeID(i+1), testKey1)
		if mod != nil {
			mod(&cfg)
		}
		tr, err := NewUDPTransport(cfg)
		if err != nil {
			for _, o := range ts[:i] {
				o.Close()
			}
			t.Fatalf("NewUDPTransport(%d): %v", i+1, err)
		}
		ts[i] = tr
	}
	t.Cleanup(func() {
		for _, tr := range ts {
			tr.Close()
		}
	})
	for _, a := range ts {
		for j, b := range ts {
			if err := a.SetPeer(NodeID(j+1), b.LocalAddr()); err != nil {
				t.Fatal(err)
			}
		}
	}
	return ts
}

func dataPacket(from NodeID, g GroupID, seq uint64, payload string) *Packet {
	return &Packet{Kind: KindData, From: from, Data: &Data{ID: PacketID{Group: g, Sender: from, Seq: seq}, FragCount: 1, Payload: []byte(payload)}}
}

// recvN collects n packets from tr or fails after udpWait.
func recvN(t *testing.T, tr *UDPTransport, n int) []*Packet {
	t.Helper()
	var out []*Packet
	deadline := time.After(udpWait)
	for len(out) < n {
		select {
		case in, ok := <-tr.Inbound():
			if !ok {
				t.Fatalf("inbound closed after %d of %d packets", len(out), n)
			}
			if in.At.IsZero() {
				t.Fatal("inbound packet without arrival time")
			}
			out = append(out, in.Packet)
		case <-deadline:
			t.Fatalf("node %d: got %d of %d packets in %v; stats %+v", tr.cfg.Self, len(out), n, udpWait, tr.Stats())
		}
	}
	return out
}

// expectSilence fails if tr delivers anything within d.
func expectSilence(t *testing.T, tr *UDPTransport, d time.Duration) {
	t.Helper()
	select {
	case in := <-tr.Inbound():
		t.Fatalf("node %d: unexpected packet %+v", tr.cfg.Self, in.Packet)
	case <-time.After(d):
	}
}

// waitStat polls until cond holds on tr's stats or fails after udpWait.
func waitStat(t *testing.T, tr *UDPTransport, what string, cond func(UDPStats) bool) UDPStats {
	t.Helper()
	deadline := time.Now().Add(udpWait)
	for {
		s := tr.Stats()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %d: %s not reached; stats %+v", tr.cfg.Self, what, s)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestUDPUnicastAndFanOut(t *testing.T) {
	leakCheck(t)
	const n = 4
	ts := newUDPCluster(t, n, nil)
	members := []NodeID{1, 2, 3, 4}

	// Every node unicasts one packet to every other node and multicasts one
	// packet to the group (fan-out: no multicast address configured).
	for i, tr := range ts {
		self := NodeID(i + 1)
		for j := range ts {
			if j != i {
				if err := tr.Unicast(NodeID(j+1), dataPacket(self, 1, uint64(j+1), fmt.Sprintf("uni %d->%d", self, j+1))); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := tr.Multicast(2, members, dataPacket(self, 2, 1, fmt.Sprintf("fan %d", self))); err != nil {
			t.Fatal(err)
		}
	}
	for i, tr := range ts {
		self := NodeID(i + 1)
		got := recvN(t, tr, 2*(n-1))
		seen := map[string]bool{}
		for _, p := range got {
			if p.Kind != KindData || p.Data.ID.Sender != p.From {
				t.Fatalf("node %d: bad packet %+v", self, p)
			}
			seen[string(p.Data.Payload)] = true
		}
		for j := 1; j <= n; j++ {
			if NodeID(j) == self {
				continue
			}
			for _, want := range []string{fmt.Sprintf("uni %d->%d", j, self), fmt.Sprintf("fan %d", j)} {
				if !seen[want] {
					t.Errorf("node %d did not receive %q (got %v)", self, want, seen)
				}
			}
		}
		expectSilence(t, tr, 50*time.Millisecond) // nothing to self, no duplicates
		s := tr.Stats()
		if s.DatagramsSent != 2*(n-1) || s.SendErrors != 0 {
			t.Errorf("node %d: sent %d datagrams (%d errors), want %d", self, s.DatagramsSent, s.SendErrors, 2*(n-1))
		}
		// Fan-out to 3 members is one sendmmsg call, unicast one call each.
		if s.WriteCalls != n {
			t.Errorf("node %d: %d write calls for %d unicasts + 1 batched fan-out", self, s.WriteCalls, n-1)
		}
		if s.TotalDropped() != 0 {
			t.Errorf("node %d: drops %v", self, s.Dropped)
		}
	}
}

// TestUDPFanOutLargerThanBatch checks fan-out to more members than BatchSize
// (several sendmmsg calls) reaches everyone.
func TestUDPFanOutLargerThanBatch(t *testing.T) {
	leakCheck(t)
	ts := newUDPCluster(t, 6, func(c *UDPConfig) { c.BatchSize = 2 })
	members := []NodeID{1, 2, 3, 4, 5, 6}
	for seq := uint64(1); seq <= 20; seq++ {
		if err := ts[0].Multicast(9, members, dataPacket(1, 9, seq, "x")); err != nil {
			t.Fatal(err)
		}
	}
	for _, tr := range ts[1:] {
		got := recvN(t, tr, 20)
		seen := map[uint64]bool{}
		for _, p := range got {
			seen[p.Data.ID.Seq] = true
		}
		if len(seen) != 20 {
			t.Fatalf("node %d got %d distinct packets, want 20", tr.cfg.Self, len(seen))
		}
	}
	if s := ts[0].Stats(); s.DatagramsSent != 100 || s.WriteCalls != 60 {
		t.Fatalf("sent %d datagrams in %d calls, want 100 in 60 (5 members / batch 2 = 3 calls x 20)", s.DatagramsSent, s.WriteCalls)
	}
}

func TestUDPEveryKindCrossesTheWire(t *testing.T) {
	leakCheck(t)
	ts := newUDPCluster(t, 2, nil)
	want := samplePackets()
	for _, p := range want {
		q := *p
		q.From = 1
		if err := ts[0].Unicast(2, &q); err != nil {
			t.Fatalf("%v: %v", p.Kind, err)
		}
	}
	got := recvN(t, ts[1], len(want))
	for i := range got {
		w := *want[i]
		w.From = 1
		if !reflect.DeepEqual(got[i], &w) {
			t.Fatalf("packet %d:\n got %+v\nwant %+v", i, got[i], &w)
		}
	}
}

func TestUDPStampsFrom(t *testing.T) {
	leakCheck(t)
	ts := newUDPCluster(t, 2, nil)
	if err := ts[0].Unicast(2, dataPacket(99, 1, 1, "forged from")); err != nil {
		t.Fatal(err)
	}
	if p := recvN(t, ts[1], 1)[0]; p.From != 1 {
		t.Fatalf("From = %d, want the sending transport's Self (1)", p.From)
	}
}

// TestUDPMulticastLoopback exercises IP multicast on this host, on the
// loopback interface "lo". What it needs:
//   - permission to join a group on lo (any user on Linux);
//   - nothing else on Linux: the transport names the interface with
//     IP_MULTICAST_IF, so neither a 239.0.0.0/8 route nor lo's MULTICAST
//     flag is required (verified on this machine with the flag off and no
//     route). Other systems may need `ip link set lo multicast on` (root) and
//     `ip route add 239.0.0.0/8 dev lo`.
//
// The test skips (with the reason) only when the kernel refuses the join, or
// when no datagram arrives AND lo lacks the MULTICAST flag; with the flag
// set, a missing datagram is a failure.
func TestUDPMulticastLoopback(t *testing.T) {
	leakCheck(t)
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skipf("no loopback interface named lo: %v", err)
	}
	port := freeUDPPort(t)
	g1 := net.IPv4(239, 77, byte(os.Getpid()%250), 1)
	g2 := net.IPv4(239, 77, byte(os.Getpid()%250), 2)

	// Nodes 1-3 join group 1; node 4 joins only group 2.
	ts := newUDPCluster(t, 4, func(c *UDPConfig) { c.MulticastPort = port })
	for i, tr := range ts {
		if !tr.MulticastEnabled() {
			t.Fatalf("node %d: multicast not enabled", i+1)
		}
		ip, g := g1, GroupID(1)
		if i == 3 {
			ip, g = g2, 2
		}
		if err := tr.JoinGroup(g, ip); err != nil {
			if errors.Is(err, ErrUDPMulticast) {
				t.Skipf("kernel refused the multicast join on lo (%v); needs a multicast-capable lo", err)
			}
			t.Fatal(err)
		}
	}
	// Probe: one multicast datagram must reach node 2.
	if err := ts[0].Multicast(1, nil, &Packet{Kind: KindSession, Session: &Session{Group: 1, Sender: 1}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ts[1].Inbound():
	case <-time.After(udpWait):
		if lo.Flags&net.FlagMulticast == 0 {
			t.Skip("no multicast datagram arrived on lo and lo lacks the MULTICAST flag; run `ip link set lo multicast on` (as root)")
		}
		t.Fatalf("joined %v on lo but no multicast datagram arrived; stats %+v", g1, ts[1].Stats())
	}
	recvN(t, ts[2], 1) // node 3's probe copy
	waitStat(t, ts[0], "probe echo", func(s UDPStats) bool { return s.SelfEchoes == 1 })

	// Members list deliberately empty: with a group address, delivery is by
	// IP multicast, not fan-out.
	for seq := uint64(1); seq <= 5; seq++ {
		if err := ts[0].Multicast(1, nil, dataPacket(1, 1, seq, "mc")); err != nil {
			t.Fatal(err)
		}
	}
	for _, tr := range ts[1:3] {
		got := recvN(t, tr, 5)
		for i, p := range got {
			if p.From != 1 || p.Data.ID.Group != 1 || string(p.Data.Payload) != "mc" {
				t.Fatalf("node %d packet %d: %+v", tr.cfg.Self, i, p)
			}
		}
	}
	s := ts[0].Stats()
	if s.DatagramsSent != 6 {
		t.Fatalf("sender sent %d datagrams for 6 multicasts to 2 receivers, want 6 (one each)", s.DatagramsSent)
	}
	waitStat(t, ts[0], "own multicast echoes discarded", func(s UDPStats) bool { return s.SelfEchoes == 6 })
	expectSilence(t, ts[0], 50*time.Millisecond)
	expectSilence(t, ts[3], 50*time.Millisecond) // other group: IP_MULTICAST_ALL=0 keeps it out
	if s := ts[3].Stats(); s.DatagramsReceived != 0 {
		t.Fatalf("node 4 (group 2 only) received %d group-1 datagrams", s.DatagramsReceived)
	}

	// After LeaveGroup the sender falls back to unicast fan-out.
	if err := ts[0].LeaveGroup(1); err != nil {
		t.Fatal(err)
	}
	if err := ts[0].Multicast(1, []NodeID{1, 2, 3}, dataPacket(1, 1, 6, "fan")); err != nil {
		t.Fatal(err)
	}
	for _, tr := range ts[1:3] {
		if p := recvN(t, tr, 1)[0]; string(p.Data.Payload) != "fan" {
			t.Fatalf("node %d: %+v", tr.cfg.Self, p)
		}
	}
	// Node 2 leaves: node 1 multicasting via node 3's membership only.
	if err := ts[1].LeaveGroup(1); err != nil {
		t.Fatal(err)
	}
	if err := ts[0].SetGroupAddr(1, g1); err != nil {
		t.Fatal(err)
	}
	if err := ts[0].Multicast(1, nil, dataPacket(1, 1, 7, "after leave")); err != nil {
		t.Fatal(err)
	}
	recvN(t, ts[2], 1)
	expectSilence(t, ts[1], 100*time.Millisecond)
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func TestUDPWrongKeyDroppedAndCounted(t *testing.T) {
	leakCheck(t)
	ts := newUDPCluster(t, 1, nil)
	rx := ts[0]
	cfg := LoopbackUDPConfig(5, testKey2) // another cluster's key
	other, err := NewUDPTransport(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.SetPeer(1, rx.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 3; seq++ {
		if err := other.Unicast(1, dataPacket(5, 1, seq, "intruder")); err != nil {
			t.Fatal(err)
		}
	}
	waitStat(t, rx, "3 auth drops", func(s UDPStats) bool { return s.Dropped[WireDropAuth] == 3 })
	expectSilence(t, rx, 50*time.Millisecond)

	// A key rotation: a receiver holding both keys accepts it.
	rot, err := NewUDPTransport(LoopbackUDPConfig(6, testKey1, testKey2))
	if err != nil {
		t.Fatal(err)
	}
	defer rot.Close()
	if err := other.SetPeer(6, rot.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if err := other.Unicast(6, dataPacket(5, 1, 4, "rotated")); err != nil {
		t.Fatal(err)
	}
	if p := recvN(t, rot, 1)[0]; string(p.Data.Payload) != "rotated" {
		t.Fatalf("got %+v", p)
	}
	if s := rx.Stats(); s.Delivered != 0 || s.TotalDropped() != 3 {
		t.Fatalf("stats %+v", s)
	}
}

func TestUDPGarbageDroppedAndCounted(t *testing.T) {
	leakCheck(t)
	ts := newUDPCluster(t, 1, func(c *UDPConfig) { c.Wire.MaxDatagram = WireDefaultMaxDatagram })
	rx := ts[0]
	raw, err := net.DialUDP("udp4", nil, rx.LocalAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	good, _ := mustCodec(t, DefaultWireConfig(testKey1)).AppendEncode(nil, dataPacket(9, 1, 1, "ok"))
	badVersion := append([]byte(nil), good...)
	badVersion[2] = 7
	badKind := append([]byte(nil), good...)
	badKind[3] = 0xEE
	sends := []struct {
		b    []byte
		why  WireDropReason
		name string
	}{
		{[]byte("GET / HTTP/1.1\r\n\r\n"), WireDropBadMagic, "http"},
		{[]byte{0}, WireDropTruncated, "1 byte"},
		{good[:20], WireDropTruncated, "short"},
		{badVersion, WireDropVersion, "version"},
		{badKind, WireDropKind, "kind"},
		{bytes.Repeat([]byte{0xFF}, WireDefaultMaxDatagram+1), WireDropOversize, "oversize"},
		{bytes.Repeat([]byte{0xFF}, 60000), WireDropOversize, "huge"},
	}
	for _, s := range sends {
		if _, err := raw.Write(s.b); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
	}
	want := [NumWireDropReasons]uint64{}
	for _, s := range sends {
		want[s.why]++
	}
	waitStat(t, rx, "garbage counted", func(s UDPStats) bool { return s.TotalDropped() == uint64(len(sends)) })
	if got := rx.Stats().Dropped; got != want {
		t.Fatalf("drops by reason %v, want %v", got, want)
	}
	// The transport is still healthy.
	if _, err := raw.Write(good); err != nil {
		t.Fatal(err)
	}
	if p := recvN(t, rx, 1)[0]; string(p.Data.Payload) != "ok" {
		t.Fatalf("got %+v", p)
	}
}

func TestUDPOversizeSendRejected(t *testing.T) {
	leakCheck(t)
	ts := newUDPCluster(t, 2, func(c *UDPConfig) { c.Wire.MaxDatagram = WireDefaultMaxDatagram })
	big := dataPacket(1, 1, 1, string(make([]byte, WireDefaultMaxDatagram)))
	if err := ts[0].Unicast(2, big); !errors.Is(err, ErrWireOversize) {
		t.Fatalf("Unicast oversize: err = %v", err)
	}
	if err := ts[0].Multicast(1, []NodeID{2}, big); !errors.Is(err, ErrWireOversize) {
		t.Fatalf("Multicast oversize: err = %v", err)
	}
	fits := dataPacket(1, 1, 2, string(make([]byte, WireDefaultMaxDatagram-WireDataOverhead)))
	if err := ts[0].Unicast(2, fits); err != nil {
		t.Fatalf("largest payload rejected: %v", err)
	}
	if p := recvN(t, ts[1], 1)[0]; len(p.Data.Payload) != WireDefaultMaxDatagram-WireDataOverhead {
		t.Fatalf("payload %d bytes", len(p.Data.Payload))
	}
	if s := ts[0].Stats(); s.DatagramsSent != 1 {
		t.Fatalf("sent %d datagrams, want 1", s.DatagramsSent)
	}
}

func TestUDPInboundOverflowDropsWithoutBlocking(t *testing.T) {
	leakCheck(t)
	ts := newUDPCluster(t, 2, func(c *UDPConfig) { c.InboundQueue = 4 })
	const sent = 200
	for seq := uint64(1); seq <= sent; seq++ {
		if err := ts[0].Unicast(2, dataPacket(1, 1, seq, "x")); err != nil {
			t.Fatal(err)
		}
	}
	// Nobody reads Inbound: the reader must keep draining the socket and count.
	// The reader counts a datagram as received when it reads it and as
	// delivered or overflowed a moment later: wait for both.
	s := waitStat(t, ts[1], "all datagrams read and handled", func(s UDPStats) bool {
		return s.DatagramsReceived == sent && s.Delivered+s.Dropped[WireDropOverflow] == sent
	})
	if s.Delivered != 4 || s.Dropped[WireDropOverflow] != sent-4 {
		t.Fatalf("delivered %d, overflow %d; want 4 and %d", s.Delivered, s.Dropped[WireDropOverflow], sent-4)
	}
	got := recvN(t, ts[1], 4)
	for i, p := range got {
		if p.Data.ID.Seq != uint64(i+1) {
			t.Fatalf("queued packet %d has seq %d", i, p.Data.ID.Seq)
		}
	}
	// Room again: delivery resumes.
	if err := ts[0].Unicast(2, dataPacket(1, 1, sent+1, "after")); err != nil {
		t.Fatal(err)
	}
	if p := recvN(t, ts[1], 1)[0]; string(p.Data.Payload) != "after" {
		t.Fatalf("got %+v", p)
	}
}

func TestUDPUnknownPeer(t *testing.T) {
	leakCheck(t)
	ts := newUDPCluster(t, 3, nil)
	if err := ts[0].Unicast(42, dataPacket(1, 1, 1, "x")); !errors.Is(err, ErrUDPUnknownPeer) {
		t.Fatalf("Unicast to unknown: %v", err)
	}
	err := ts[0].Multicast(1, []NodeID{1, 2, 42, 3}, dataPacket(1, 1, 1, "x"))
	if !errors.Is(err, ErrUDPUnknownPeer) {
		t.Fatalf("Multicast with unknown member: %v", err)
	}
	recvN(t, ts[1], 1) // known members still served
	recvN(t, ts[2], 1)
	ts[0].RemovePeer(2)
	if _, ok := ts[0].Peer(2); ok {
		t.Fatal("peer 2 still known after RemovePeer")
	}
	if err := ts[0].Unicast(2, dataPacket(1, 1, 2, "x")); !errors.Is(err, ErrUDPUnknownPeer) {
		t.Fatalf("Unicast to removed peer: %v", err)
	}
}

func TestUDPCloseStopsEverything(t *testing.T) {
	leakCheck(t)
	ts := newUDPCluster(t, 2, nil)
	// Close while the peer is blasting packets at us.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for seq := uint64(1); ; seq++ {
			select {
			case <-stop:
				return
			default:
			}
			_ = ts[0].Unicast(2, dataPacket(1, 1, seq, "x"))
		}
	}()
	waitStat(t, ts[1], "traffic", func(s UDPStats) bool { return s.DatagramsReceived > 10 })
	if err := ts[1].Close(); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	if err := ts[1].Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for range ts[1].Inbound() { // must be closed: the loop ends
	}
	if err := ts[1].Unicast(1, dataPacket(2, 1, 1, "x")); !errors.Is(err, ErrUDPClosed) {
		t.Fatalf("Unicast after Close: %v", err)
	}
	if err := ts[1].Multicast(1, []NodeID{1}, dataPacket(2, 1, 1, "x")); !errors.Is(err, ErrUDPClosed) {
		t.Fatalf("Multicast after Close: %v", err)
	}
}

func TestUDPConcurrentSenders(t *testing.T) {
	leakCheck(t)
	ts := newUDPCluster(t, 3, nil)
	const per = 200
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				seq := uint64(w*per + i + 1)
				var err error
				if i%2 == 0 {
					err = ts[0].Unicast(2, dataPacket(1, 1, seq, fmt.Sprint(seq)))
				} else {
					err = ts[0].Multicast(1, []NodeID{2, 3}, dataPacket(1, 1, seq, fmt.Sprint(seq)))
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	got := recvN(t, ts[1], 4*per)
	for _, p := range got {
		if string(p.Data.Payload) != fmt.Sprint(p.Data.ID.Seq) {
			t.Fatalf("payload %q for seq %d: buffers mixed between senders", p.Data.Payload, p.Data.ID.Seq)
		}
	}
	recvN(t, ts[2], 2*per)
}

func TestUDPConfigValidate(t *testing.T) {
	ok := LoopbackUDPConfig(1, testKey1)
	cases := []struct {
		name string
		mod  func(*UDPConfig)
		want error
	}{
		{"no key", func(c *UDPConfig) { c.Wire.Keys = nil }, ErrWireConfig},
		{"no listen", func(c *UDPConfig) { c.ListenAddr = "" }, ErrUDPConfig},
		{"queue", func(c *UDPConfig) { c.InboundQueue = 0 }, ErrUDPConfig},
		{"batch", func(c *UDPConfig) { c.BatchSize = 0 }, ErrUDPConfig},
		{"batch big", func(c *UDPConfig) { c.BatchSize = 5000 }, ErrUDPConfig},
		{"port", func(c *UDPConfig) { c.MulticastPort = 70000 }, ErrUDPConfig},
		{"groups without port", func(c *UDPConfig) { c.MulticastGroups = map[GroupID]net.IP{1: net.IPv4(239, 1, 1, 1)} }, ErrUDPConfig},
		{"unicast group ip", func(c *UDPConfig) {
			c.MulticastPort = 5000
			c.MulticastGroups = map[GroupID]net.IP{1: net.IPv4(10, 1, 1, 1)}
		}, ErrUDPConfig},
		{"ttl", func(c *UDPConfig) { c.MulticastTTL = 300 }, ErrUDPConfig},
		{"ipv6 peer", func(c *UDPConfig) { c.Peers = map[NodeID]*net.UDPAddr{2: {IP: net.IPv6loopback, Port: 1}} }, ErrUDPConfig},
	}
	if err := ok.Validate(); err != nil {
		t.Fatalf("loopback preset invalid: %v", err)
	}
	if err := DefaultUDPConfig(1, testKey1).Validate(); err != nil {
		t.Fatalf("default preset invalid: %v", err)
	}
	for _, tc := range cases {
		c := LoopbackUDPConfig(1, testKey1)
		tc.mod(&c)
		if err := c.Validate(); !errors.Is(err, tc.want) {
			t.Errorf("%s: Validate = %v, want %v", tc.name, err, tc.want)
		}
		if _, err := NewUDPTransport(c); !errors.Is(err, tc.want) {
			t.Errorf("%s: NewUDPTransport = %v, want %v", tc.name, err, tc.want)
		}
	}
	// Multicast on an interface that does not exist fails cleanly.
	c := LoopbackUDPConfig(1, testKey1)
	c.MulticastPort = freeUDPPort(t)
	c.MulticastInterface = "nonexistent0"
	if _, err := NewUDPTransport(c); !errors.Is(err, ErrUDPMulticast) {
		t.Fatalf("bad interface: %v", err)
	}
	goleak.VerifyNone(t)
}

func BenchmarkUDPUnicast1K(b *testing.B) {
	cfgA, cfgB := LoopbackUDPConfig(1, testKey1), LoopbackUDPConfig(2, testKey1)
	a, err := NewUDPTransport(cfgA)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	r, err := NewUDPTransport(cfgB)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	a.SetPeer(2, r.LocalAddr())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range r.Inbound() {
		}
	}()
	p := dataPacket(1, 1, 1, string(make([]byte, 1024)))
	b.SetBytes(1024)
	b.ReportAllocs()
	for b.Loop() {
		if err := a.Unicast(2, p); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	r.Close()
	<-done
	s := r.Stats()
	b.ReportMetric(float64(s.DatagramsReceived)/float64(max(1, s.ReadCalls)), "datagrams/read")
}

// leakCheck verifies at the end of the test, after every t.Cleanup
// registered later (those run first, LIFO), that no goroutine was left behind.
func leakCheck(t *testing.T) {
	t.Helper()
	t.Cleanup(func() { goleak.VerifyNone(t) })
}
