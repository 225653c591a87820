package actors

import (
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

// A clone's snapshot is a collections.SnapshotStream written in chunks.
// BeginSnapshot captures the replica at one point in O(origins); the
// scheduler then produces the items a slice at a time (Config.SnapshotSlice)
// between requests: each slice ends with a snapshotWork message sent to
// itself, behind whatever is already in the mailbox, so requests that came
// in meanwhile run first. Every chunk is queued to the clone's Writer right
// away, in order with the ops: the Writer places the snapshot at the log
// position of its SnapshotBegin (it covers exactly the records submitted
// before it) and makes it the clone's snapshot only at SnapshotEnd, so a
// crash in the middle leaves the previous snapshot in place and the
// partial one is discarded. The stored chunks are the header, then the
// stream's chunks in order: the same bytes a state transfer to another
// clone would send.

// snapshotRun is the snapshot being produced.
type snapshotRun struct {
	stream        *collections.SnapshotStream
	started       time.Time
	chunks, items int
	bytes         int64
	busy          time.Duration // scheduler time spent on it
	maxTurn       time.Duration // the longest turn spent on it
	turns         int
	ended         bool // SnapshotEnd queued, waiting for snapshotSaved
}

// SnapshotInfo is what a clone's status says of its last durable snapshot.
type SnapshotInfo struct {
	Pos    uint64 `json:"pos"` // log position it covers
	Bytes  int64  `json:"bytes"`
	Items  int    `json:"items"`
	Chunks int    `json:"chunks"` // header included
	// DurationMs: from capture until durable. BusyMs: scheduler time spent
	// producing it, over Turns turns; MaxTurnUs: the longest of them. Turn
	// times are wall-clock: a turn during which the goroutine or its thread
	// was preempted counts the preemption too (each turn does at most
	// SnapshotSlice plus one chunk of work).
	DurationMs float64   `json:"duration_ms"`
	BusyMs     float64   `json:"scheduler_busy_ms"`
	Turns      int       `json:"turns"`
	MaxTurnUs  int64     `json:"max_turn_us"`
	At         time.Time `json:"at"`
}

// snapshotInterval is how many ops to apply before the next snapshot:
// SnapshotEvery, or SnapshotPerItem times the replica's items if more (see
// Config.SnapshotPerItem).
func (s *schedulerActor) snapshotInterval() int {
	cfg := s.c.n.cfg
	return max(cfg.SnapshotEvery, int(cfg.SnapshotPerItem*float64(s.store.Items())))
}

// snapshotWork tells a scheduler to produce its snapshot's next slice.
type snapshotWork struct{}

// beginSnapshot captures the replica and queues the snapshot's header.
func (s *schedulerActor) beginSnapshot(ctx actor.Context) {
	st, err := s.store.BeginSnapshot(collections.SnapshotStreamOptions{})
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
	if err := s.w.SnapshotBegin(hdr, s.persistCallback(ctx)); err != nil {
		panic(fmt.Errorf("op log write refused, reloading from disk: %w", err))
	}
	s.snap = &snapshotRun{stream: st, started: time.Now(), chunks: 1, bytes: int64(len(hdr))}
	s.sinceSnapshot = 0
	ctx.Send(ctx.Self(), &snapshotWork{})
}

// snapshotSlice produces chunks for up to Config.SnapshotSlice and queues
// them; the last one ends the snapshot.
func (s *schedulerActor) snapshotSlice(ctx actor.Context) {
	r := s.snap
	if r == nil || r.ended {
		return
	}
	if s.w.Full() {
		return // the disk is behind: tick resumes it
	}
	cfg := s.c.n.cfg
	t0 := time.Now()
	defer func() {
		d := time.Since(t0)
		r.busy += d
		r.turns++
		r.maxTurn = max(r.maxTurn, d)
	}()
	for {
		chunk, last, err := r.stream.Next(cfg.SnapshotChunkBytes, cfg.SnapshotChunkItems)
		if err != nil {
			// The stream broke (a bug): give this snapshot up. Its header
			// and chunks stay unreferenced and are discarded by the next
			// SnapshotBegin; the previous snapshot still covers the log.
			s.log.Error("snapshot stream", zap.Error(err))
			r.stream.Close()
			s.snap = nil
			return
		}
		data, err := proto.Marshal(chunk)
		if err != nil {
			s.log.Error("encode snapshot chunk", zap.Error(err))
			r.stream.Close()
			s.snap = nil
			return
		}
		cb := s.persistCallback(ctx)
		if err := s.w.SnapshotChunk(data, cb); err != nil {
			panic(fmt.Errorf("op log write refused, reloading from disk: %w", err))
		}
		r.chunks++
		r.items += len(chunk.GetItems())
		r.bytes += int64(len(data))
		if last {
			r.stream.Close()
			r.ended = true
			self, system, w := ctx.Self(), ctx.ActorSystem(), s.w
			if err := w.SnapshotEnd(func(pos uint64, err error) {
				if err != nil {
					system.Root.Send(self, &persistFailed{w: w, err: err})
					return
				}
				system.Root.Send(self, &snapshotSaved{pos: pos})
			}); err != nil {
				panic(fmt.Errorf("op log write refused, reloading from disk: %w", err))
			}
			return
		}
		if time.Since(t0) >= cfg.SnapshotSlice {
			ctx.Send(ctx.Self(), &snapshotWork{})
			return
		}
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
	if r := s.snap; r != nil {
		s.lastSnapshot = &SnapshotInfo{Pos: pos, Bytes: r.bytes, Items: r.items, Chunks: r.chunks,
			DurationMs: ms(time.Since(r.started)), BusyMs: ms(r.busy), Turns: r.turns, MaxTurnUs: r.maxTurn.Microseconds(), At: time.Now()}
		s.snap = nil
	}
	retain := s.c.n.cfg.LogRetain
	if pos <= retain {
		return
	}
	self, system, w := ctx.Self(), ctx.ActorSystem(), s.w
	if err := w.Prune(pos-retain, func(_ uint64, err error) {
		if err != nil {
			system.Root.Send(self, &persistFailed{w: w, err: err})
		}
	}); err != nil {
		panic(fmt.Errorf("op log write refused, reloading from disk: %w", err))
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// restoreSnapshot loads the clone's stored snapshot into the fresh store: a
// stream (the header, then chunks) or, from older data, one whole
// StoreSnapshot (a single chunk). It logs its progress while it loads.
func (s *schedulerActor) restoreSnapshot(chunks iter.Seq2[[]byte, error]) error {
	next, stop := iter.Pull2(chunks)
	defer stop()
	first, err, ok := next()
	if !ok {
		return fmt.Errorf("snapshot has no chunk: %w", persistence.ErrCorrupt)
	}
	if err != nil {
		return err
	}
	second, err, ok := next()
	if err != nil {
		return err
	}
	if !ok { // one whole StoreSnapshot
		snap := &tempestpb.StoreSnapshot{}
		if err := proto.Unmarshal(first, snap); err != nil {
			return fmt.Errorf("decode snapshot: %w", err)
		}
		return s.store.Restore(snap)
	}
	hdr := &tempestpb.SnapshotHeader{}
	if err := proto.Unmarshal(first, hdr); err != nil {
		return fmt.Errorf("decode snapshot header: %w", err)
	}
	rs, err := s.store.BeginRestore(hdr)
	if err != nil {
		return err
	}
	t0, lastLog := time.Now(), time.Now()
	n, items := 1, 0
	for data := second; ; {
		chunk := &tempestpb.SnapshotChunk{}
		if err := proto.Unmarshal(data, chunk); err != nil {
			return fmt.Errorf("decode snapshot chunk %d: %w", n, err)
		}
		if err := rs.Add(chunk); err != nil {
			return err
		}
		n++
		items += len(chunk.GetItems())
		if time.Since(lastLog) >= 2*time.Second {
			lastLog = time.Now()
			s.log.Info("loading snapshot", zap.Int("chunks", n), zap.Int("items", items), zap.Duration("elapsed", time.Since(t0)))
		}
		var ok bool
		if data, err, ok = next(); err != nil {
			return err
		} else if !ok {
			break
		}
	}
	if err := rs.Finish(); err != nil {
		return err
	}
	s.log.Info("snapshot loaded", zap.Int("chunks", n), zap.Int("items", items), zap.Duration("took", time.Since(t0)))
	return nil
}
