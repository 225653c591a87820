package ricochet

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"
)

// Engine is the Ricochet protocol for one node as a pure state machine: no
// I/O, no goroutines, no clock. The caller (Node, or the deterministic
// simulation) feeds it received packets (Step), the passage of time (Tick)
// and application sends (Send), and performs the returned Output: packets to
// unicast or multicast, messages to deliver, packets declared unrecoverable.
// Randomness (repair targets) comes from the *rand.Rand given to NewEngine,
// and every internal iteration is in a fixed order, so a run is a function
// of (config, seed, inputs): tests replay it exactly.
//
// Sender. Each (group, sender) pair numbers its packets 1, 2, 3, ... (a
// "stream"). The sender multicasts each packet once, keeps it for
// Config.RetransmitWindow (within Config.RetransmitBytes for all groups
// together) to answer NAKs, and announces
// its last sequence number (Session) when it goes idle, so receivers see
// losses at the tail of a burst.
//
// Receiver. A packet is delivered as soon as it (and, for a fragmented
// message, every other fragment) is there: Ricochet orders nothing. Per
// stream the receiver tracks base (every seq <= base is resolved: delivered
// or declared unrecoverable), the highest seq known to exist, and for each
// seq in (base, highest] whether it is resolved or missing. Invariant: every
// seq of a stream is reported to the layer above at most once, as part of a
// Delivery or of an Unrecoverable range, and every seq in (base, highest]
// is eventually one or the other (NAK retries and MaxGap bound the wait).
//
// Lateral error correction. Each receiver XORs the data packets it
// receives directly into repair bins and, every R packets (or after
// FlushInterval for a partly filled bin), sends the repair to C other
// receivers. Bins are kept per region, the set of nodes that share exactly
// the same groups with this node, so one repair mixes packets of every group
// the region shares: a node in many slow groups still fills bins at its
// total incoming rate. A receiver missing exactly one packet of a repair
// recovers it by XOR; a repair missing more is held and retried as packets
// arrive or are recovered (iterative recovery). What LEC has not recovered
// within NakTimeout is NAKed to the original sender.
type Engine struct {
	cfg  Config
	self NodeID
	rng  *rand.Rand

	groups  map[GroupID]*group      // groups this node is a member of
	senders map[GroupID]*sendStream // our own streams (kept across membership changes)
	regions []*region               // sorted by key
	streams map[streamKey]*stream   // receive state per (group, sender)
	lossy   map[*stream]struct{}    // streams with missing seqs (iterated sorted)

	cache    payloadCache
	held     heldRepairs
	partials partialQueue
	rtx      fifo[rtxEntry] // every packet kept for retransmission, oldest first (all groups)
	rtxBytes int            // what rtx counts against RetransmitBytes
	recoverQ []*Data        // LEC recoveries waiting to be processed (iterative recovery)
	killQ    []*partial     // partial messages to drop (see settle)

	membershipChanged bool
	stats             Stats
	out               Output
}

// Via tells how a delivered message arrived. For a fragmented message it is
// the worst path among its fragments (Direct < LEC < NAK).
type Via uint8

const (
	// ViaDirect: received from the original multicast.
	ViaDirect Via = 1
	// ViaLEC: recovered by XOR from a repair packet sent by another receiver.
	ViaLEC Via = 2
	// ViaNAK: retransmitted by the sender in answer to a NAK.
	ViaNAK Via = 3
)

func (v Via) String() string {
	switch v {
	case ViaDirect:
		return "direct"
	case ViaLEC:
		return "lec"
	case ViaNAK:
		return "nak"
	}
	return fmt.Sprintf("via(%d)", uint8(v))
}

// Delivery is one message handed to the layer above.
type Delivery struct {
	// ID is the ID of the message's first fragment (its only one when not fragmented).
	ID PacketID
	// Payload is the whole message; it belongs to the receiver (a fresh copy).
	Payload []byte
	// Fragments is the number of packets the message travelled in.
	Fragments int
	// Via is how the message arrived (the worst path among its fragments).
	Via Via
	// Latency is the recovery latency: from when this node first learned
	// that a fragment was missing (a gap in sequence numbers, a Session, or
	// a repair naming it) to the moment it had it; the largest over the
	// fragments. 0 when no fragment was ever missing.
	Latency time.Duration
}

// PacketRange is the packets First..Last (inclusive) of one stream.
type PacketRange struct {
	Group       GroupID
	Sender      NodeID
	First, Last uint64
}

// Count is the number of packets in the range.
func (r PacketRange) Count() uint64 { return r.Last - r.First + 1 }

// Contains reports whether id is in the range.
func (r PacketRange) Contains(id PacketID) bool {
	return id.Group == r.Group && id.Sender == r.Sender && id.Seq >= r.First && id.Seq <= r.Last
}

func (r PacketRange) String() string {
	return fmt.Sprintf("g%d/n%d#%d..%d", r.Group, r.Sender, r.First, r.Last)
}

// Unicast is a packet to send to one node.
type Unicast struct {
	To     NodeID
	Packet *Packet
}

// Multicast is a packet to send to every node of Members (the group's
// members other than this node). Members is shared with the engine: do not
// modify it.
type Multicast struct {
	Group   GroupID
	Members []NodeID
	Packet  *Packet
}

// Output is what one Engine call asks its caller to do. Packets in it are
// never modified by the engine afterwards and may be shared by several
// entries (a repair sent to C targets is one *Packet).
type Output struct {
	Unicasts   []Unicast
	Multicasts []Multicast
	Deliveries []Delivery
	// Unrecoverable lists packets this node will never deliver: the sender
	// no longer had them (NakMiss), NAK retries ran out, the stream ran
	// more than MaxGap ahead, or their message could not be reassembled.
	// A message is lost when any of its fragments is listed. The layer
	// above repairs them by other means (gossip). Sorted, merged ranges.
	Unrecoverable []PacketRange
}

// Empty reports whether the output asks for nothing.
func (o *Output) Empty() bool {
	return len(o.Unicasts) == 0 && len(o.Multicasts) == 0 && len(o.Deliveries) == 0 && len(o.Unrecoverable) == 0
}

// Stats are cumulative counters of one Engine. Packets are counted as
// datagrams (a fragment is one packet); bytes are payload bytes (data
// payloads, or the XOR of a repair), not wire bytes.
type Stats struct {
	// Sender side.
	MessagesSent    uint64 // Send calls accepted
	DataSent        uint64 // original data packets (fragments) multicast
	DataBytesSent   uint64
	Retransmissions uint64 // data packets re-sent in answer to NAKs
	NakMissSent     uint64 // NakMiss packets sent (packets gone from the buffer)
	NakMisses       uint64 // NAKed seqs the sender could not serve (gone from the buffer), listed in those NakMiss packets
	RetransmitHeld  uint64 // packets currently kept for retransmission (gauge)
	SessionsSent    uint64

	// Receiver side.
	DataReceived       uint64 // distinct original data packets received directly
	DataBytesReceived  uint64
	Duplicates         uint64 // data packets received again after they were resolved
	MessagesDelivered  uint64
	LossesDetected     uint64 // seqs that became missing (gap, session, repair, NakMiss)
	RecoveredLEC       uint64 // missing packets recovered from repairs
	RecoveredNAK       uint64 // missing packets recovered by retransmission
	LateDirect         uint64 // missing packets that then arrived directly (reordering)
	Unrecoverable      uint64 // packets declared unrecoverable (all causes)
	NakMissReceived    uint64 // seqs reported gone by senders
	NaksSent           uint64 // NAK packets sent
	NakSeqsSent        uint64 // seqs requested in those NAKs
	SessionsReceived   uint64
	JoinSkipped        uint64 // seqs skipped as predating this node (JoinWindow)
	ReassemblyDropped  uint64 // partial messages dropped (timeout, memory)
	DroppedNotMember   uint64 // packets for groups this node is not in
	Malformed          uint64 // packets with inconsistent fields, ignored
	RepairsSent        uint64 // repair packets sent (one per target)
	RepairBytesSent    uint64 // XOR bytes of those
	RepairsReceived    uint64
	RepairBytesRecv    uint64
	RepairsUseless     uint64 // received repairs that named no missing packet (dropped)
	RepairsUnusable    uint64 // repairs needing a packet no longer cached (dropped)
	RepairsHeld        uint64 // repairs kept for iterative recovery
	RepairsExpired     uint64 // held repairs dropped unused (expiry, bound)
	RepairsFlushed     uint64 // repairs built from a partly filled bin (FlushInterval)
	PendingMissing     uint64 // current number of missing seqs (gauge)
	PendingHeldRepairs uint64 // current number of held repairs (gauge)
}

// NewEngine returns an engine for node self. rng drives every random choice
// (repair targets, bin sampling); pass a seeded one for reproducible runs.
func NewEngine(cfg Config, self NodeID, rng *rand.Rand) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if rng == nil {
		return nil, fmt.Errorf("%w: nil *rand.Rand", ErrInvalidConfig)
	}
	e := &Engine{
		cfg:     cfg,
		self:    self,
		rng:     rng,
		groups:  make(map[GroupID]*group),
		senders: make(map[GroupID]*sendStream),
		streams: make(map[streamKey]*stream),
		lossy:   make(map[*stream]struct{}),
	}
	e.cache.init(cfg.PayloadCache)
	e.held.init()
	return e, nil
}

// Self returns this node's ID.
func (e *Engine) Self() NodeID { return e.self }

// Config returns the engine's configuration.
func (e *Engine) Config() Config { return e.cfg }

// Stats returns a snapshot of the counters.
func (e *Engine) Stats() Stats {
	s := e.stats
	n := 0
	for st := range e.lossy {
		n += len(st.missing)
	}
	s.PendingMissing = uint64(n)
	s.PendingHeldRepairs = uint64(e.held.live)
	s.RetransmitHeld = uint64(e.rtx.len())
	return s
}

// group is a multicast group this node is a member of.
type group struct {
	id      GroupID
	members []NodeID // sorted, includes self
	others  []NodeID // members minus self: multicast targets
	isMem   map[NodeID]bool
	regions []*region // this node's regions inside the group
}

// sendStream is this node's sending state in one group.
type sendStream struct {
	last        uint64    // last seq assigned
	announced   uint64    // LastSeq of the last Session sent
	lastSend    time.Time // time of the last original send
	lastSession time.Time
	// buf holds the packets kept for retransmission: seqs first..last,
	// consecutive (the engine drops them oldest first, see evictRetransmit).
	buf   fifo[*Data]
	first uint64
}

func (s *sendStream) lookup(seq uint64) *Data {
	if seq < s.first || seq > s.last || s.buf.len() == 0 {
		return nil
	}
	return s.buf.at(int(seq - s.first))
}

// rtxEntry is one packet in the engine-wide retransmission queue.
type rtxEntry struct {
	g    GroupID
	at   time.Time // when it was sent
	size int       // payload + RetransmitPacketOverhead
}

// keepForRetransmit adds a packet just sent to the retransmission buffer.
func (e *Engine) keepForRetransmit(now time.Time, ss *sendStream, d *Data) {
	if ss.buf.len() == 0 {
		ss.first = d.ID.Seq
	}
	ss.buf.push(d)
	size := len(d.Payload) + RetransmitPacketOverhead
	e.rtx.push(rtxEntry{g: d.ID.Group, at: now, size: size})
	e.rtxBytes += size
}

// evictRetransmit drops the oldest kept packets while the buffer is over
// RetransmitBytes or they were sent more than RetransmitWindow ago. The
// engine-wide queue is in send order, so its front is also the front of
// its group's buffer.
func (e *Engine) evictRetransmit(now time.Time) {
	horizon := now.Add(-e.cfg.RetransmitWindow)
	for e.rtx.len() > 0 {
		old := e.rtx.front()
		if e.rtxBytes <= e.cfg.RetransmitBytes && !old.at.Before(horizon) {
			return
		}
		e.rtx.pop()
		e.rtxBytes -= old.size
		ss := e.senders[old.g]
		ss.buf.pop()
		ss.first++
	}
}

// SetGroup sets the members of group g (self included when this node is a
// member) and recomputes this node's regions. If self is not in members the
// group is removed (as RemoveGroup). Packets are accepted only from members
// (and from former members still remembered). The receive state of a member
// that left is forgotten once nothing of it is pending and it has been
// silent for Config.StreamLinger; if it rejoins later it is a new stream
// (the JoinWindow rule applies). A NodeID must not be reused by a new
// incarnation of a node (whose sequence numbers would restart).
func (e *Engine) SetGroup(g GroupID, members []NodeID) {
	ms := slices.Clone(members)
	slices.Sort(ms)
	ms = slices.Compact(ms)
	if _, ok := slices.BinarySearch(ms, e.self); !ok {
		e.RemoveGroup(g)
		return
	}
	grp := &group{id: g, members: ms, isMem: make(map[NodeID]bool, len(ms))}
	for _, m := range ms {
		grp.isMem[m] = true
		if m != e.self {
			grp.others = append(grp.others, m)
		}
	}
	e.groups[g] = grp
	e.membershipChanged = true
	e.recomputeRegions()
}

// RemoveGroup makes this node leave group g: its receive state is dropped
// (nothing more is delivered or reported for g). The sending state
// (sequence numbers, retransmission buffer) is kept so a later SetGroup
// continues the same stream.
func (e *Engine) RemoveGroup(g GroupID) {
	if _, ok := e.groups[g]; !ok {
		return
	}
	delete(e.groups, g)
	for k, st := range e.streams {
		if k.g == g {
			e.dropStream(st)
		}
	}
	e.recomputeRegions()
}

// Groups returns the groups this node is a member of, sorted.
func (e *Engine) Groups() []GroupID {
	gs := make([]GroupID, 0, len(e.groups))
	for g := range e.groups {
		gs = append(gs, g)
	}
	slices.Sort(gs)
	return gs
}

// Send multicasts payload to group g, fragmenting it into packets of at
// most Config.MaxPayload bytes with consecutive sequence numbers. The
// payload is copied. Errors: ErrNotMember, ErrMessageTooLarge.
func (e *Engine) Send(now time.Time, g GroupID, payload []byte) (Output, error) {
	grp, ok := e.groups[g]
	if !ok {
		return Output{}, fmt.Errorf("%w: group %d", ErrNotMember, g)
	}
	if len(payload) > e.cfg.MaxMessageSize {
		return Output{}, fmt.Errorf("%w: %d bytes > MaxMessageSize %d", ErrMessageTooLarge, len(payload), e.cfg.MaxMessageSize)
	}
	nfrag := max(1, (len(payload)+e.cfg.MaxPayload-1)/e.cfg.MaxPayload)
	ss := e.sendStream(g)
	e.stats.MessagesSent++
	for i := range nfrag {
		lo := i * e.cfg.MaxPayload
		hi := min(len(payload), lo+e.cfg.MaxPayload)
		ss.last++
		d := &Data{
			ID:        PacketID{Group: g, Sender: e.self, Seq: ss.last},
			FragIndex: uint16(i),
			FragCount: uint16(nfrag),
			Payload:   slices.Clone(payload[lo:hi]),
		}
		if d.Payload == nil {
			d.Payload = []byte{}
		}
		e.keepForRetransmit(now, ss, d)
		e.stats.DataSent++
		e.stats.DataBytesSent += uint64(len(d.Payload))
		if len(grp.others) > 0 {
			e.out.Multicasts = append(e.out.Multicasts, Multicast{Group: g, Members: grp.others,
				Packet: &Packet{Kind: KindData, From: e.self, Data: d}})
		}
	}
	ss.lastSend = now
	e.evictRetransmit(now)
	return e.flushOutput(), nil
}

func (e *Engine) sendStream(g GroupID) *sendStream {
	ss := e.senders[g]
	if ss == nil {
		ss = &sendStream{first: 1}
		e.senders[g] = ss
	}
	return ss
}

// Step processes one received packet. The packet is read, never modified,
// and may be retained (payloads are cached for repair decoding).
func (e *Engine) Step(now time.Time, p *Packet) Output {
	if p == nil {
		return Output{}
	}
	switch {
	case p.Kind == KindData && p.Data != nil:
		via := ViaDirect
		if p.Data.Retransmit {
			via = ViaNAK
		}
		e.receiveData(now, p.Data, via)
	case p.Kind == KindRepair && p.Repair != nil:
		e.onRepair(now, p.Repair)
	case p.Kind == KindNak && p.Nak != nil:
		e.onNak(p.From, p.Nak)
	case p.Kind == KindSession && p.Session != nil:
		e.onSession(now, p.Session)
	case p.Kind == KindNakMiss && p.NakMiss != nil:
		e.onNakMiss(now, p.NakMiss)
	default:
		e.stats.Malformed++
	}
	e.settle(now)
	return e.flushOutput()
}

// Tick advances the engine's timers to now: flushes partly filled repair
// bins, sends NAKs (and gives up after NakRetries), sends Sessions, expires
// held repairs, cached payloads and stale partial messages. Call it every
// Config.TickInterval or so; now must not go backwards.
func (e *Engine) Tick(now time.Time) Output {
	e.flushBins(now)
	e.evictRetransmit(now)
	e.tickNaks(now)
	e.tickSessions(now)
	e.held.expire(e, now)
	e.cache.expire(now.Add(-e.cfg.RepairExpiry))
	e.expirePartials(now)
	if e.membershipChanged {
		e.sweepStreams(now)
	}
	e.settle(now)
	return e.flushOutput()
}

// tickSessions announces last sequence numbers: once a stream has been
// idle for SessionInterval after sending, and every SessionRepeat anyway.
func (e *Engine) tickSessions(now time.Time) {
	gs := make([]GroupID, 0, len(e.senders))
	for g := range e.senders {
		gs = append(gs, g)
	}
	slices.Sort(gs)
	for _, g := range gs {
		ss := e.senders[g]
		grp := e.groups[g]
		if grp == nil || ss.last == 0 || len(grp.others) == 0 {
			continue
		}
		idle := ss.last > ss.announced && now.Sub(ss.lastSend) >= e.cfg.SessionInterval
		repeat := now.Sub(ss.lastSession) >= e.cfg.SessionRepeat
		if !idle && !repeat {
			continue
		}
		ss.announced, ss.lastSession = ss.last, now
		e.stats.SessionsSent++
		e.out.Multicasts = append(e.out.Multicasts, Multicast{Group: g, Members: grp.others,
			Packet: &Packet{Kind: KindSession, From: e.self, Session: &Session{Group: g, Sender: e.self, LastSeq: ss.last}}})
	}
}

// onNak answers a NAK for our own packets: retransmit what is still in the
// buffer (unicast, Retransmit=true), NakMiss for the rest.
func (e *Engine) onNak(from NodeID, nk *Nak) {
	if nk.Sender != e.self || from == e.self {
		return
	}
	ss := e.senders[nk.Group]
	var miss []uint64
	for _, seq := range nk.Seqs {
		var d *Data
		if ss != nil {
			d = ss.lookup(seq)
		}
		if d == nil {
			if ss != nil && seq >= 1 && seq <= ss.last {
				miss = append(miss, seq)
			}
			continue
		}
		r := *d
		r.Retransmit = true
		e.stats.Retransmissions++
		e.out.Unicasts = append(e.out.Unicasts, Unicast{To: from, Packet: &Packet{Kind: KindData, From: e.self, Data: &r}})
	}
	for len(miss) > 0 {
		n := min(len(miss), e.cfg.MaxNakSeqs)
		e.stats.NakMissSent++
		e.stats.NakMisses += uint64(n)
		e.out.Unicasts = append(e.out.Unicasts, Unicast{To: from, Packet: &Packet{Kind: KindNakMiss, From: e.self,
			NakMiss: &NakMiss{Group: nk.Group, Sender: e.self, Seqs: slices.Clone(miss[:n])}}})
		miss = miss[n:]
	}
}

// flushOutput returns the accumulated output and resets it.
func (e *Engine) flushOutput() Output {
	o := e.out
	e.out = Output{}
	if len(o.Unrecoverable) > 1 {
		o.Unrecoverable = mergeRanges(o.Unrecoverable)
	}
	return o
}

// mergeRanges sorts ranges and merges adjacent/overlapping ones of the same stream.
func mergeRanges(rs []PacketRange) []PacketRange {
	slices.SortFunc(rs, func(a, b PacketRange) int {
		return cmp.Or(cmp.Compare(a.Group, b.Group), cmp.Compare(a.Sender, b.Sender), cmp.Compare(a.First, b.First))
	})
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if r.Group == last.Group && r.Sender == last.Sender && r.First <= last.Last+1 {
			last.Last = max(last.Last, r.Last)
			continue
		}
		out = append(out, r)
	}
	return out
}

// fifo is a queue on a slice: push at the back, pop at the front, indexed
// access from the front. Amortized O(1); the slice is compacted when more
// than half of it is popped space.
type fifo[T any] struct {
	buf  []T
	head int
}

func (q *fifo[T]) len() int   { return len(q.buf) - q.head }
func (q *fifo[T]) push(v T)   { q.buf = append(q.buf, v) }
func (q *fifo[T]) front() T   { return q.buf[q.head] }
func (q *fifo[T]) at(i int) T { return q.buf[q.head+i] }

func (q *fifo[T]) pop() T {
	v := q.buf[q.head]
	var zero T
	q.buf[q.head] = zero
	q.head++
	switch {
	case q.head == len(q.buf):
		q.buf, q.head = q.buf[:0], 0
	case q.head >= 256 && 2*q.head >= len(q.buf):
		n := copy(q.buf, q.buf[q.head:])
		clear(q.buf[n:])
		q.buf, q.head = q.buf[:n], 0
	}
	return v
}
