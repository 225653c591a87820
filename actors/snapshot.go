package actors

import (
	"bytes"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/tempestrt/tempest/collections"
	"github.com/tempestrt/tempest/persistence"
	"github.com/tempestrt/tempest/proto/tempestpb"
)

// A clone's snapshot is its stored state (persistence.State: one key per
// item), written from collections.SnapshotStreams: the first one full,
// then deltas (only the items changed since the previous capture), one
// every Config.SnapshotEvery ops, each applied to the stored state at its
// end. A restart loads the state, then replays the log after it.
// BeginSnapshot captures the replica at one point in O(origins); the
// scheduler then produces the items a slice at a time (Config.SnapshotSlice)
// between requests: each slice ends with a snapshotWork message sent to
// itself, behind whatever is already in the mailbox, so requests that came
// in meanwhile run first, or, once the node's snapshot CPU budget is spent
// (pacer.go), sent by a timer when the budget allows. Every chunk's items
// are queued to the clone's Writer right away, in order with the ops: the
// Writer places the state at the log position of its StateBegin (it covers
// exactly the records submitted before it) and makes it the clone's
// snapshot only at StateEnd, so a crash in the middle leaves the previous
// state in place and the partial one is discarded. The stream's chunks are
// the same a state transfer to another clone would send.

// snapshotRun is the snapshot being produced.
type snapshotRun struct {
	stream     *collections.SnapshotStream // its Stats count the chunks, items and bytes
	hdrBytes   int                         // the header's (chunk 0)
	stateItems int                         // the items of the replica at the capture
	started    time.Time
	busy       time.Duration // scheduler time spent on it (wall)
	busyCPU    time.Duration // the CPU time of that (turnClock)
	turns      TurnStats     // its turns
	paused     bool          // the op log was full: tick resumes it
	ended      bool          // SnapshotEnd queued, waiting for snapshotSaved
	// waiting: the pacer asked for a pause, and a timer will send the
	// next snapshotWork (stopTimer cancels it); waited sums the pauses.
	waiting   bool
	stopTimer func() bool
	waited    time.Duration
}

// snapshotUnpacedAfter: once more than this many times
// Config.SnapshotEvery ops were applied since the begin of the clone's last
// durable snapshot (the log a restart would replay), the snapshot in
// progress is no longer paced: with a share too small for the load (a bulk
// load, three clones' full snapshots of a large state at once) the log
// behind would otherwise grow without bound.
const snapshotUnpacedAfter = 4

// stopSnapshot gives up the snapshot in progress, if any: its stream holds
// a suspended iteration; its chunks on disk are never made the clone's
// snapshot.
func (s *schedulerActor) stopSnapshot() {
	if r := s.snap; r != nil {
		if r.stopTimer != nil {
			r.stopTimer()
		}
		r.stream.Close()
		s.snap = nil
	}
}

// storedSnapshot is what the clone's stored snapshot is: a state (a delta
// can follow it), and the deltas written since its last full state.
type storedSnapshot struct {
	state  bool
	deltas int
}

// wantDelta: the next snapshot can be a delta (a state is stored; the
// store itself makes it full if it has no capture to follow).
func (s *schedulerActor) wantDelta() bool { return s.stored.state }

// SnapshotInfo is what a clone's status says of its last durable snapshot.
type SnapshotInfo struct {
	Pos    uint64 `json:"pos"` // log position it covers
	Bytes  int64  `json:"bytes"`
	Items  int    `json:"items"`
	Chunks int    `json:"chunks"` // header included
	// Delta: a delta (only the items changed since the previous one).
	// Deltas: the deltas written since the last full one. StateItems:
	// the items of the replica it captured, which the stored state holds
	// (what a restart loads before it replays the log).
	Delta      bool `json:"delta"`
	Deltas     int  `json:"deltas_since_full"`
	StateItems int  `json:"state_items"`
	// DurationMs: from capture until durable. BusyMs: scheduler time spent
	// producing it, over Turns turns; MaxTurnUs: the longest of them;
	// PacedMs: the time it waited for the node's snapshot CPU budget
	// (Config.SnapshotCPUShare). BusyMs and MaxTurnUs are wall time: what
	// a request queued behind a turn waited, a turn interrupted by other
	// goroutines, the GC or the kernel included. CPUMs and MaxTurnCPUUs are
	// the turns' own CPU time (turnClock), the work that SnapshotSlice
	// bounds (each turn does at most SnapshotSlice plus one chunk);
	// TurnsCPUUnknown turns ended on another thread than they began, and
	// count in CPUMs with their wall time and not in MaxTurnCPUUs.
	DurationMs      float64   `json:"duration_ms"`
	BusyMs          float64   `json:"scheduler_busy_ms"`
	CPUMs           float64   `json:"scheduler_cpu_ms"`
	Turns           int       `json:"turns"`
	MaxTurnUs       int64     `json:"max_turn_us"`
	MaxTurnCPUUs    int64     `json:"max_turn_cpu_us"`
	TurnsCPUUnknown int       `json:"turns_cpu_unknown"`
	PacedMs         float64   `json:"paced_ms"`
	At              time.Time `json:"at"`
}

// snapshotWork tells a scheduler to produce its snapshot's next slice;
// run is set when the pacer's timer sent it (for that snapshot only).
type snapshotWork struct{ run *snapshotRun }

// beginSnapshot captures the replica and queues the snapshot's header.
func (s *schedulerActor) beginSnapshot(ctx actor.Context) {
	if s.store.Loading() && !(s.wantDelta() && s.store.DeltaReady()) {
		return // a full snapshot needs every item: after the load (the next tick asks again)
	}
	st, err := s.store.BeginSnapshot(collections.SnapshotStreamOptions{Delta: s.wantDelta(), Reuse: true}) // each chunk is marshalled before the next
	if err != nil {
		s.log.Error("begin snapshot", zap.Error(err))
		return
	}
	hdr, err := proto.Marshal(st.Header())
	if err != nil {
		st.Close()
		s.log.Error("encode snapshot header", zap.Error(err))
		return
	}
	mustQueue(s.w.StateBegin(hdr, st.Delta(), s.persistCallback(ctx)))
	n := 0
	for _, c := range st.Header().GetCollectionItems() {
		n += int(c)
	}
	s.snap = &snapshotRun{stream: st, hdrBytes: len(hdr), stateItems: n, started: time.Now()}
	s.sinceSnapshot = 0
	ctx.Send(ctx.Self(), &snapshotWork{})
}

// snapshotWorkMsg handles a snapshotWork: one from the pacer's timer ends
// the wait (snapshotSlice ignores the others while it lasts).
func (s *schedulerActor) snapshotWorkMsg(ctx actor.Context, m *snapshotWork) {
	if m.run != nil {
		if m.run != s.snap {
			return // a timer of a snapshot given up
		}
		m.run.waiting = false
	}
	s.snapshotSlice(ctx)
}

// pace decides when the next slice runs after one that took d of CPU
// time (0: at once, as the next message in the mailbox), counting d
// against the node's snapshot budget.
func (s *schedulerActor) pace(ctx actor.Context, r *snapshotRun, d time.Duration) {
	wait := time.Duration(0)
	if s.snapshotPaced() {
		wait = s.c.n.snapPacer.spend(time.Now(), d)
	}
	if wait <= 0 {
		ctx.Send(ctx.Self(), &snapshotWork{})
		return
	}
	s.snapshotWait(ctx, r, wait)
}

func (s *schedulerActor) snapshotWait(ctx actor.Context, r *snapshotRun, wait time.Duration) {
	r.waiting = true
	r.waited += wait
	r.stopTimer = after(ctx.ActorSystem(), ctx.Self(), wait, &snapshotWork{run: r})
}

// snapshotPaced: the snapshot in progress is paced (see
// snapshotUnpacedAfter).
func (s *schedulerActor) snapshotPaced() bool {
	return s.sinceDurable < snapshotUnpacedAfter*s.c.n.cfg.SnapshotEvery
}

// sliceOutcome is how a snapshot slice ended.
type sliceOutcome int

const (
	sliceMore   sliceOutcome = iota // its time is up: pace the next one
	sliceLast                       // the stream ended: SnapshotEnd is queued
	sliceFailed                     // the snapshot was given up
)

// snapshotSlice produces chunks for up to Config.SnapshotSlice and queues
// them; the last one ends the snapshot.
func (s *schedulerActor) snapshotSlice(ctx actor.Context) {
	r := s.snap
	if r == nil || r.ended || r.waiting {
		return
	}
	if s.w.Full() {
		r.paused = true // the disk is behind: tick resumes it
		return
	}
	r.paused = false
	if s.snapshotPaced() {
		if wait := s.c.n.snapPacer.wait(time.Now()); wait > 0 {
			s.snapshotWait(ctx, r, wait) // another clone's slices spent the budget
			return
		}
	}
	var outcome sliceOutcome
	d, cpu := s.backgroundSlice(&r.turns, func(start time.Time) { outcome = s.produceSlice(ctx, r, start) })
	r.busy += d
	r.busyCPU += cpu
	switch outcome {
	case sliceMore:
		s.pace(ctx, r, cpu)
	case sliceLast:
		s.c.n.snapPacer.spend(time.Now(), cpu) // counted; the next snapshot waits for it
	}
}

// backgroundSlice runs work as one background slice (a snapshot's, a
// lazy load's): it yields first (freshTimeSlice), times work (turnClock,
// passing it its start) and counts it in the clone's and the run's
// TurnStats. It returns the slice's wall and CPU time.
func (s *schedulerActor) backgroundSlice(run *TurnStats, work func(start time.Time)) (wall, cpu time.Duration) {
	freshTimeSlice()
	clock := startTurn()
	work(clock.wall0)
	wall, cpu, known := clock.stop()
	s.bgTurns.add(wall, cpu, known)
	run.add(wall, cpu, known)
	return wall, cpu
}

// produceSlice is snapshotSlice's work, begun at t0.
func (s *schedulerActor) produceSlice(ctx actor.Context, r *snapshotRun, t0 time.Time) sliceOutcome {
	cfg := s.c.n.cfg
	cb := s.persistCallback(ctx)
	for {
		chunk, last, err := r.stream.Next(cfg.SnapshotChunkBytes, cfg.SnapshotChunkItems)
		if err != nil {
			// The stream broke (a bug): give this snapshot up. Its header
			// and chunks stay unreferenced and are discarded by the next
			// SnapshotBegin; the previous snapshot still covers the log.
			s.log.Error("snapshot stream", zap.Error(err))
			r.stream.Close()
			s.snap = nil
			return sliceFailed
		}
		items, err := s.encodeStateItems(chunk)
		if err != nil {
			s.log.Error("encode snapshot chunk", zap.Error(err))
			r.stream.Close()
			s.snap = nil
			return sliceFailed
		}
		if len(items) > 0 {
			mustQueue(s.w.StateItems(items, cb))
		}
		if last {
			r.stream.Close()
			r.ended = true
			self, system := ctx.Self(), ctx.ActorSystem()
			mustQueue(s.w.StateEnd(func(pos uint64, err error) {
				if err != nil {
					cb(pos, err)
					return
				}
				system.Root.Send(self, &snapshotSaved{pos: pos})
			}))
			return sliceLast
		}
		if time.Since(t0) >= cfg.SnapshotSlice {
			return sliceMore
		}
	}
}

// encodeStateItems encodes a chunk's items for the Writer, which copies
// them: the slices and bytes are reused for the next chunk.
func (s *schedulerActor) encodeStateItems(chunk *tempestpb.SnapshotChunk) ([]persistence.StateItem, error) {
	out, buf := s.stateItems[:0], s.stateBytes[:0]
	for _, is := range chunk.GetItems() {
		it := persistence.StateItem{Collection: is.GetCollection(), Key: is.GetItem()}
		if !is.GetAbsent() {
			n := len(buf)
			var err error
			if buf, err = (proto.MarshalOptions{}).MarshalAppend(buf, is); err != nil {
				return nil, err
			}
			// An earlier item's Value keeps the old array if buf grew:
			// nothing writes to it again.
			it.Value = buf[n:len(buf):len(buf)]
		}
		out = append(out, it)
	}
	s.stateItems, s.stateBytes = out, buf
	return out, nil
}

// mustQueue panics (the scheduler reloads from disk) when the Writer
// refused a write: it is broken, and the replica holds what the disk does
// not.
func mustQueue(err error) {
	if err != nil {
		panic(fmt.Errorf("op log write refused, reloading from disk: %w", err))
	}
}

// persistCallback reports a failed write of this incarnation's Writer to
// the scheduler, which then reloads from disk.
func (s *schedulerActor) persistCallback(ctx actor.Context) func(uint64, error) {
	self, system, w := ctx.Self(), ctx.ActorSystem(), s.w
	return func(_ uint64, err error) {
		if err != nil {
			system.Root.Send(self, &persistFailed{w: w, err: err})
		}
	}
}

// snapshotSaved records the durable snapshot at pos and prunes all but
// LogRetain records behind it.
func (s *schedulerActor) snapshotSaved(ctx actor.Context, pos uint64) {
	s.sinceDurable = s.sinceSnapshot // applied since this one's begin
	if r := s.snap; r != nil {
		st := r.stream.Stats()
		if r.stream.Delta() {
			s.stored.deltas++
		} else {
			s.stored = storedSnapshot{}
		}
		s.stored.state = true
		s.lastSnapshot = &SnapshotInfo{Pos: pos, Bytes: int64(r.hdrBytes) + int64(st.Bytes), Items: int(st.Items), Chunks: 1 + int(st.Chunks),
			Delta: r.stream.Delta(), Deltas: s.stored.deltas, StateItems: r.stateItems,
			DurationMs: ms(time.Since(r.started)), BusyMs: ms(r.busy), CPUMs: ms(r.busyCPU), Turns: int(r.turns.Turns),
			MaxTurnUs: r.turns.MaxWallUs, MaxTurnCPUUs: r.turns.MaxCPUUs, TurnsCPUUnknown: int(r.turns.CPUUnknown),
			PacedMs: ms(r.waited), At: time.Now()}
		if ce := s.log.Check(zap.DebugLevel, "snapshot saved"); ce != nil {
			l := s.lastSnapshot
			ce.Write(zap.Bool("delta", l.Delta), zap.Int("items", l.Items), zap.Int64("bytes", l.Bytes),
				zap.Float64("duration_ms", l.DurationMs), zap.Float64("busy_ms", l.BusyMs), zap.Float64("paced_ms", l.PacedMs))
		}
		s.snap = nil
	}
	retain := s.c.n.cfg.LogRetain
	if pos <= retain {
		return
	}
	mustQueue(s.w.Prune(pos-retain, s.persistCallback(ctx)))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// lastHeaderItems reads the header of a chain's last part for its
// collection_items, the items the restored replica will hold (nil if it
// cannot be read: the restore then reads and reports the problem itself).
func lastHeaderItems(part persistence.SnapshotPart) map[string]uint64 {
	for data, err := range part.Chunks {
		if err != nil {
			return nil
		}
		hdr := &tempestpb.SnapshotHeader{}
		if proto.Unmarshal(data, hdr) != nil {
			return nil
		}
		return hdr.GetCollectionItems()
	}
	return nil
}

// restoreChain loads the clone's stored snapshot chain into the fresh
// store: the full snapshot, then each delta in order, each a stream (its
// header, then chunks); from older data the full snapshot may be one whole
// StoreSnapshot (a single chunk), then without deltas. It logs its
// progress while it loads.
func (s *schedulerActor) restoreChain(parts []persistence.SnapshotPart) error {
	var (
		rs          *collections.StreamRestorer
		chunks      int
		items       int
		t0, lastLog = time.Now(), time.Now()
	)
	s.stored = storedSnapshot{} // a chain: the next snapshot is a full state
	for i, part := range parts {
		var (
			first     []byte // chunk 0: a header, or a whole snapshot if alone
			n, inPart int
		)
		for data, err := range part.ChunkViews { // decoded at once, nothing kept but the first
			if err != nil {
				return err
			}
			if n++; n == 1 {
				first = bytes.Clone(data)
				continue
			}
			if n == 2 {
				hdr := &tempestpb.SnapshotHeader{}
				if err := proto.Unmarshal(first, hdr); err != nil {
					return fmt.Errorf("decode the header of snapshot %d: %w", part.Gen, err)
				}
				if hdr.GetDelta() != part.Delta {
					return fmt.Errorf("snapshot %d: stored as delta=%v, its header says delta=%v: %w", part.Gen, part.Delta, hdr.GetDelta(), persistence.ErrCorrupt)
				}
				var err error
				if i == 0 {
					if rs, err = s.store.BeginRestore(hdr); err == nil {
						rs.Trusted() // read back from our own checksummed storage
						if len(parts) > 1 {
							rs.SizeHint(lastHeaderItems(parts[len(parts)-1]))
						}
					}
				} else {
					err = rs.NextDelta(hdr)
				}
				if err != nil {
					return fmt.Errorf("snapshot %d: %w", part.Gen, err)
				}
			}
			added, err := rs.AddEncoded(data) // trusted: quiet items without a message each
			if err != nil {
				return fmt.Errorf("snapshot %d: %w", part.Gen, err)
			}
			inPart += added
			if time.Since(lastLog) >= 2*time.Second {
				lastLog = time.Now()
				s.log.Info("loading snapshot", zap.Int("part", i+1), zap.Int("parts", len(parts)), zap.Int("chunks", chunks+n),
					zap.Int("items", items+inPart), zap.Duration("elapsed", time.Since(t0)))
			}
		}
		chunks += n
		items += inPart
		switch {
		case n == 0:
			return fmt.Errorf("snapshot %d has no chunk: %w", part.Gen, persistence.ErrCorrupt)
		case n == 1 && i == 0 && len(parts) == 1: // one whole StoreSnapshot
			snap := &tempestpb.StoreSnapshot{}
			if err := proto.Unmarshal(first, snap); err != nil {
				return fmt.Errorf("decode snapshot: %w", err)
			}
			if err := s.store.Restore(snap); err != nil {
				return err
			}
			s.loaded.SnapshotItems = len(snap.GetItems())
			return nil
		case n == 1:
			return fmt.Errorf("snapshot %d of a chain of %d is a header alone: %w", part.Gen, len(parts), persistence.ErrCorrupt)
		}
	}
	if rs == nil {
		return fmt.Errorf("empty snapshot chain: %w", persistence.ErrCorrupt)
	}
	if err := rs.Finish(); err != nil {
		return err
	}
	s.loaded.SnapshotItems = items
	s.log.Info("snapshot loaded", zap.Int("parts", len(parts)), zap.Int("chunks", chunks), zap.Int("items", items), zap.Duration("took", time.Since(t0)))
	return nil
}

// openState restores the clone's stored state into the fresh store:
// lazily if its header allows (the header and its eager items now, the
// rest on use and by the background load, which keeps st open until it is
// done), else item by item at once (and st is closed).
func (s *schedulerActor) openState(st *persistence.State) error {
	hdr := &tempestpb.SnapshotHeader{}
	if err := proto.Unmarshal(st.Header(), hdr); err != nil {
		return fmt.Errorf("decode the state header: %w", err)
	}
	// The header of the state's last write: a delta's says which capture
	// it followed, but the stored state is whole.
	hdr.Delta, hdr.FollowsApplied = false, 0
	if !hdr.GetLazy() {
		return errors.Join(s.restoreState(st, hdr), st.Close())
	}
	t0 := time.Now()
	load, err := s.store.BeginLazyRestore(hdr, storedState{st})
	if err != nil {
		return err
	}
	s.load = &lazyRun{load: load, state: st, started: t0, lastLog: t0}
	s.stored = storedSnapshot{state: true}
	s.loaded.Lazy, s.loaded.EagerItems = true, load.Stats().Eager
	for _, n := range hdr.GetCollectionItems() {
		s.loaded.SnapshotItems += int(n)
	}
	s.log.Info("state opened lazily", zap.Int("eager_items", s.loaded.EagerItems), zap.Int("state_items", s.loaded.SnapshotItems),
		zap.Duration("took", time.Since(t0)))
	return nil
}

// restoreState loads the clone's stored state into the fresh store, item
// by item in key order, logging its progress while it loads.
func (s *schedulerActor) restoreState(st *persistence.State, hdr *tempestpb.SnapshotHeader) error {
	rs, err := s.store.BeginRestore(hdr)
	if err != nil {
		return err
	}
	rs.Trusted() // read back from our own checksummed storage
	rs.SizeHint(hdr.GetCollectionItems())
	total := uint64(0)
	for _, n := range hdr.GetCollectionItems() {
		total += n
	}
	t0, lastLog := time.Now(), time.Now()
	items := 0
	for it, err := range st.Items() {
		if err != nil {
			return err
		}
		if err := rs.AddItemEncoded(it.Value); err != nil {
			return fmt.Errorf("item %q of %s: %w", it.Key, it.Collection, err)
		}
		if items++; items%4096 == 0 && time.Since(lastLog) >= 2*time.Second {
			lastLog = time.Now()
			s.log.Info("loading state", zap.Int("items", items), zap.Uint64("of_about", total), zap.Duration("elapsed", time.Since(t0)))
		}
	}
	if err := errors.Join(rs.EndItems(), rs.Finish()); err != nil {
		return err
	}
	s.stored = storedSnapshot{state: true}
	s.loaded.SnapshotItems = items
	s.log.Info("state loaded", zap.Int("items", items), zap.Duration("took", time.Since(t0)))
	return nil
}

// storedState is a persistence.State as collections reads it.
type storedState struct{ st *persistence.State }

func (s storedState) Item(collection string, key []byte) ([]byte, bool, error) {
	return s.st.Get(collection, key)
}

func (s storedState) Items() iter.Seq2[collections.StoredItem, error] {
	return func(yield func(collections.StoredItem, error) bool) {
		for it, err := range s.st.Items() {
			if !yield(collections.StoredItem{Collection: it.Collection, Key: it.Key, Value: it.Value}, err) {
				return
			}
		}
	}
}

// lazyRun is the background load of a lazily opened state: slices of at
// most Config.SnapshotSlice between requests, paced by the node's snapshot
// CPU budget (pacer.go) like snapshot slices, each a loadWork message the
// scheduler sends itself (or a timer sends, when the budget says wait).
type lazyRun struct {
	load      *collections.LazyLoad
	state     *persistence.State
	started   time.Time
	lastLog   time.Time // of the load's progress
	busy      time.Duration
	turns     TurnStats // its slices
	waiting   bool
	stopTimer func() bool
}

// loadWork asks for the next slice of the background load; run is set
// when the pacer's timer sent it.
type loadWork struct{ run *lazyRun }

// loadItemsPerStep is how many items one LazyLoad.Step call examines: the
// slice checks its time after each.
const loadItemsPerStep = 256

// loadSlice loads the next slice of the state's items, then paces the next.
func (s *schedulerActor) loadSlice(ctx actor.Context, m *loadWork) {
	r := s.load
	if r == nil || (m.run != nil && m.run != r) {
		return // done, or a timer of an earlier incarnation's load
	}
	if m.run != nil {
		r.waiting = false
	} else if r.waiting {
		return
	}
	pacer := s.c.n.snapPacer
	if wait := pacer.wait(time.Now()); wait > 0 {
		s.loadWait(ctx, r, wait)
		return
	}
	done := false
	d, cpu := s.backgroundSlice(&r.turns, func(start time.Time) {
		for !done && time.Since(start) < s.c.n.cfg.SnapshotSlice {
			var err error
			if done, err = r.load.Step(loadItemsPerStep); err != nil {
				panic(fmt.Errorf("loading the stored state, reloading: %w", err))
			}
		}
	})
	r.busy += d
	if done {
		s.finishLoad()
		return
	}
	if now := time.Now(); now.Sub(r.lastLog) >= 2*time.Second {
		r.lastLog = now
		st := r.load.Stats()
		s.log.Info("loading state in the background", zap.Int("items", st.Loaded), zap.Int("faulted", st.Faulted),
			zap.Int("of_about", s.loaded.SnapshotItems), zap.Duration("busy", r.busy), zap.Duration("elapsed", now.Sub(r.started)))
	}
	if wait := pacer.spend(time.Now(), cpu); wait > 0 {
		s.loadWait(ctx, r, wait)
		return
	}
	ctx.Send(ctx.Self(), &loadWork{})
}

func (s *schedulerActor) loadWait(ctx actor.Context, r *lazyRun, wait time.Duration) {
	r.waiting = true
	r.stopTimer = after(ctx.ActorSystem(), ctx.Self(), wait, &loadWork{run: r})
}

// finishLoad ends the background load: every item is in memory.
func (s *schedulerActor) finishLoad() {
	r := s.load
	st := r.load.Stats()
	s.loaded.Faults, s.loaded.Faulted, s.loaded.BackgroundItems = st.Faults, st.Faulted, st.Loaded
	s.loaded.BackgroundBusyMs, s.loaded.BackgroundMs, s.loaded.LoadDone = ms(r.busy), ms(time.Since(r.started)), true
	s.loaded.BackgroundMaxTurnUs, s.loaded.BackgroundMaxTurnCPUUs = r.turns.MaxWallUs, r.turns.MaxCPUUs
	if err := r.state.Close(); err != nil {
		s.log.Warn("closing the stored state's view", zap.Error(err))
	}
	s.load = nil
	log := s.log.Info
	if st.Mismatch {
		log = s.log.Error // the store holds what the state held; its header disagreed
	}
	log("state loaded in the background", zap.Int("items", st.Loaded), zap.Int("faulted", st.Faulted), zap.Int("faults", st.Faults),
		zap.Bool("header_mismatch", st.Mismatch), zap.Duration("busy", r.busy), zap.Duration("took", time.Since(r.started)))
}

// stopLoad gives the background load up (the scheduler is stopping).
func (s *schedulerActor) stopLoad() {
	r := s.load
	if r == nil {
		return
	}
	if r.stopTimer != nil {
		r.stopTimer()
	}
	r.load.Close()
	_ = r.state.Close()
	s.load = nil
}
