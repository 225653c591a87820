package main

// `tempest-bench ricochet`: Ricochet's lateral error correction against a
// NAK-only baseline, over real UDP sockets on loopback, or with --sim in
// ricochettest's deterministic simulation (ricochet_sim.go: same workload,
// loss model and accounting, virtual time, optional node pauses).
//
// Set-up. --receivers N Ricochet nodes run in this process, each with its
// own UDP socket on 127.0.0.1 (unicast fan-out, or IP multicast on lo with
// --multicast). --groups G groups all contain every node (overlapping groups
// sharing the same members, so every node is in every group and LEC regions
// span all groups). Group g has ONE sender, node (g mod N)+1: with one group
// a single node sends and N-1 receive; with G >= N every node sends in some
// groups and receives in all others. Each data packet therefore has N-1
// receivers.
//
// Load. --packets data packets are sent at --rate packets/s in total
// (paced against the wall clock), round-robin over the groups: packet k goes
// to group k mod G, so each group gets rate/G packets/s.
//
// Loss. Each receiver drops inbound packets before its node sees them
// (lossyTransport): i.i.d. with probability --loss, or Gilbert–Elliott
// bursts with mean length --burst. Data packets and the other kinds draw
// from separate seeded streams so that, for the same arrival order, the
// data-loss pattern is the same in both modes.
//
// Modes. The same run measures LEC+NAK (--r, --c) and then NAK-only (LEC
// disabled), with the same seed and fresh sockets. The LEC mode waits
// NakTimeout (--nak-timeout, default the engine's 20 ms) before its first NAK:
// the time left for LEC to repair. No LEC repair can come in the NAK-only
// mode, so waiting there would only flatter LEC: its first NAK goes out after
// a reorder window of its own (--nak-only-delay, default 1 ms); NAK retries
// are the same in both modes. The report records both settings.
//
// Losses. A (receiver, packet) pair is lost when the packet's original
// datagram never reached the receiver's node (the loss wrapper records every
// data datagram it lets through). Lost pairs end up recovered by LEC,
// recovered by NAK, or unrecovered. A pair that was NOT lost but was
// delivered via LEC or NAK because a repair or retransmission overtook the
// direct copy (it happens on loopback: a receiver's repair, emitted the
// instant it got the packet, can beat the sender's fan-out or the multicast
// socket to another receiver) is counted apart (early_lec / early_nak) and
// excluded from the recovery figures.
//
// Recovery latency. Every payload starts with the send timestamp (UnixNano of
// the host clock) and the packet number. For every lost packet a node
// recovers via LEC or NAK, latency = delivery time - send timestamp; nothing
// is subtracted, so both modes are measured identically (it includes the
// one-way delivery time, reported separately for direct deliveries as
// direct_latency). The engine's own figure (from loss detection to
// recovery) is reported for reference as recovery_engine.
//
// Overheads are in wire bytes per intended receiver: repair_overhead =
// repair bytes sent / original data bytes (each data datagram counted once
// per receiver), directly comparable with c/r.

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tempestrt/tempest/ricochet"
	"github.com/tempestrt/tempest/ricochet/ricochettest"
)

// benchConfig holds the flags of `tempest-bench ricochet`.
type benchConfig struct {
	Nodes      int           `json:"nodes"`   // --receivers
	Groups     int           `json:"groups"`  // --groups
	Rate       int           `json:"rate"`    // --rate, total data packets/s
	Packets    int           `json:"packets"` // --packets, total data packets
	Loss       float64       `json:"loss"`
	Burst      float64       `json:"burst"`
	Payload    int           `json:"payload"` // bytes per data packet
	R          int           `json:"r"`
	C          int           `json:"c"`
	Seed       uint64        `json:"seed"`
	NakTimeout time.Duration `json:"nak_timeout_ns"` // 0: engine default (see engine_config)
	// NakOnlyDelay is the NAK-only mode's wait before its first NAK.
	NakOnlyDelay time.Duration `json:"nak_only_delay_ns"`
	Drain        time.Duration `json:"drain_ns"`
	Flush        time.Duration `json:"flush_interval_ns"` // 0: engine default
	Bins         int           `json:"bins_per_region"`   // 0: engine default
	Multicast    bool          `json:"multicast"`
	// Sim runs the modes in ricochettest's deterministic simulation
	// (virtual time) instead of over UDP; SimPause/SimPauseEvery stall a
	// random node there (0: never).
	Sim           bool          `json:"sim"`
	SimPause      time.Duration `json:"sim_pause_ns"`
	SimPauseEvery time.Duration `json:"sim_pause_every_ns"`
	JSON          bool          `json:"-"`
	CPUProfile    string        `json:"-"`
}

// payloadHeader is the bench's prefix of every payload: send time (UnixNano)
// and the packet number k.
const payloadHeader = 16

func parseRicochetFlags(args []string, stderr io.Writer) (benchConfig, error) {
	var c benchConfig
	fs := flag.NewFlagSet("ricochet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&c.Nodes, "receivers", 5, "number of nodes; every node is in every group, each packet has receivers-1 receivers")
	fs.IntVar(&c.Groups, "groups", 1, "number of overlapping groups (all containing every node); group g is sent by node g mod receivers")
	fs.IntVar(&c.Rate, "rate", 2000, "total data packets per second over all groups")
	fs.IntVar(&c.Packets, "packets", 20000, "total data packets per mode")
	fs.Float64Var(&c.Loss, "loss", 0.01, "probability that a receiver loses an inbound packet")
	fs.Float64Var(&c.Burst, "burst", 0, "mean loss-burst length in packets (Gilbert-Elliott); <= 1 means i.i.d. loss")
	fs.IntVar(&c.Payload, "payload", 1024, "payload bytes per data packet (>= 16)")
	fs.IntVar(&c.R, "r", 8, "LEC: packets XORed into one repair")
	fs.IntVar(&c.C, "c", 3, "LEC: receivers each repair is sent to")
	fs.Uint64Var(&c.Seed, "seed", 1, "seed of the loss model and the engines' randomness")
	fs.DurationVar(&c.NakTimeout, "nak-timeout", 0, "LEC+NAK mode: wait for LEC before the first NAK (0: the engine's default)")
	fs.DurationVar(&c.NakOnlyDelay, "nak-only-delay", time.Millisecond, "NAK-only mode: reorder window before the first NAK (no LEC repair to wait for)")
	fs.DurationVar(&c.Flush, "flush-interval", 0, "LEC: flush partly filled repair bins after this long (0: the engine's default)")
	fs.IntVar(&c.Bins, "bins", 0, "LEC: repair bins per region (0: the engine's default)")
	fs.DurationVar(&c.Drain, "drain", 5*time.Second, "how long to wait after the last send for recovery to finish")
	fs.BoolVar(&c.Multicast, "multicast", false, "use IP multicast on lo instead of unicast fan-out")
	fs.BoolVar(&c.Sim, "sim", false, "run in the deterministic simulation (virtual time, 100us+-50us LAN) instead of over UDP loopback")
	fs.DurationVar(&c.SimPause, "sim-pause", 0, "--sim: stall a random node this long every --sim-pause-every (0: no pauses)")
	fs.DurationVar(&c.SimPauseEvery, "sim-pause-every", time.Second, "--sim: interval between node pauses")
	fs.BoolVar(&c.JSON, "json", false, "print JSON on stdout (progress stays on stderr)")
	fs.StringVar(&c.CPUProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var errs []error
	if c.Nodes < 2 {
		errs = append(errs, errors.New("--receivers must be >= 2"))
	}
	if c.Groups < 1 {
		errs = append(errs, errors.New("--groups must be >= 1"))
	}
	if c.Rate < 1 || c.Packets < 1 {
		errs = append(errs, errors.New("--rate and --packets must be >= 1"))
	}
	if c.Loss < 0 || c.Loss >= 1 {
		errs = append(errs, errors.New("--loss must be in [0, 1)"))
	}
	if c.Payload < payloadHeader || c.Payload > 60000 {
		errs = append(errs, fmt.Errorf("--payload must be in [%d, 60000]", payloadHeader))
	}
	if c.R < 1 || c.C < 0 {
		errs = append(errs, errors.New("--r must be >= 1 and --c >= 0"))
	}
	if c.NakTimeout < 0 || c.Drain < 0 || c.Flush < 0 || c.Bins < 0 {
		errs = append(errs, errors.New("--nak-timeout, --drain, --flush-interval and --bins must be >= 0"))
	}
	if c.SimPause < 0 || c.SimPauseEvery <= 0 {
		errs = append(errs, errors.New("--sim-pause must be >= 0 and --sim-pause-every > 0"))
	}
	if c.SimPause > 0 && !c.Sim {
		errs = append(errs, errors.New("--sim-pause needs --sim"))
	}
	if c.Multicast && c.Sim {
		errs = append(errs, errors.New("--multicast and --sim exclude each other"))
	}
	if c.NakOnlyDelay <= 0 {
		errs = append(errs, errors.New("--nak-only-delay must be > 0"))
	}
	return c, errors.Join(errs...)
}

func runRicochet(args []string, stdout, stderr io.Writer) error {
	cfg, err := parseRicochetFlags(args, stderr)
	if err != nil {
		return err
	}
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	rep := benchReport{Config: cfg, Method: "recovery latency = delivery time - send timestamp carried in the payload (same host clock); " +
		"a loss is a (receiver, packet) pair whose original datagram never reached the receiver's node; " +
		"packets delivered via LEC/NAK before their (not lost) direct copy arrived are counted apart (early_*); overhead in wire bytes per intended receiver"}
	rep.MulticastSocket = cfg.Multicast
	ec, err := engineConfig(cfg, true)
	if err != nil {
		return err
	}
	nc, err := engineConfig(cfg, false)
	if err != nil {
		return err
	}
	rep.EngineConfig = engineCfgSummary{
		R: ec.R, C: ec.C, BinsPerRegion: ec.BinsPerRegion, FlushIntervalMs: ms(ec.FlushInterval),
		NakTimeoutMs: ms(ec.NakTimeout), NakOnlyDelayMs: ms(nc.NakTimeout), NakRetryIntervalMs: ms(ec.NakRetryInterval),
		SessionIntervalMs: ms(ec.SessionInterval), TickIntervalMs: ms(ec.TickInterval), MaxPayload: ec.MaxPayload,
	}
	if cfg.Sim {
		rep.Method = "deterministic simulation (ricochettest.Sim, virtual time; one-way delay 100us + up to 50us jitter): " +
			"recovery latency = delivery time - send time, both virtual; " + rep.Method[strings.Index(rep.Method, "a loss is"):]
	}
	run := runMode
	if cfg.Sim {
		run = runModeSim
	}
	for _, lec := range []bool{true, false} {
		res, err := run(cfg, lec, stderr)
		if err != nil {
			return err
		}
		if lec {
			rep.LEC = res
		} else {
			rep.NakOnly = res
		}
	}
	if rep.NakOnly.RecoveryMsP50 > 0 {
		rep.P50Ratio = rep.LEC.RecoveryMsP50 / rep.NakOnly.RecoveryMsP50
	}
	if cfg.JSON {
		return writeJSON(stdout, &rep)
	}
	writeText(stdout, &rep)
	return nil
}

// via says how a packet reached a receiver.
type via uint8

const (
	viaDirect via = iota
	viaLEC
	viaNAK
)

// benchDelivery is one packet handed to the application by a node.
type benchDelivery struct {
	Group   ricochet.GroupID
	Sender  ricochet.NodeID
	Payload []byte
	Via     via
	At      time.Time
	// Detect is the engine's own recovery latency (from when it learned
	// the packet was missing to recovery); reported for reference only.
	Detect time.Duration
}

// benchNode is what the bench needs from a running Ricochet node
// (implemented over the engine's Node runner in ricochet_node.go).
type benchNode interface {
	// Send multicasts payload to group g (safe to call from the sender goroutine).
	Send(g ricochet.GroupID, payload []byte) error
	// Stats returns the engine's counters.
	Stats() ricochet.Stats
	// Close stops the node.
	Close() error
}

// nodeSpec is what startBenchNode needs to build one node.
type nodeSpec struct {
	ID        ricochet.NodeID
	Members   []ricochet.NodeID
	Groups    []ricochet.GroupID
	LEC       bool
	Cfg       benchConfig
	Transport ricochet.Transport
	Seed      uint64
	Deliver   func(benchDelivery) // called for each delivered packet
}

// collector records, for every (receiver, packet) pair, whether the
// packet's original data datagram reached the receiver's node (passed the
// loss model: "arrived") and how and when the node delivered it. Only at the
// end are pairs classified (tally), because a delivery and the arrival of
// the direct copy can happen in either order: a repair from a fast peer can
// overtake the sender's own datagram, so a packet that was never lost may be
// delivered "via LEC" before its direct copy arrives.
type collector struct {
	mu        sync.Mutex
	nodes     int
	packets   int
	senderOf  func(k int) ricochet.NodeID
	arrived   [][]bool          // arrived[receiver-1][k]: original datagram reached the node
	via       [][]uint8         // via[receiver-1][k]: 0 = not delivered, else via+1
	lat       [][]time.Duration // delivery time - send time
	detect    [][]time.Duration // engine-measured recovery latency
	dups      uint64
	corrupt   uint64
	foreign   uint64
	payload   uint64
	delivered atomic.Uint64 // distinct (receiver, packet) deliveries
	lastAt    time.Time
}

func newCollector(cfg benchConfig, senderOf func(k int) ricochet.NodeID) *collector {
	c := &collector{nodes: cfg.Nodes, packets: cfg.Packets, senderOf: senderOf}
	c.arrived = make([][]bool, cfg.Nodes)
	c.via = make([][]uint8, cfg.Nodes)
	c.lat = make([][]time.Duration, cfg.Nodes)
	c.detect = make([][]time.Duration, cfg.Nodes)
	for i := 0; i < cfg.Nodes; i++ {
		c.arrived[i] = make([]bool, cfg.Packets)
		c.via[i] = make([]uint8, cfg.Packets)
		c.lat[i] = make([]time.Duration, cfg.Packets)
		c.detect[i] = make([]time.Duration, cfg.Packets)
	}
	return c
}

// arrive records that the original (not retransmitted) data datagram of a
// bench packet passed receiver's loss model.
func (c *collector) arrive(receiver ricochet.NodeID, p *ricochet.Packet) {
	if p.Kind != ricochet.KindData || p.Data.Retransmit || p.Data.FragIndex != 0 || len(p.Data.Payload) < payloadHeader {
		return
	}
	k := int(binary.BigEndian.Uint64(p.Data.Payload[8:16]))
	c.mu.Lock()
	defer c.mu.Unlock()
	if k >= 0 && k < c.packets && int(receiver) >= 1 && int(receiver) <= c.nodes {
		c.arrived[receiver-1][k] = true
	}
}

// fillPayload writes the header and a pattern determined by k, so the
// receiver can verify every byte (a wrong XOR recovery would show up).
func fillPayload(b []byte, k int, now time.Time) {
	binary.BigEndian.PutUint64(b[0:8], uint64(now.UnixNano()))
	binary.BigEndian.PutUint64(b[8:16], uint64(k))
	for i := payloadHeader; i < len(b); i++ {
		b[i] = byte(k*131 + i*7)
	}
}

func checkPayload(b []byte) (k int, sent time.Time, ok bool) {
	if len(b) < payloadHeader {
		return 0, time.Time{}, false
	}
	sent = time.Unix(0, int64(binary.BigEndian.Uint64(b[0:8])))
	k = int(binary.BigEndian.Uint64(b[8:16]))
	for i := payloadHeader; i < len(b); i++ {
		if b[i] != byte(k*131+i*7) {
			return k, sent, false
		}
	}
	return k, sent, true
}

func (c *collector) deliver(receiver ricochet.NodeID, d benchDelivery) {
	k, sent, ok := checkPayload(d.Payload)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !ok || k < 0 || k >= c.packets || c.senderOf(k) != d.Sender || int(receiver) < 1 || int(receiver) > c.nodes {
		if !ok {
			c.corrupt++
		} else {
			c.foreign++
		}
		return
	}
	r, v := int(receiver)-1, &c.via[receiver-1][k]
	if *v != 0 {
		c.dups++
		return
	}
	*v = uint8(d.Via) + 1
	c.lat[r][k] = d.At.Sub(sent)
	c.detect[r][k] = d.Detect
	c.delivered.Add(1)
	c.payload += uint64(len(d.Payload))
	if d.At.After(c.lastAt) {
		c.lastAt = d.At
	}
}

// tallyResult classifies every expected (receiver, packet) pair.
type tallyResult struct {
	direct, lec, nak []time.Duration // latencies: direct deliveries, LEC / NAK recoveries of lost packets
	detect           []time.Duration // engine-measured latency of those recoveries
	lost             uint64          // original datagram never reached the node
	unrecovered      uint64          // lost and never delivered
	lecEarly         uint64          // not lost, but delivered via LEC before the direct copy arrived
	nakEarly         uint64          // not lost, but delivered via NAK before the direct copy arrived
	undelivered      uint64          // arrived but never delivered (an engine defect if > 0)
}

// tally classifies the pairs; the sender of a packet is not a receiver.
func (c *collector) tally() tallyResult {
	var t tallyResult
	for r := 0; r < c.nodes; r++ {
		for k := 0; k < c.packets; k++ {
			if c.senderOf(k) == ricochet.NodeID(r+1) {
				continue
			}
			got, arrived := c.via[r][k], c.arrived[r][k]
			switch {
			case arrived && got == uint8(viaDirect)+1:
				t.direct = append(t.direct, c.lat[r][k])
			case arrived && got == uint8(viaLEC)+1:
				t.lecEarly++
			case arrived && got == uint8(viaNAK)+1:
				t.nakEarly++
			case arrived:
				t.undelivered++
			case got == uint8(viaLEC)+1:
				t.lost++
				t.lec = append(t.lec, c.lat[r][k])
				t.detect = append(t.detect, c.detect[r][k])
			case got == uint8(viaNAK)+1:
				t.lost++
				t.nak = append(t.nak, c.lat[r][k])
				t.detect = append(t.detect, c.detect[r][k])
			case got == 0:
				t.lost++
				t.unrecovered++
			default: // delivered "direct" without the direct copy arriving: impossible
				t.lost++
				t.undelivered++
			}
		}
	}
	return t
}

// layout is who is in which group and who sends what (see the file comment).
type layout struct {
	members []ricochet.NodeID  // 1..N
	groups  []ricochet.GroupID // 1..G
}

func newLayout(cfg benchConfig) layout {
	l := layout{members: ricochettest.NodeIDs(cfg.Nodes), groups: make([]ricochet.GroupID, cfg.Groups)}
	for g := range l.groups {
		l.groups[g] = ricochet.GroupID(g + 1)
	}
	return l
}

// senderOfGroup is the one sender of group index g.
func (l layout) senderOfGroup(g int) ricochet.NodeID { return l.members[g%len(l.members)] }

// senderOf is the sender of packet k (sent to group index k mod G).
func (l layout) senderOf(k int) ricochet.NodeID { return l.senderOfGroup(k % len(l.groups)) }

func modeName(lec bool) string {
	if lec {
		return "lec"
	}
	return "nak_only"
}

// runMode runs one full measurement over UDP: start nodes, send, drain, tally.
func runMode(cfg benchConfig, lec bool, stderr io.Writer) (modeResult, error) {
	name := modeName(lec)
	n := cfg.Nodes
	lay := newLayout(cfg)
	members, groups := lay.members, lay.groups
	senderOfGroup := lay.senderOfGroup
	col := newCollector(cfg, lay.senderOf)

	// Transports.
	key := []byte("tempest-bench-ricochet-key-32byt")
	udps := make([]*ricochet.UDPTransport, n)
	lossy := make([]*lossyTransport, n)
	closeAll := func() {
		for _, l := range lossy {
			if l != nil {
				l.Close()
			}
		}
		for _, u := range udps {
			if u != nil {
				u.Close()
			}
		}
	}
	var mport int
	if cfg.Multicast {
		p, err := freePort()
		if err != nil {
			return modeResult{}, err
		}
		mport = p
	}
	for i := range udps {
		uc := ricochet.LoopbackUDPConfig(members[i], key)
		uc.InboundQueue = 1 << 16
		uc.SocketBuffer = 8 << 20
		if cfg.Multicast {
			uc.MulticastPort = mport
		}
		u, err := ricochet.NewUDPTransport(uc)
		if err != nil {
			closeAll()
			return modeResult{}, err
		}
		udps[i] = u
		id := members[i]
		lossy[i] = newLossyTransport(id, u, newSplitLossModel(cfg.Loss, cfg.Burst, cfg.Seed*1000003+uint64(i)), 1<<16,
			func(p *ricochet.Packet) { col.arrive(id, p) })
	}
	for _, u := range udps {
		for j, v := range udps {
			if err := u.SetPeer(members[j], v.LocalAddr()); err != nil {
				closeAll()
				return modeResult{}, err
			}
		}
		if cfg.Multicast {
			for g := range groups {
				ip := net.IPv4(239, 78, byte(g>>8), byte(g))
				if err := u.JoinGroup(groups[g], ip); err != nil {
					closeAll()
					return modeResult{}, fmt.Errorf("--multicast: %w", err)
				}
			}
		}
	}
	// Nodes.
	nodes := make([]benchNode, n)
	stopNodes := func() {
		for _, nd := range nodes {
			if nd != nil {
				nd.Close()
			}
		}
	}
	for i := range nodes {
		id := members[i]
		nd, err := startBenchNode(nodeSpec{
			ID: id, Members: members, Groups: groups, LEC: lec, Cfg: cfg, Transport: lossy[i],
			Seed:    cfg.Seed*7919 + uint64(i),
			Deliver: func(d benchDelivery) { col.deliver(id, d) },
		})
		if err != nil {
			stopNodes()
			closeAll()
			return modeResult{}, err
		}
		nodes[i] = nd
	}

	// Send, paced; report progress on stderr.
	expected := uint64(cfg.Packets) * uint64(n-1)
	var sentCount atomic.Int64
	stopProgress := make(chan struct{})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-tick.C:
				fmt.Fprintf(stderr, "[%s] sent %d/%d packets, delivered %d/%d receptions\n",
					name, sentCount.Load(), cfg.Packets, col.delivered.Load(), expected)
			}
		}
	}()
	fmt.Fprintf(stderr, "[%s] %d nodes up; sending %d packets at %d pkt/s over %d groups\n", name, n, cfg.Packets, cfg.Rate, cfg.Groups)
	var sendErrs uint64
	var firstSendErr error
	start := time.Now()
	interval := time.Second / time.Duration(cfg.Rate)
	for k := 0; k < cfg.Packets; k++ {
		due := start.Add(time.Duration(k) * interval)
		if d := time.Until(due); d > 200*time.Microsecond {
			time.Sleep(d)
		}
		g := k % cfg.Groups
		buf := make([]byte, cfg.Payload) // the node may keep it for retransmission
		fillPayload(buf, k, time.Now())
		if err := nodes[int(senderOfGroup(g))-1].Send(groups[g], buf); err != nil {
			sendErrs++
			if firstSendErr == nil {
				firstSendErr = err
			}
		}
		sentCount.Add(1)
	}
	sendDone := time.Now()
	// Drain: wait until every reception happened or the drain timeout passed.
	drainDeadline := sendDone.Add(cfg.Drain)
	timedOut := false
	for col.delivered.Load() < expected {
		if time.Now().After(drainDeadline) {
			timedOut = true
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stopProgress)
	<-progressDone
	fmt.Fprintf(stderr, "[%s] done: sent %d, delivered %d/%d receptions, send errors %d\n",
		name, sentCount.Load(), col.delivered.Load(), expected, sendErrs)
	if firstSendErr != nil {
		fmt.Fprintf(stderr, "[%s] first send error: %v\n", name, firstSendErr)
	}
	var es ricochet.Stats
	for _, nd := range nodes {
		es = ricochettest.SumStats(es, nd.Stats())
	}
	stopNodes()
	closeAll()

	links := make([]*linkCounters, n)
	for i := range lossy {
		links[i] = &lossy[i].linkCounters
	}
	r, err := finishMode(name, cfg, lec, col, uint64(sentCount.Load()), expected, timedOut, links, es, start, sendDone)
	if err != nil {
		return r, err
	}
	for i := range udps {
		us := udps[i].Stats()
		r.TransportDrops += us.TotalDropped()
		r.UDPSent += us.DatagramsSent
		r.UDPReceived += us.DatagramsReceived
		r.UDPSendErrors += us.SendErrors
	}
	return r, nil
}

// finishMode tallies a finished run (UDP or simulated): the collector's
// pairs, the per-node traffic counters and the engines' summed counters.
// start and sendDone bound the sending; times are wall-clock or virtual.
func finishMode(name string, cfg benchConfig, lec bool, col *collector, sent, expected uint64, timedOut bool,
	links []*linkCounters, es ricochet.Stats, start, sendDone time.Time) (modeResult, error) {
	col.mu.Lock()
	defer col.mu.Unlock()
	if col.corrupt > 0 {
		return modeResult{}, fmt.Errorf("%s: %d deliveries had a corrupted payload (bad XOR recovery?)", name, col.corrupt)
	}
	r := modeResult{Mode: name, Sent: sent, Expected: expected, Duplicates: col.dups, DrainTimedOut: timedOut}
	t := col.tally()
	r.Direct = uint64(len(t.direct))
	r.RecoveredLEC = uint64(len(t.lec))
	r.RecoveredNAK = uint64(len(t.nak))
	r.Lost = t.lost
	r.Unrecovered = t.unrecovered
	r.NakMisses = es.NakMisses
	r.EarlyLEC, r.EarlyNAK, r.ArrivedUndelivered = t.lecEarly, t.nakEarly, t.undelivered
	if r.Lost > 0 {
		r.LECShare = float64(r.RecoveredLEC) / float64(r.Lost)
	}
	all := append(append([]time.Duration(nil), t.lec...), t.nak...)
	r.Recovery = summarizeLatency(all)
	r.RecoveryMsP50, r.RecoveryMsP99, r.RecoveryMsMax = r.Recovery.P50Ms, r.Recovery.P99Ms, r.Recovery.MaxMs
	r.RecoveryLEC = summarizeLatency(t.lec)
	r.RecoveryNAK = summarizeLatency(t.nak)
	r.DirectLatency = summarizeLatency(t.direct)
	r.RecoveryEngine = summarizeLatency(t.detect)
	for _, l := range links {
		r.InjectedDataDrops += l.droppedFirst.Load()
		for k := range l.dropped.n {
			r.InjectedDrops += l.dropped.n[k].Load()
		}
		r.RepairBytes += l.sent.bytes[ricochet.KindRepair].Load()
		r.RepairPackets += l.sent.n[ricochet.KindRepair].Load()
		r.NakBytes += l.sent.bytes[ricochet.KindNak].Load() + l.sent.bytes[ricochet.KindNakMiss].Load() +
			l.sent.bytes[ricochet.KindSession].Load() + l.retransBytes.Load()
		r.DataBytes += l.sent.bytes[ricochet.KindData].Load() - l.retransBytes.Load()
	}
	if expected > 0 {
		r.RepairPerData = float64(r.RepairPackets) / float64(expected)
	}
	if r.DataBytes > 0 {
		r.RepairOverhead = float64(r.RepairBytes) / float64(r.DataBytes)
		r.NakOverhead = float64(r.NakBytes) / float64(r.DataBytes)
	}
	if lec && cfg.R > 0 {
		r.ExpectedOverhead = float64(cfg.C) / float64(cfg.R)
	}
	r.Engine = engineSummary{
		LossesDetected: es.LossesDetected, RecoveredLEC: es.RecoveredLEC, RecoveredNAK: es.RecoveredNAK,
		Unrecoverable: es.Unrecoverable, NaksSent: es.NaksSent, NakSeqsSent: es.NakSeqsSent,
		Retransmissions: es.Retransmissions, NakMisses: es.NakMisses, NakMissReceived: es.NakMissReceived, RepairsSent: es.RepairsSent, RepairsReceived: es.RepairsReceived,
		RepairsUseless: es.RepairsUseless, RepairsUnusable: es.RepairsUnusable, RepairsHeld: es.RepairsHeld,
		RepairsExpired: es.RepairsExpired, RepairsFlushed: es.RepairsFlushed, Duplicates: es.Duplicates, LateDirect: es.LateDirect,
	}
	r.SendSeconds = sendDone.Sub(start).Seconds()
	end := col.lastAt
	if end.Before(sendDone) {
		end = sendDone
	}
	r.DurationSeconds = end.Sub(start).Seconds()
	if r.DurationSeconds > 0 {
		r.ThroughputMBs = float64(col.payload) / 1e6 / r.DurationSeconds
		r.ThroughputPkts = float64(col.delivered.Load()) / r.DurationSeconds
	}
	if r.SendSeconds > 0 {
		r.OfferedPktPerSec = float64(r.Sent) / r.SendSeconds
	}
	return r, nil
}

func freePort() (int, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}
