package ricochet

import (
	"cmp"
	"slices"
	"time"
)

// streamKey names one (group, sender) stream.
type streamKey struct {
	g GroupID
	s NodeID
}

// stream is the receive state of one (group, sender) stream.
//
// Invariants: base <= highest; every seq <= base is resolved (delivered,
// being reassembled, or declared unrecoverable); every seq in (base,
// highest] is in exactly one of done and missing; highest - base <= MaxGap.
type stream struct {
	key     streamKey
	base    uint64
	highest uint64
	done    map[uint64]struct{}
	missing map[uint64]*miss
	msgs    map[uint64]*partial // partial messages by first seq

	lastActive time.Time // last packet of or about this stream (for sweepStreams)
}

// miss is a packet known to exist but not received yet.
type miss struct {
	detected time.Time     // when this node learned it was missing
	due      time.Time     // when the next NAK (or giving up) is due
	naks     int           // NAKs sent so far
	wait     time.Duration // wait after the next NAK (NakRetryInterval, doubling up to NakRetryMax)
}

func (st *stream) id(seq uint64) PacketID {
	return PacketID{Group: st.key.g, Sender: st.key.s, Seq: seq}
}

func (st *stream) resolved(seq uint64) bool {
	if seq <= st.base {
		return true
	}
	_, ok := st.done[seq]
	return ok
}

// getStream returns the stream for (g, s), creating it on first contact at
// sequence number first: the seqs before first are then tracked as lost if
// there are at most JoinWindow of them, else skipped as history predating
// this node.
func (e *Engine) getStream(g GroupID, s NodeID, first uint64) *stream {
	k := streamKey{g, s}
	if st := e.streams[k]; st != nil {
		return st
	}
	st := &stream{key: k, done: make(map[uint64]struct{}), missing: make(map[uint64]*miss), msgs: make(map[uint64]*partial)}
	if first > 0 && first-1 > uint64(e.cfg.JoinWindow) {
		st.base, st.highest = first-1, first-1
		e.stats.JoinSkipped += first - 1
	}
	e.streams[k] = st
	return st
}

// knownSender reports whether packets of sender s in grp are accepted: s
// is a member, or a former member whose stream is still remembered (see
// sweepStreams). Refusing strangers keeps per-stream state bounded by the
// membership and means a forgotten stream is never re-created by a late
// duplicate (which would then be delivered again). A packet refused
// during a join (membership applied here later than at the sender) is
// recovered afterwards: the next packet reveals the gap.
func (e *Engine) knownSender(grp *group, s NodeID) bool {
	if grp.isMem[s] {
		return true
	}
	_, ok := e.streams[streamKey{grp.id, s}]
	return ok
}

// markMissing records seq as newly missing.
func (e *Engine) markMissing(st *stream, seq uint64, now time.Time) {
	st.missing[seq] = &miss{detected: now, due: now.Add(e.cfg.NakTimeout), wait: e.cfg.NakRetryInterval}
	e.lossy[st] = struct{}{}
	e.stats.LossesDetected++
}

// advanceHighest learns that seqs up to high exist. The seqs between the
// old highest and high become missing (high itself too when markHigh: it
// was learned from a Session, repair or NakMiss rather than received).
// When the window (base, high] would exceed MaxGap, its oldest part is
// declared unrecoverable so per-stream state stays bounded.
func (e *Engine) advanceHighest(st *stream, high uint64, now time.Time, markHigh bool) {
	if high <= st.highest {
		return
	}
	lo := st.highest + 1
	if high-st.base > uint64(e.cfg.MaxGap) {
		cut := high - uint64(e.cfg.MaxGap) // seqs <= cut are given up
		end := min(cut, st.highest)
		for seq := st.base + 1; seq <= end; seq++ {
			if _, ok := st.missing[seq]; ok {
				e.declareLost(st, seq, now)
			}
		}
		for seq := st.base + 1; seq <= end; seq++ { // all resolved now
			delete(st.done, seq)
		}
		if cut > st.highest {
			n := cut - st.highest
			e.stats.LossesDetected += n
			e.stats.Unrecoverable += n
			e.out.Unrecoverable = append(e.out.Unrecoverable, PacketRange{Group: st.key.g, Sender: st.key.s, First: st.highest + 1, Last: cut})
			lo = cut + 1
		}
		st.base = max(st.base, cut)
		e.advanceBase(st)
	}
	for seq := lo; seq < high; seq++ {
		e.markMissing(st, seq, now)
	}
	if markHigh && high >= lo {
		e.markMissing(st, high, now)
	}
	st.highest = high
}

// resolve marks seq resolved and advances base over resolved seqs.
func (e *Engine) resolve(st *stream, seq uint64) {
	if _, ok := st.missing[seq]; ok {
		delete(st.missing, seq)
		if len(st.missing) == 0 {
			delete(e.lossy, st)
		}
	}
	if seq <= st.base {
		return
	}
	st.done[seq] = struct{}{}
	e.advanceBase(st)
}

func (e *Engine) advanceBase(st *stream) {
	for {
		if _, ok := st.done[st.base+1]; !ok {
			return
		}
		delete(st.done, st.base+1)
		st.base++
	}
}

// declareLost gives up on a missing seq: it is reported unrecoverable, and
// the partial message containing it (if any) is dropped.
func (e *Engine) declareLost(st *stream, seq uint64, now time.Time) {
	if _, ok := st.missing[seq]; !ok {
		return
	}
	e.resolve(st, seq)
	e.stats.Unrecoverable++
	e.out.Unrecoverable = append(e.out.Unrecoverable, PacketRange{Group: st.key.g, Sender: st.key.s, First: seq, Last: seq})
	e.held.dropNeeding(st.id(seq))
	for _, p := range st.msgs {
		if seq >= p.first && seq < p.first+uint64(len(p.frags)) {
			// Its message can no longer complete. Dropped in settle, not
			// here: declareLost may run inside advanceHighest, which
			// killPartial calls.
			if !p.doomed {
				p.doomed = true
				e.killQ = append(e.killQ, p)
			}
			break
		}
	}
}

// validData checks the fields the engine relies on (the wire decoder
// checks them too; the in-memory transport does not).
func validData(d *Data) bool {
	return d.ID.Seq >= 1 && d.FragCount >= 1 && d.FragIndex < d.FragCount && d.ID.Seq > uint64(d.FragIndex)
}

// receiveData is the common path of a data packet however it arrived.
func (e *Engine) receiveData(now time.Time, d *Data, via Via) {
	if !validData(d) {
		e.stats.Malformed++
		return
	}
	if d.ID.Sender == e.self {
		return // our own packet looped back
	}
	grp := e.groups[d.ID.Group]
	if grp == nil || !e.knownSender(grp, d.ID.Sender) {
		e.stats.DroppedNotMember++
		return
	}
	st := e.getStream(d.ID.Group, d.ID.Sender, d.ID.Seq)
	st.lastActive = now
	seq := d.ID.Seq
	if st.resolved(seq) {
		if via != ViaLEC { // a redundant LEC recovery is not a network duplicate
			e.stats.Duplicates++
		}
		return
	}
	var latency time.Duration
	if seq > st.highest {
		e.advanceHighest(st, seq, now, false)
		if st.resolved(seq) { // the MaxGap cut cannot reach seq itself, but stay safe
			return
		}
	} else if m := st.missing[seq]; m != nil {
		latency = now.Sub(m.detected)
		switch via {
		case ViaLEC:
			e.stats.RecoveredLEC++
		case ViaNAK:
			e.stats.RecoveredNAK++
		default:
			e.stats.LateDirect++
		}
	}
	if via == ViaDirect {
		e.stats.DataReceived++
		e.stats.DataBytesReceived += uint64(len(d.Payload))
	}
	e.resolve(st, seq)
	e.cache.add(d, now)
	e.held.resolve(e, d)
	if via == ViaDirect && !e.cfg.DisableLEC {
		e.addToBins(now, grp, d)
	}
	e.assemble(now, st, d, via, latency)
}

// settle finishes the work queued while handling one input: LEC
// recoveries (each may complete held repairs and queue more: iterative
// recovery) and partial messages doomed by an unrecoverable fragment.
func (e *Engine) settle(now time.Time) {
	for len(e.recoverQ) > 0 || len(e.killQ) > 0 {
		if len(e.recoverQ) > 0 {
			d := e.recoverQ[0]
			e.recoverQ = e.recoverQ[1:]
			e.receiveData(now, d, ViaLEC)
			continue
		}
		p := e.killQ[0]
		e.killQ = e.killQ[1:]
		e.killPartial(p.st, p, now)
	}
	e.recoverQ, e.killQ = nil, nil
}

// onSession learns a sender's last sequence number (tail-loss detection).
func (e *Engine) onSession(now time.Time, s *Session) {
	e.stats.SessionsReceived++
	if s.Sender == e.self || s.LastSeq == 0 {
		return
	}
	if grp := e.groups[s.Group]; grp == nil || !e.knownSender(grp, s.Sender) {
		e.stats.DroppedNotMember++
		return
	}
	st := e.getStream(s.Group, s.Sender, s.LastSeq+1)
	st.lastActive = now
	e.advanceHighest(st, s.LastSeq, now, true)
}

// onNakMiss: the sender no longer has these packets.
func (e *Engine) onNakMiss(now time.Time, m *NakMiss) {
	st := e.streams[streamKey{m.Group, m.Sender}]
	if st == nil || e.groups[m.Group] == nil {
		return
	}
	for _, seq := range m.Seqs {
		if seq == 0 || st.resolved(seq) {
			continue
		}
		e.stats.NakMissReceived++
		e.advanceHighest(st, seq, now, true)
		e.declareLost(st, seq, now)
	}
}

// tickNaks sends due NAKs and gives up on packets whose retries ran out.
func (e *Engine) tickNaks(now time.Time) {
	if len(e.lossy) == 0 {
		return
	}
	sts := make([]*stream, 0, len(e.lossy))
	for st := range e.lossy {
		sts = append(sts, st)
	}
	slices.SortFunc(sts, func(a, b *stream) int {
		return cmp.Or(cmp.Compare(a.key.g, b.key.g), cmp.Compare(a.key.s, b.key.s))
	})
	var due []uint64
	for _, st := range sts {
		due = due[:0]
		for seq, m := range st.missing {
			if !m.due.After(now) {
				due = append(due, seq)
			}
		}
		if len(due) == 0 {
			continue
		}
		slices.Sort(due)
		var nak []uint64
		for _, seq := range due {
			m := st.missing[seq]
			if m == nil { // resolved meanwhile (a lost seq killed its message)
				continue
			}
			if m.naks >= e.cfg.NakRetries {
				e.declareLost(st, seq, now)
				continue
			}
			m.naks++
			// Exponential backoff: a sender that is slow to answer (a
			// stalled process, a loaded machine) is asked again later
			// rather than given up on after a short fixed delay.
			m.due = now.Add(m.wait)
			m.wait = min(2*m.wait, e.cfg.NakRetryMax)
			nak = append(nak, seq)
		}
		for len(nak) > 0 {
			n := min(len(nak), e.cfg.MaxNakSeqs)
			e.stats.NaksSent++
			e.stats.NakSeqsSent += uint64(n)
			e.out.Unicasts = append(e.out.Unicasts, Unicast{To: st.key.s, Packet: &Packet{Kind: KindNak, From: e.self,
				Nak: &Nak{Group: st.key.g, Sender: st.key.s, Seqs: slices.Clone(nak[:n])}}})
			nak = nak[n:]
		}
	}
}

// dropStream forgets a stream (this node left its group).
func (e *Engine) dropStream(st *stream) {
	for _, p := range st.msgs {
		e.partials.remove(p)
	}
	delete(e.lossy, st)
	delete(e.streams, st.key)
}

// sweepStreams forgets the streams of senders no longer in their group once
// nothing of theirs is pending and they have been silent for StreamLinger
// (until then late packets and duplicates are still recognised; after it,
// packets from them are refused as from a non-member).
func (e *Engine) sweepStreams(now time.Time) {
	e.membershipChanged = false
	for k, st := range e.streams {
		grp := e.groups[k.g]
		if grp != nil && grp.isMem[k.s] {
			continue
		}
		if len(st.missing) == 0 && len(st.msgs) == 0 && now.Sub(st.lastActive) >= e.cfg.StreamLinger {
			delete(e.streams, k)
		} else {
			e.membershipChanged = true // look again later
		}
	}
}

// partial is a fragmented message being reassembled.
type partial struct {
	st      *stream
	first   uint64   // seq of fragment 0
	frags   [][]byte // nil until received
	have    int
	bytes   int
	via     Via
	latency time.Duration
	started time.Time
	qidx    int  // index in partialQueue (-1 when removed)
	doomed  bool // queued for killPartial
}

// partialQueue keeps partial messages oldest first, for the timeout and
// the memory bound.
type partialQueue struct {
	q     []*partial
	head  int
	bytes int
}

func (pq *partialQueue) push(p *partial) {
	p.qidx = len(pq.q)
	pq.q = append(pq.q, p)
}

func (pq *partialQueue) remove(p *partial) {
	if p.qidx < 0 {
		return
	}
	pq.q[p.qidx] = nil
	p.qidx = -1
	pq.bytes -= p.bytes
}

// oldest returns the oldest live partial, compacting the queue.
func (pq *partialQueue) oldest() *partial {
	for pq.head < len(pq.q) && pq.q[pq.head] == nil {
		pq.head++
	}
	if pq.head > 64 && pq.head*2 > len(pq.q) {
		n := copy(pq.q, pq.q[pq.head:])
		clear(pq.q[n:])
		pq.q = pq.q[:n]
		pq.head = 0
		for i, p := range pq.q {
			if p != nil {
				p.qidx = i
			}
		}
	}
	if pq.head < len(pq.q) {
		return pq.q[pq.head]
	}
	return nil
}

// assemble delivers a single-fragment message at once, or stores the
// fragment and delivers the message when its last fragment is there.
func (e *Engine) assemble(now time.Time, st *stream, d *Data, via Via, latency time.Duration) {
	if d.FragCount == 1 {
		e.deliver(Delivery{ID: d.ID, Payload: append([]byte{}, d.Payload...), Fragments: 1, Via: via, Latency: latency})
		return
	}
	first := d.ID.Seq - uint64(d.FragIndex)
	p := st.msgs[first]
	if p == nil {
		p = &partial{st: st, first: first, frags: make([][]byte, d.FragCount), started: now}
		st.msgs[first] = p
		e.partials.push(p)
	}
	if p.doomed {
		return // its message is being dropped (a fragment is unrecoverable)
	}
	if len(p.frags) != int(d.FragCount) || p.frags[d.FragIndex] != nil {
		e.stats.Malformed++ // fragments disagree on the message's shape
		return
	}
	p.frags[d.FragIndex] = d.Payload
	p.have++
	p.bytes += len(d.Payload)
	e.partials.bytes += len(d.Payload)
	p.via = max(p.via, via)
	p.latency = max(p.latency, latency)
	if p.have < len(p.frags) {
		for e.partials.bytes > e.cfg.MaxReassemblyBytes {
			old := e.partials.oldest()
			if old == nil {
				break
			}
			e.killPartial(old.st, old, now)
		}
		return
	}
	e.partials.remove(p)
	delete(st.msgs, first)
	msg := make([]byte, 0, p.bytes)
	for _, f := range p.frags {
		msg = append(msg, f...)
	}
	e.deliver(Delivery{ID: st.id(first), Payload: msg, Fragments: len(p.frags), Via: p.via, Latency: p.latency})
}

func (e *Engine) deliver(d Delivery) {
	e.stats.MessagesDelivered++
	e.out.Deliveries = append(e.out.Deliveries, d)
}

// killPartial drops a partial message that cannot (or may no longer)
// complete; its unresolved fragments are declared unrecoverable so the
// message is reported lost.
func (e *Engine) killPartial(st *stream, p *partial, now time.Time) {
	if p.qidx < 0 {
		return
	}
	e.partials.remove(p)
	delete(st.msgs, p.first)
	e.stats.ReassemblyDropped++
	last := p.first + uint64(len(p.frags)) - 1
	e.advanceHighest(st, last, now, true)
	for seq := p.first; seq <= last; seq++ {
		e.declareLost(st, seq, now)
	}
}

// expirePartials drops partial messages older than ReassemblyTimeout.
func (e *Engine) expirePartials(now time.Time) {
	for {
		p := e.partials.oldest()
		if p == nil || now.Sub(p.started) < e.cfg.ReassemblyTimeout {
			return
		}
		e.killPartial(p.st, p, now)
	}
}
