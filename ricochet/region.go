package ricochet

import (
	"crypto/subtle"
	"slices"
	"strconv"
	"strings"
	"time"
)

// region is a set of other nodes that share exactly the same groups with
// this node. Repair bins are kept per region: a packet received in group g
// goes to the bins of the regions inside g, so a repair mixes packets of
// every group the region shares, and its targets (chosen in the region) are
// receivers of all of them.
//
// How many repairs go to each region: for a packet of group g from sender s
// there are n = |g| - 2 other receivers (neither this node nor s); region R
// holds m of them. The paper's rule is that c repairs per r packets go to
// the group as a whole, spread over its regions in proportion to their
// size: c*m/n per r packets to R. A full bin is sent to about min(c, m)
// targets (see emitRepair), so the packet joins R's bin with probability
// p = (c*m/n) / min(c, m) (capped at 1). With one region per group (all
// groups with the same members, or a single group) p = 1. Sampling is per
// packet, from the engine's seeded *rand.Rand.
type region struct {
	key     string
	groups  []GroupID // groups shared with every member, sorted
	members []NodeID  // sorted
	isMem   map[NodeID]bool
	bins    []*bin
	order   []int // bin order of the current round (a permutation of bins)
	next    int   // position in order of the bin to fill next
}

// bin accumulates packets into one repair.
type bin struct {
	entries []RepairEntry
	xor     []byte
	started time.Time // when the first entry was added
	// size is the number of entries at which the bin is sent: R, except for
	// a new bin's first repair, whose size is random in [1, R]. Every
	// receiver sees the same packet sequence, so without this phase shift
	// all receivers' bins would close on the same packets and their repairs
	// would cover the same packets: two losses close together would then be
	// in every repair a node receives, and none could be decoded. With
	// random phases, some repair holds one loss without the other, and
	// iterative recovery does the rest.
	size int
}

// recomputeRegions rebuilds the regions from the current groups, keeping
// the bins of regions that still exist (same set of shared groups).
func (e *Engine) recomputeRegions() {
	shared := make(map[NodeID][]GroupID)
	gids := e.Groups()
	for _, g := range gids {
		for _, m := range e.groups[g].others {
			shared[m] = append(shared[m], g)
		}
	}
	old := make(map[string]*region, len(e.regions))
	for _, r := range e.regions {
		old[r.key] = r
	}
	byKey := make(map[string]*region)
	nodes := make([]NodeID, 0, len(shared))
	for n := range shared {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	for _, n := range nodes {
		gs := shared[n]
		k := regionKey(gs)
		r := byKey[k]
		if r == nil {
			r = &region{key: k, groups: gs, isMem: make(map[NodeID]bool)}
			if o := old[k]; o != nil {
				r.bins, r.order, r.next = o.bins, o.order, o.next
			} else {
				r.bins = make([]*bin, e.cfg.BinsPerRegion)
				for i := range r.bins {
					r.bins[i] = &bin{size: 1 + e.rng.IntN(e.cfg.R)}
				}
				r.order = make([]int, len(r.bins))
				for i := range r.order {
					r.order[i] = i
				}
				r.next = len(r.order) // shuffle before first use
			}
			byKey[k] = r
		}
		r.members = append(r.members, n)
		r.isMem[n] = true
	}
	e.regions = e.regions[:0]
	for _, r := range byKey {
		e.regions = append(e.regions, r)
	}
	slices.SortFunc(e.regions, func(a, b *region) int { return strings.Compare(a.key, b.key) })
	for _, g := range gids {
		grp := e.groups[g]
		grp.regions = grp.regions[:0]
		for _, r := range e.regions {
			if _, ok := slices.BinarySearch(r.groups, g); ok {
				grp.regions = append(grp.regions, r)
			}
		}
	}
}

func regionKey(gs []GroupID) string {
	var b strings.Builder
	for i, g := range gs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(uint64(g), 10))
	}
	return b.String()
}

// Regions returns this node's regions as lists of member IDs, in a fixed
// order (for tests and diagnostics).
func (e *Engine) Regions() [][]NodeID {
	out := make([][]NodeID, len(e.regions))
	for i, r := range e.regions {
		out[i] = slices.Clone(r.members)
	}
	return out
}

// addToBins folds a directly received data packet into the bins of the
// regions of its group (see region for the sampling rule).
func (e *Engine) addToBins(now time.Time, grp *group, d *Data) {
	s := d.ID.Sender
	n := len(grp.others)
	if grp.isMem[s] {
		n--
	}
	c := e.cfg.C
	for _, r := range grp.regions {
		m := len(r.members)
		if r.isMem[s] {
			m--
		}
		if m <= 0 {
			continue
		}
		k := min(c, m)
		if num, den := c*m, n*k; num < den && e.rng.IntN(den) >= num {
			continue
		}
		b := r.bins[e.nextBin(r)]
		if len(b.entries) == 0 {
			b.started = now
		}
		b.entries = append(b.entries, RepairEntry{ID: d.ID, FragIndex: d.FragIndex, FragCount: d.FragCount, Length: uint32(len(d.Payload))})
		if len(d.Payload) > len(b.xor) {
			b.xor = append(b.xor, make([]byte, len(d.Payload)-len(b.xor))...)
		}
		xorInto(b.xor, d.Payload)
		if len(b.entries) >= b.size {
			e.emitRepair(r, b)
		}
	}
}

// nextBin returns the bin for the next packet of region r. Bins are filled
// in rounds: each round puts one packet in every bin (so a burst of losses
// is spread over the bins: staggering), in an order drawn at random per
// round when StaggerShuffle is on. The shuffle decorrelates receivers: with
// a fixed order every receiver would put the same packets together (they
// all see the same sequence), so two losses close together at one node
// would sit in the same repair from every other node and block each other.
func (e *Engine) nextBin(r *region) int {
	if r.next >= len(r.order) {
		r.next = 0
		if e.cfg.StaggerShuffle {
			e.rng.Shuffle(len(r.order), func(i, j int) { r.order[i], r.order[j] = r.order[j], r.order[i] })
		}
	}
	b := r.order[r.next]
	r.next++
	return b
}

// xorInto sets dst[i] ^= src[i] for i < len(src); len(dst) >= len(src).
func xorInto(dst, src []byte) {
	subtle.XORBytes(dst[:len(src)], dst[:len(src)], src)
}

// emitRepair sends bin b of region r to random members of r and empties
// the bin. Candidates are the members except a node that sent every packet
// in the bin (it needs none of them). The paper sends each repair to c
// receivers of its packets; when a bin mixes packets of several senders
// that are themselves region members, a candidate is, on average, a
// receiver of only part of the entries (not of its own packets). The
// number of targets k is then scaled so that each entry reaches C of its
// receivers in expectation: k = C * candidates / (mean receivers per entry
// among the candidates), rounded at random to an integer with that mean,
// and at most the number of candidates. With one sender (or senders
// outside the region) k = C.
func (e *Engine) emitRepair(r *region, b *bin) {
	entries, xor := b.entries, b.xor
	b.entries, b.xor, b.size = nil, nil, e.cfg.R
	targets := make([]NodeID, 0, len(r.members))
	for _, m := range r.members {
		senderOfAll := true
		for i := range entries {
			if entries[i].ID.Sender != m {
				senderOfAll = false
				break
			}
		}
		if !senderOfAll {
			targets = append(targets, m)
		}
	}
	if len(targets) == 0 {
		return
	}
	ownIn := 0 // entries whose sender is a candidate (not a receiver of it)
	for i := range entries {
		if _, ok := slices.BinarySearch(targets, entries[i].ID.Sender); ok {
			ownIn++
		}
	}
	k := e.cfg.C
	if ownIn > 0 {
		n := len(targets)
		// k = C*n / (n - ownIn/len(entries)), as an exact fraction num/den.
		num, den := e.cfg.C*n*len(entries), n*len(entries)-ownIn
		k = num / den
		if e.rng.IntN(den) < num%den {
			k++
		}
	}
	k = min(k, len(targets))
	for i := range k { // partial Fisher-Yates
		j := i + e.rng.IntN(len(targets)-i)
		targets[i], targets[j] = targets[j], targets[i]
	}
	p := &Packet{Kind: KindRepair, From: e.self, Repair: &Repair{Entries: entries, XOR: xor}}
	for _, t := range targets[:k] {
		e.stats.RepairsSent++
		e.stats.RepairBytesSent += uint64(len(xor))
		e.out.Unicasts = append(e.out.Unicasts, Unicast{To: t, Packet: p})
	}
}

// flushBins sends every partly filled bin older than FlushInterval.
func (e *Engine) flushBins(now time.Time) {
	for _, r := range e.regions {
		for _, b := range r.bins {
			if len(b.entries) > 0 && now.Sub(b.started) >= e.cfg.FlushInterval {
				e.stats.RepairsFlushed++
				e.emitRepair(r, b)
			}
		}
	}
}

// onRepair decodes a repair: XOR out every packet this node has; if one
// packet is left it is recovered, if none the repair is dropped, if more it
// is held until enough of them arrive (iterative recovery). Entries this
// node did not know about reveal losses (gap detection by repair).
func (e *Engine) onRepair(now time.Time, rp *Repair) {
	e.stats.RepairsReceived++
	e.stats.RepairBytesRecv += uint64(len(rp.XOR))
	if e.cfg.DisableLEC {
		return
	}
	if len(rp.Entries) == 0 {
		e.stats.Malformed++
		return
	}
	for i := range rp.Entries {
		en := &rp.Entries[i]
		if int(en.Length) > len(rp.XOR) || en.ID.Seq < 1 || en.FragCount < 1 || en.FragIndex >= en.FragCount || en.ID.Seq <= uint64(en.FragIndex) {
			e.stats.Malformed++
			return
		}
	}
	xor := slices.Clone(rp.XOR)
	var need []RepairEntry
	gone := false
	for _, en := range rp.Entries {
		var have []byte
		switch {
		case en.ID.Sender == e.self:
			if ss := e.senders[en.ID.Group]; ss != nil {
				if d := ss.lookup(en.ID.Seq); d != nil {
					have = d.Payload
				}
			}
			if have == nil {
				gone = true
			}
		case e.groups[en.ID.Group] == nil || !e.knownSender(e.groups[en.ID.Group], en.ID.Sender):
			gone = true
		default:
			st := e.getStream(en.ID.Group, en.ID.Sender, en.ID.Seq)
			st.lastActive = now
			if st.resolved(en.ID.Seq) {
				if have = e.cache.get(en.ID); have == nil {
					gone = true
				}
				break
			}
			e.advanceHighest(st, en.ID.Seq, now, true)
			if st.resolved(en.ID.Seq) { // cannot happen (the MaxGap cut spares high)
				gone = true
				break
			}
			need = append(need, en)
		}
		if have != nil {
			if len(have) != int(en.Length) {
				e.stats.Malformed++ // the repair disagrees with the packet we have
				return
			}
			xorInto(xor, have)
		}
	}
	switch {
	case gone:
		e.stats.RepairsUnusable++
	case len(need) == 0:
		e.stats.RepairsUseless++
	case len(need) == 1:
		e.recoverQ = append(e.recoverQ, recovered(need[0], xor))
	default:
		e.stats.RepairsHeld++
		e.held.add(e, &heldRepair{need: need, xor: xor, expires: now.Add(e.cfg.RepairExpiry)})
	}
}

// recovered rebuilds the data packet en from a repair reduced to it.
func recovered(en RepairEntry, xor []byte) *Data {
	return &Data{ID: en.ID, FragIndex: en.FragIndex, FragCount: en.FragCount, Payload: slices.Clone(xor[:en.Length])}
}

// heldRepair is a repair still missing two or more of its packets.
type heldRepair struct {
	need    []RepairEntry
	xor     []byte // the XOR with every packet not in need removed
	expires time.Time
	dead    bool
}

// heldRepairs indexes held repairs by the packets they need; a FIFO (in
// expiry order, since every repair is held for RepairExpiry) bounds them.
type heldRepairs struct {
	byID map[PacketID][]*heldRepair
	fifo []*heldRepair
	head int
	live int
}

func (h *heldRepairs) init() { h.byID = make(map[PacketID][]*heldRepair) }

func (h *heldRepairs) add(e *Engine, r *heldRepair) {
	if e.cfg.MaxHeldRepairs == 0 {
		e.stats.RepairsExpired++
		return
	}
	for h.live >= e.cfg.MaxHeldRepairs {
		old := h.pop()
		if old == nil {
			break
		}
		h.kill(old)
		e.stats.RepairsExpired++
	}
	h.fifo = append(h.fifo, r)
	h.live++
	for _, en := range r.need {
		h.byID[en.ID] = append(h.byID[en.ID], r)
	}
}

// pop removes and returns the oldest live repair (nil if none).
func (h *heldRepairs) pop() *heldRepair {
	r := h.peek()
	if r != nil {
		h.fifo[h.head] = nil
		h.head++
		h.compact()
	}
	return r
}

// peek returns the oldest live repair (nil if none), discarding dead ones.
func (h *heldRepairs) peek() *heldRepair {
	for h.head < len(h.fifo) && h.fifo[h.head].dead {
		h.fifo[h.head] = nil
		h.head++
	}
	h.compact()
	if h.head < len(h.fifo) {
		return h.fifo[h.head]
	}
	return nil
}

// compact reclaims the consumed front of the FIFO.
func (h *heldRepairs) compact() {
	if h.head > 64 && h.head*2 > len(h.fifo) {
		n := copy(h.fifo, h.fifo[h.head:])
		clear(h.fifo[n:])
		h.fifo = h.fifo[:n]
		h.head = 0
	}
}

// kill marks r dead and unindexes it.
func (h *heldRepairs) kill(r *heldRepair) {
	if r == nil || r.dead {
		return
	}
	r.dead = true
	h.live--
	for _, en := range r.need {
		h.unindex(en.ID, r)
	}
}

func (h *heldRepairs) unindex(id PacketID, r *heldRepair) {
	l := h.byID[id]
	if i := slices.Index(l, r); i >= 0 {
		l = slices.Delete(l, i, i+1)
	}
	if len(l) == 0 {
		delete(h.byID, id)
	} else {
		h.byID[id] = l
	}
}

// resolve XORs the now available packet d out of the repairs needing it;
// a repair left with one missing packet yields its recovery.
func (h *heldRepairs) resolve(e *Engine, d *Data) {
	l := h.byID[d.ID]
	if len(l) == 0 {
		return
	}
	delete(h.byID, d.ID)
	for _, r := range l {
		if r.dead {
			continue
		}
		i := slices.IndexFunc(r.need, func(en RepairEntry) bool { return en.ID == d.ID })
		if i < 0 || int(r.need[i].Length) != len(d.Payload) {
			h.kill(r)
			continue
		}
		xorInto(r.xor, d.Payload)
		r.need = slices.Delete(r.need, i, i+1)
		switch len(r.need) {
		case 0:
			h.kill(r)
		case 1:
			e.recoverQ = append(e.recoverQ, recovered(r.need[0], r.xor))
			h.kill(r)
		}
	}
}

// dropNeeding drops the repairs that need id (declared unrecoverable).
func (h *heldRepairs) dropNeeding(id PacketID) {
	for _, r := range slices.Clone(h.byID[id]) {
		h.kill(r)
	}
	delete(h.byID, id)
}

// expire drops held repairs past their expiry.
func (h *heldRepairs) expire(e *Engine, now time.Time) {
	for {
		r := h.peek()
		if r == nil || r.expires.After(now) {
			return
		}
		h.pop()
		h.kill(r)
		e.stats.RepairsExpired++
	}
}

// payloadCache keeps the payloads of recently received packets so they can
// be XORed out of repairs that arrive later. Bounded by count and by age
// (RepairExpiry).
type payloadCache struct {
	max  int
	m    map[PacketID][]byte
	fifo []cacheEntry
	head int
}

type cacheEntry struct {
	id PacketID
	at time.Time
}

func (c *payloadCache) init(max int) {
	c.max = max
	c.m = make(map[PacketID][]byte)
}

func (c *payloadCache) add(d *Data, now time.Time) {
	if c.max == 0 {
		return
	}
	if _, ok := c.m[d.ID]; ok {
		return
	}
	for len(c.m) >= c.max {
		c.popOldest()
	}
	c.m[d.ID] = d.Payload
	c.fifo = append(c.fifo, cacheEntry{d.ID, now})
}

func (c *payloadCache) get(id PacketID) []byte { return c.m[id] }

func (c *payloadCache) popOldest() {
	ent := c.fifo[c.head]
	c.fifo[c.head] = cacheEntry{}
	c.head++
	delete(c.m, ent.id)
	if c.head > 64 && c.head*2 > len(c.fifo) {
		n := copy(c.fifo, c.fifo[c.head:])
		c.fifo = c.fifo[:n]
		c.head = 0
	}
}

// expire drops entries added before cutoff.
func (c *payloadCache) expire(cutoff time.Time) {
	for c.head < len(c.fifo) && c.fifo[c.head].at.Before(cutoff) {
		c.popOldest()
	}
}
