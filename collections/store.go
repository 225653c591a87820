package collections

import (
	"container/heap"
	"fmt"
	"math"
	"slices"

	"github.com/tempestrt/tempest/proto/tempestpb"
)

// MaxSeq is the largest op sequence number accepted (2^62). Larger seqs
// (only corrupt or hostile input) are rejected so counters cannot wrap.
const MaxSeq = 1 << 62

// Store is one replica's state of one service: its declared collections,
// each item's history, what is known of every origin's op stream, and the
// hybrid logical clock that stamps this replica's ops.
//
// # Consistency
//
// Every op on an item is ordered by (timestamp, origin, seq). A replica
// applies ops as they come (optimistically): an op that arrives after ops
// ordered later than it is inserted at its place and the item is rolled
// back and replayed, so after the same set of ops every replica holds the
// same value whatever the arrival order, duplication or delay
// (per-item sequential consistency; there is no cross-item order).
//
// An op is stable once no op ordered before it can still arrive: its
// timestamp is at or before the stable point, the minimum over the
// replica's origins (SetOrigins) of the time up to which that origin's
// stream is known (see originState). Stable ops are folded into the item's
// base value (Compact) and reported to Config.OnStable in order.
//
// # Reads
//
// Reads (Map.Get, List.All, ...) see the replica's current value, stable
// ops plus tentative ones; Stable methods tell whether an item has
// tentative ops. Read results are freshly decoded, never shared with the
// store.
//
// # Ownership and concurrency
//
// A Store is not safe for concurrent use: one goroutine (the clone's
// scheduler actor) drives it. Ops passed to Deliver and snapshots passed
// to Restore become the store's: the caller must not modify them later.
// Ops returned by Update and snapshots returned by Snapshot share memory
// with the store and must not be modified (marshalling them is fine).
type Store struct {
	cfg Config
	hlc *HLC

	colls     map[string]*collection
	collNames []string // sorted; nil when stale

	origins     map[string]*originState
	self        *originState
	memberNames []string
	members     []*originState

	ownSeq      uint64
	applied     uint64
	pending     int
	foldedPoint Timestamp
	heap        itemHeap

	inUpdate  bool
	updateOps []*tempestpb.Op
	saved     savedState

	updateErr error         // first failed mutation of the running Update (sticky)
	making    *tempestpb.Op // the op mutate is applying, while it does
	madeErr   error         // why applying making failed (user op panic or codec error)
	madePanic error         // a user op's ErrReadOnly panic, re-raised by mutate
	applying  int           // > 0 while a user op's function runs

	lazy        *lazyState      // a lazy restore's items not all loaded yet (lazy.go)
	stream      *SnapshotStream // the open snapshot stream, if any
	streamEpoch uint32          // epoch of the latest stream begun (32 bits: an item holds it)

	// What a delta snapshot needs (see the design note in
	// snapshot_stream.go): the items whose state changed since the latest
	// capture, each once (item.window == window marks a member), and the
	// capture they are relative to.
	//
	// A member quiet long enough may go to the cold tables like any quiet
	// item (beyond Config.HotChanged of them): its record is flagged and
	// its slot listed in coldChanged; its Go object, still in changed,
	// is no member any more (item.window 0) and Tidy drops such entries in
	// bulk (demotedMembers counts them).
	window         uint32       // the current change window: changes since the latest capture (32 bits: an item holds it)
	changed        []*item      // the window's changed items held as Go objects, in order of first change
	coldChanged    []coldMember // the window's members that went cold since, by slot
	demotedMembers int          // entries of changed that went cold since
	deltaBase      bool         // a capture exists that a delta may follow (a snapshot begun, or a restore)
	baseApplied    uint64       // applied count at that capture

	// Items Tidy may move to the cold tables (item.cooling), oldest first
	// from coolHead.
	cooling  []*item
	coolHead int
	heated   int // ops integrated since autoCompact last tidied

	stats Stats
}

// Stats are counters of a store's work and of anomalies. Counters only
// grow, except Pending.
type Stats struct {
	Applied    uint64 // ops integrated (not duplicates), as Store.Applied
	Pending    int    // tentative ops held, as Store.Pending
	Duplicates uint64 // Deliver calls ignored as already delivered
	Rejected   uint64 // Deliver calls that returned an error
	Retracted  uint64 // ops removed because their Update failed
	Folded     uint64 // ops folded into base values (stable)
	Applies    uint64 // op applications, including replays and folds
	RolledBack uint64 // ops reverted by rollback (late insert or retraction)
	Replayed   uint64 // ops re-applied after a rollback

	// LateOps counts ops that arrived with a timestamp at or before the
	// stable point: the origin's stream promised they did not exist (a
	// heartbeat lied, an origin reused seqs after losing its disk, or an op
	// of an origin outside SetOrigins). Such an op is still applied at its
	// place among the item's tentative ops. LateMisplaced counts those of
	// them that sort before an op already folded into the item's base:
	// they are applied right after the base instead, and replicas that
	// folded differently may diverge — the order checker reports it. An item
	// restored from a snapshot as quiet does not remember the op it folded
	// last: a late op on it is counted in LateOps alone.
	LateOps       uint64
	LateMisplaced uint64

	PendingWarnings uint64 // an item's tentative history grew past Config.MaxPending
	ClockClamps     uint64 // remote timestamps clamped by MaxDrift (HLC.Clamped)
	UserOpPanics    uint64 // user op applications that panicked (applied as no-ops)
	UserOpErrors    uint64 // user op applications whose value/args failed to decode or encode (no-ops)
}

type savedState struct {
	ownSeq, applied uint64
	self            originState
}

// NewStore returns an empty store. Declare the service's collections on it
// (NewMap, NewList, ...) before delivering ops or restoring a snapshot.
func NewStore(cfg Config) (*Store, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Store{
		cfg:     cfg,
		hlc:     NewHLC(cfg.Now),
		colls:   map[string]*collection{},
		origins: map[string]*originState{},
	}
	s.hlc.MaxDrift = cfg.MaxDrift
	s.self = s.origin(cfg.Replica)
	s.SetOrigins(nil)
	return s, nil
}

// Service returns the service name.
func (s *Store) Service() string { return s.cfg.Service }

// Replica returns this replica's origin id.
func (s *Store) Replica() string { return s.cfg.Replica }

// Items returns how many items the replica holds over all its collections
// (map entries and set elements, counted while they have a value or pending
// ops; a list or counter is one item).
func (s *Store) Items() int {
	n := 0
	for _, c := range s.colls {
		live, _ := c.unloaded()
		n += c.len() + int(live)
	}
	return n
}

// ColdItems returns how many of Items are held in the cold tables (quiet
// map entries and set elements: see Tidy), outside the garbage
// collector's view.
func (s *Store) ColdItems() int { return s.ColdMemory().Items }

// ColdMemory is what the cold tables hold, summed over the collections.
type ColdMemory struct {
	Items int // ColdItems
	// KeyValueBytes: the items' keys and values, what they hold encoded:
	// the measure of what an item costs in memory against what it is
	// (TestBytesPerItem).
	KeyValueBytes int
	// ArenaBytes: the arenas' size (their chunks' capacity); ArenaLiveBytes
	// the part the items use (keys, values and fold timestamps). The rest
	// is room the active chunks have not filled yet and entries dead since
	// (an item promoted or deleted) that an evacuation will give back
	// (coldTable.compactStep).
	ArenaBytes, ArenaLiveBytes int
}

// ColdMemory returns what the cold tables hold.
func (s *Store) ColdMemory() ColdMemory {
	var m ColdMemory
	for _, c := range s.colls {
		if t := c.cold; t != nil {
			m.Items += t.len()
			m.KeyValueBytes += t.kv
			m.ArenaBytes += t.size
			m.ArenaLiveBytes += t.live
		}
	}
	return m
}

func (s *Store) origin(name string) *originState {
	o := s.origins[name]
	if o == nil {
		o = &originState{name: name}
		s.origins[name] = o
	}
	return o
}

// Update runs fn, the body of an update handler. Each collection mutation
// fn makes becomes an op stamped with the next HLC reading and the next own
// seq, applied to the replica at once (fn reads its own writes). If fn
// returns nil, Update returns the ops — in the order they were made — for
// the caller to persist and broadcast. If fn returns an error or panics,
// every op it made is retracted (removed from the histories, the seq and
// applied counters rewound) as if fn had never run, and the error is
// returned unchanged or the panic continues.
//
// A mutation that cannot be made (a key, value or argument that does not
// encode, an unknown user op, a user op that panics or whose result does
// not encode) returns its error to fn and fails the whole Update, even if
// fn ignores that error: the failure is sticky, later mutations of the
// same Update are not made (they return the same error), and when fn
// returns nil Update retracts every op and returns the failure, wrapped
// (errors.Is finds ErrCodec, ErrUnknownOp, ErrUserOpPanic). An error fn
// returns itself takes precedence. So one bad request fails its own
// update and nothing else.
//
// Mutations are only allowed inside Update (elsewhere they panic with
// ErrReadOnly: a programming error, not a bad request); Update may not be
// nested.
func (s *Store) Update(fn func() error) (ops []*tempestpb.Op, err error) {
	if s.inUpdate {
		return nil, fmt.Errorf("%w: nested Update", ErrInUpdate)
	}
	s.inUpdate = true
	s.updateOps, s.updateErr = nil, nil
	s.saved = savedState{ownSeq: s.ownSeq, applied: s.applied, self: s.self.clone()}
	done := false
	defer func() {
		if !done { // fn panicked (or called runtime.Goexit)
			s.retract()
			s.inUpdate = false
		}
	}()
	err = fn()
	done = true
	if err == nil && s.updateErr != nil {
		err = fmt.Errorf("update retracted, a mutation failed: %w", s.updateErr)
	}
	if err != nil {
		s.retract()
		s.inUpdate = false
		return nil, err
	}
	ops, s.updateOps = s.updateOps, nil
	s.inUpdate = false
	s.autoCompact()
	return ops, nil
}

// retract undoes the ops of the running Update, newest first.
func (s *Store) retract() {
	for i := len(s.updateOps) - 1; i >= 0; i-- {
		op := s.updateOps[i]
		c := s.colls[op.GetCollection()]
		it := c.lookup(op.GetItem())
		if it == nil {
			continue
		}
		idx := it.indexOf(op)
		if idx < 0 {
			continue
		}
		s.remove(it, idx)
		s.pending--
		if idx == 0 {
			s.reheap(it)
		}
		c.touched(it)
		c.maybeDrop(it)
		s.stats.Retracted++
	}
	s.updateOps, s.updateErr = nil, nil
	s.ownSeq, s.applied = s.saved.ownSeq, s.saved.applied
	*s.self = s.saved.self
	s.making, s.madeErr, s.madePanic = nil, nil, nil
}

// writable panics with ErrReadOnly unless collection c may be mutated
// now (inside Update, outside a user op's function); it returns the
// running Update's sticky error, if a mutation of it already failed.
func (s *Store) writable(c *collection) error {
	if !s.inUpdate || s.applying > 0 {
		panic(fmt.Errorf("%w: %s %q", ErrReadOnly, c.kind, c.name))
	}
	return s.updateErr
}

// fail records err as the running Update's failure (the first one wins)
// and returns it.
func (s *Store) fail(err error) error {
	if s.updateErr == nil {
		s.updateErr = err
	}
	return err
}

// mutate makes a local op on item key of c (fields other than the
// envelope already set in op) and applies it. The caller has checked
// writable. It returns (and records with fail) an error if op is a user
// op whose function panicked or whose result could not be encoded; the
// op stays in the history until Update retracts it.
func (s *Store) mutate(c *collection, key []byte, op *tempestpb.Op) error {
	ts := s.hlc.Now()
	s.ownSeq++
	op.Service, op.Collection, op.Item = s.cfg.Service, c.name, key
	op.WallMs, op.Logical, op.Origin, op.Seq = ts.WallMs, ts.Logical, s.cfg.Replica, s.ownSeq
	s.updateOps = append(s.updateOps, op)
	s.making, s.madeErr = op, nil
	s.integrate(c, s.self, op)
	err, p := s.madeErr, s.madePanic
	s.making, s.madeErr, s.madePanic = nil, nil, nil
	if p != nil {
		panic(p)
	}
	if err != nil {
		return s.fail(err)
	}
	return nil
}

// integrate records op as delivered and puts it into its item's history.
// op has been validated and is not a duplicate.
func (s *Store) integrate(c *collection, o *originState, op *tempestpb.Op) {
	k := keyOf(op)
	late := k.ts.Compare(s.foldedPoint) <= 0 || k.ts.Compare(s.StablePoint()) <= 0
	o.mark(op.GetSeq(), k.ts)
	it := c.get(op.GetItem())
	pos := it.position(k)
	if late {
		s.stats.LateOps++
		// Stamped before an op already folded into the item: it belongs
		// before the base, and goes first (position gives 0 already:
		// every tentative op is after the folded one). Compared by
		// timestamp: a late op stamped exactly like the folded one is
		// not counted.
		if f := it.foldedTS(); !f.IsZero() && k.ts.Less(f) {
			s.stats.LateMisplaced++
			pos = 0
		}
	}
	s.insert(it, pos, op)
	s.pending++
	s.applied++
	s.heated++
	if pos == 0 {
		s.reheap(it)
	}
	if len(it.h.ops) == s.cfg.MaxPending+1 {
		s.stats.PendingWarnings++
	}
	c.touched(it)
}

// reheap restores the heap after the item's oldest op changed, and
// releases an emptied history.
func (s *Store) reheap(it *item) {
	h := it.h
	switch {
	case h == nil:
	case len(h.ops) == 0:
		if h.heapIdx >= 0 {
			heap.Remove(&s.heap, h.heapIdx)
		}
		it.h = nil
	case h.heapIdx < 0:
		heap.Push(&s.heap, it)
	default:
		heap.Fix(&s.heap, h.heapIdx)
	}
}

// Deliver integrates an op made by another replica, or one of this
// replica's own ops replayed from its log or fetched from a peer.
//
//   - An op already delivered (same origin and seq) is ignored: (false, nil).
//   - An op that does not fit — nil, another service, no origin, seq 0 or
//     above MaxSeq, an undeclared collection (ErrUnknownCollection), an
//     unregistered user op (ErrUnknownOp), a kind the collection does not
//     take, an undecodable or non-canonical key, value or args (ErrBadOp)
//     — is rejected with an error and leaves the store untouched.
//   - Otherwise the op is inserted into its item's history at its place
//     in (timestamp, origin, seq) order, rolling back and replaying the
//     item if ops ordered after it were already applied, and (true, nil)
//     is returned. Seqs may arrive with gaps and in any order.
//
// The op's timestamp is observed into the HLC, so this replica's later ops
// are ordered after it (within MaxDrift). An own op (origin == Replica)
// raises OwnSeq to its seq, so a clone that lost its state never reuses a
// seq its peers have seen.
func (s *Store) Deliver(op *tempestpb.Op) (applied bool, err error) {
	if s.inUpdate {
		return false, fmt.Errorf("%w: Deliver", ErrInUpdate)
	}
	if err := s.checkEnvelope(op); err != nil {
		s.stats.Rejected++
		return false, err
	}
	o := s.origins[op.GetOrigin()]
	if o != nil && o.delivered(op.GetSeq()) {
		s.stats.Duplicates++
		return false, nil
	}
	c := s.colls[op.GetCollection()]
	if c == nil {
		s.stats.Rejected++
		return false, fmt.Errorf("deliver %s: %w %q", ID(op), ErrUnknownCollection, op.GetCollection())
	}
	if err := c.validate(op); err != nil {
		s.stats.Rejected++
		return false, fmt.Errorf("deliver %s: %w", ID(op), err)
	}
	if o == nil {
		o = s.origin(op.GetOrigin())
	}
	s.observe(op.GetOrigin(), TimestampOf(op))
	if op.GetOrigin() == s.cfg.Replica {
		s.ownSeq = max(s.ownSeq, op.GetSeq())
	}
	s.integrate(c, o, op)
	s.autoCompact()
	return true, nil
}

func (s *Store) checkEnvelope(op *tempestpb.Op) error {
	switch {
	case op == nil:
		return fmt.Errorf("%w: nil op", ErrBadOp)
	case op.GetService() != s.cfg.Service:
		return fmt.Errorf("%w: op %s is for service %q, this store is %q", ErrBadOp, ID(op), op.GetService(), s.cfg.Service)
	case op.GetOrigin() == "":
		return fmt.Errorf("%w: op without origin", ErrBadOp)
	case op.GetSeq() == 0 || op.GetSeq() > MaxSeq:
		return fmt.Errorf("%w: op %s: seq out of range [1, 2^62]", ErrBadOp, ID(op))
	}
	return nil
}

// observe moves the HLC past a timestamp seen from origin: with the drift
// cap for other origins, without it for this replica's own past readings.
func (s *Store) observe(origin string, ts Timestamp) {
	if origin == s.cfg.Replica {
		s.hlc.observeTrusted(ts)
	} else {
		s.hlc.Observe(ts)
	}
}

// Heartbeat returns this replica's heartbeat: its last own seq and a fresh
// HLC reading, a promise that every own op after that seq is stamped later.
// Broadcast it when idle so that peers' stable points advance. It also
// advances this replica's own horizon. Inside Update it returns the
// promise as of the start of the Update and changes nothing.
func (s *Store) Heartbeat() *tempestpb.Heartbeat {
	if s.inUpdate {
		h := s.saved.self.horizon
		return &tempestpb.Heartbeat{Origin: s.cfg.Replica, Seq: s.saved.ownSeq, WallMs: h.WallMs, Logical: h.Logical}
	}
	ts := s.hlc.Now()
	s.self.heartbeat(s.ownSeq, ts)
	s.autoCompact()
	return &tempestpb.Heartbeat{Origin: s.cfg.Replica, Seq: s.ownSeq, WallMs: ts.WallMs, Logical: ts.Logical}
}

// ObserveHeartbeat records a heartbeat of another replica (or a peer's
// view of an origin's stream, from Horizons): once every op of the origin
// up to hb.Seq is delivered, nothing of that origin at or before hb's time
// can still arrive. The timestamp is observed into the HLC. A heartbeat
// for this replica's own origin raises OwnSeq to its seq (a peer has seen
// own ops this replica lost). Nil or origin-less heartbeats, heartbeats
// with seq > MaxSeq and heartbeats during Update are ignored.
func (s *Store) ObserveHeartbeat(hb *tempestpb.Heartbeat) {
	if hb == nil || hb.GetOrigin() == "" || hb.GetSeq() > MaxSeq || s.inUpdate {
		return
	}
	ts := Timestamp{WallMs: hb.GetWallMs(), Logical: hb.GetLogical()}
	s.observe(hb.GetOrigin(), ts)
	if hb.GetOrigin() == s.cfg.Replica {
		s.ownSeq = max(s.ownSeq, hb.GetSeq())
	}
	s.origin(hb.GetOrigin()).heartbeat(hb.GetSeq(), ts)
	s.autoCompact()
}

// SetOrigins sets the origins whose streams define stability: the clones
// of the service, normally including this replica. An empty list means
// this replica alone (the default). Ops of origins outside the list are
// still accepted and ordered, but do not hold stability back.
func (s *Store) SetOrigins(origins []string) {
	names := slices.Clone(origins)
	slices.Sort(names)
	names = slices.Compact(names)
	names = slices.DeleteFunc(names, func(n string) bool { return n == "" })
	if len(names) == 0 {
		names = []string{s.cfg.Replica}
	}
	s.memberNames = names
	s.resolveMembers()
	s.autoCompact()
}

func (s *Store) resolveMembers() {
	s.members = make([]*originState, len(s.memberNames))
	for i, n := range s.memberNames {
		s.members[i] = s.origin(n)
	}
}

// Origins returns the origins set by SetOrigins (sorted).
func (s *Store) Origins() []string { return slices.Clone(s.memberNames) }

// StablePoint is the minimum over the origins (SetOrigins) of the time up
// to which each one's stream is known: every op at or before it has been
// delivered and can never be reordered. Zero while some origin has neither
// sent an op nor a heartbeat. It may move back when SetOrigins adds an
// origin; FoldedPoint never does.
func (s *Store) StablePoint() Timestamp {
	sp := s.members[0].horizon
	for _, o := range s.members[1:] {
		if o.horizon.Less(sp) {
			sp = o.horizon
		}
	}
	return sp
}

// FoldedPoint is the highest stable point compaction has used: every op
// at or before it is folded (or arrived late, see Stats.LateOps).
func (s *Store) FoldedPoint() Timestamp { return s.foldedPoint }

// Now returns a fresh reading of the replica's HLC (ticks the clock). A
// reading taken when a request arrives, compared with StablePoint, tells
// whether every op ordered before the request is known.
func (s *Store) Now() Timestamp { return s.hlc.Now() }

// HoldBackPoint returns the point an update arriving now must wait to be
// stable past to see every op issued anywhere before it arrived (hold-back):
// the end of the HLC's current millisecond. Not Now: within one
// millisecond an HLC orders its events by a logical counter, and another
// replica's counter may be ahead of this one's, so an op it issued (and
// acknowledged) a moment before the request arrived can carry a timestamp
// after this replica's reading (TestHoldBackPointCoversEarlierOps; seen as
// a reservation on one clone missed by the next one asked on another). It
// assumes what the HLC assumes of the clocks: none reads later than the
// others by more than their skew, which a waiting point cannot cover.
func (s *Store) HoldBackPoint() Timestamp {
	return Timestamp{WallMs: s.hlc.Now().WallMs, Logical: math.MaxUint32}
}

// Compact folds every tentative op at or before the stable point into its
// item's base value, calling Config.OnStable for each in (timestamp,
// origin, seq) order, and drops items left empty. It returns the number
// of ops folded. The cost is O(log items) per folded op: items are kept
// in a heap by their oldest tentative op. Inside Update it does nothing.
// Unless Config.DisableAutoCompact, the store calls it itself whenever an
// op becomes stable.
func (s *Store) Compact() int {
	if s.inUpdate {
		return 0
	}
	sp := s.StablePoint()
	n := 0
	for len(s.heap) > 0 {
		it := s.heap[0]
		if TimestampOf(it.h.ops[0]).Compare(sp) > 0 {
			break
		}
		op := s.foldFirst(it)
		s.pending--
		n++
		s.reheap(it)
		if s.cfg.OnStable != nil {
			s.cfg.OnStable(it.c.name, []byte(it.key), ID(op))
		}
		it.c.maybeDrop(it)
	}
	if s.foldedPoint.Less(sp) {
		s.foldedPoint = sp
	}
	s.stats.Folded += uint64(n)
	s.heated += n
	s.tidyHeated()
	return n
}

// tidyHeated tidies in proportion to the ops integrated and folded since
// it last ran (each may have queued an item for Tidy).
func (s *Store) tidyHeated() {
	if s.heated > 0 && !s.inUpdate {
		s.Tidy(tidyPerOp * s.heated)
		s.heated = 0
	}
}

func (s *Store) autoCompact() {
	if s.inUpdate {
		return
	}
	if !s.cfg.DisableAutoCompact && len(s.heap) > 0 && TimestampOf(s.heap[0].h.ops[0]).Compare(s.StablePoint()) <= 0 {
		s.Compact() // tidies too
		return
	}
	s.tidyHeated()
}

// tidyPerOp is how many queued items Tidy examines after each op: more
// than the one item an op can heat, so the cold tables keep up.
const tidyPerOp = 8

// Tidy moves quiet items (no tentative ops, not changed since the latest
// snapshot began) to their collections' cold tables, where the garbage
// collector does not trace them (see coldTable), examining at most budget
// of the items changed lately; and it advances the cold tables' arena
// evacuation by a bounded step. It does nothing while an Update runs or a
// snapshot stream is open. It returns how many items it examined.
//
// The store tidies by itself after each op (tidyPerOp items); a caller
// with idle time may call it with a larger budget.
func (s *Store) Tidy(budget int) int {
	if s.inUpdate || s.stream != nil {
		return 0
	}
	n := 0
	for n < budget && s.coolHead < len(s.cooling) {
		it := s.cooling[s.coolHead]
		s.cooling[s.coolHead] = nil
		s.coolHead++
		n++
		switch {
		case it.gone || it.h != nil || !it.cur.exists:
			it.cooling = false // its next change queues it again
		case !it.c.quiet(it):
			s.cooling = append(s.cooling, it) // changed in this window: quiet once it closes
		default:
			it.cooling = false
			it.c.demote(it)
		}
	}
	if s.demotedMembers >= 1024 && s.demotedMembers >= len(s.changed)/2 {
		// The change window's list holds more Go objects of members gone
		// cold (no members any more) than members: drop them, so that
		// they do not stay in memory until the window closes.
		s.changed = slices.DeleteFunc(s.changed, func(it *item) bool { return it.window != s.window })
		s.demotedMembers = 0
	}
	if s.coolHead == len(s.cooling) {
		s.cooling, s.coolHead = s.cooling[:0], 0
	} else if s.coolHead >= 1024 && s.coolHead >= len(s.cooling)/2 {
		k := copy(s.cooling, s.cooling[s.coolHead:])
		clear(s.cooling[k:])
		s.cooling, s.coolHead = s.cooling[:k], 0
	}
	for _, c := range s.colls {
		if c.cold != nil {
			c.cold.compactStep(min(16*max(budget, 1), 1<<14))
		}
	}
	return n
}

// VersionVector returns, per known origin, the contiguous delivered seq:
// every op of the origin up to it is here. Catch-up requests carry it.
func (s *Store) VersionVector() map[string]uint64 {
	vv := make(map[string]uint64, len(s.origins))
	for n, o := range s.origins {
		vv[n] = o.contiguous
	}
	return vv
}

// Horizons returns, per known origin (sorted by origin), a heartbeat
// stating what this replica knows of its stream: seq = contiguous
// delivered seq, time = horizon. A peer that has delivered the same prefix
// may pass them to ObserveHeartbeat (they are valid promises), so one
// catch-up reply advances its stable point.
func (s *Store) Horizons() []*tempestpb.Heartbeat {
	out := make([]*tempestpb.Heartbeat, 0, len(s.origins))
	for _, n := range sortedKeys(s.origins) {
		o := s.origins[n]
		out = append(out, &tempestpb.Heartbeat{Origin: n, Seq: o.contiguous, WallMs: o.horizon.WallMs, Logical: o.horizon.Logical})
	}
	return out
}

// Applied returns the number of ops integrated (delivered or made, not
// duplicates, not retracted) over the replica's life, snapshots included.
func (s *Store) Applied() uint64 { return s.applied }

// OwnSeq returns the seq of this replica's latest own op.
func (s *Store) OwnSeq() uint64 { return s.ownSeq }

// Pending returns the number of tentative (not yet folded) ops.
func (s *Store) Pending() int { return s.pending }

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	st := s.stats
	st.Applied, st.Pending, st.ClockClamps = s.applied, s.pending, s.hlc.Clamped()
	return st
}

// Digest returns an order-independent digest of every item's current
// value in every collection: replicas holding equal values have equal
// digests, however their ops arrived. It is the sum of per-item hashes
// of (collection, kind, key, value), with empty items (absent entries,
// empty lists, zero counters) contributing nothing. Item hashes are cached
// and recomputed only for items changed since the last call.
func (s *Store) Digest() uint64 {
	var d uint64
	for _, c := range s.colls {
		d += c.digestNow()
	}
	return d
}

// CollectionDigests returns Digest per collection.
func (s *Store) CollectionDigests() map[string]uint64 {
	out := make(map[string]uint64, len(s.colls))
	for n, c := range s.colls {
		out[n] = c.digestNow()
	}
	return out
}

// Collections returns the declared collections' names, sorted.
func (s *Store) Collections() []string {
	if s.collNames == nil {
		s.collNames = sortedKeys(s.colls)
	}
	return slices.Clone(s.collNames)
}

// ItemDigests returns the hash of each non-empty item of a collection,
// keyed by encoded item key; nil for an unknown collection. It locates
// what differs between replicas whose digests differ.
func (s *Store) ItemDigests(collection string) map[string]uint64 {
	c := s.colls[collection]
	if c == nil {
		return nil
	}
	s.ensureLoaded()
	out := map[string]uint64{}
	for k, it := range c.items {
		if h := hashItem(c.name, c.kind, k, &it.cur); h != 0 {
			out[k] = h
		}
	}
	if c.cold != nil {
		c.cold.each(func(_ uint32, r *coldRec) bool {
			out[string(c.cold.key(r))] = c.coldHash(r)
			return true
		})
	}
	return out
}

// Value returns an item's current value (tentative ops included) and
// whether the item is non-empty.
func (s *Store) Value(collection string, item []byte) (*tempestpb.ItemValue, bool) {
	c := s.colls[collection]
	if c == nil {
		return nil, false
	}
	v, ok := c.current(item)
	if !ok || v.zero() {
		return &tempestpb.ItemValue{}, false
	}
	return v.toProto(), true
}

// Describe renders an item's current value for diagnostics.
func (s *Store) Describe(collection string, item []byte) string {
	c := s.colls[collection]
	if c == nil {
		return "<unknown collection>"
	}
	v, _ := s.Value(collection, item)
	return describe(c.kind, v)
}

// ItemOrder returns the ops in an item's tentative history, in the order
// they are applied. (Folded ops are gone; OnStable reports them.)
func (s *Store) ItemOrder(collection string, item []byte) []OpID {
	c := s.colls[collection]
	if c == nil {
		return nil
	}
	it := c.lookup(item)
	if it == nil {
		return nil
	}
	out := make([]OpID, len(it.pending()))
	for i, op := range it.pending() {
		out[i] = ID(op)
	}
	return out
}

// itemStable reports whether an item has no tentative ops.
func (s *Store) itemStable(c *collection, key []byte) bool {
	it := c.lookup(key)
	return it == nil || len(it.pending()) == 0
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// ItemRef names one item of a collection.
type ItemRef struct {
	Collection string
	Item       []byte
}

// Tentative returns the items that have tentative ops, sorted by
// (collection, key).
func (s *Store) Tentative() []ItemRef {
	var out []ItemRef
	for _, name := range s.Collections() {
		c := s.colls[name]
		for _, k := range c.keys() {
			if it := c.items[k]; it != nil && len(it.pending()) > 0 {
				out = append(out, ItemRef{Collection: name, Item: []byte(k)})
			}
		}
	}
	return out
}
