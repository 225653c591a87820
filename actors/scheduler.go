package actors

import (
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/tempestrt/tempest/collections"
	"github.com/tempestrt/tempest/internal/schedq"
	"github.com/tempestrt/tempest/persistence"
	"github.com/tempestrt/tempest/proto/tempestpb"
)

// schedulerActor owns one clone's replica store. It is the only actor that
// touches the store, so every request handler and every op delivery of the
// clone runs sequentially here, which is what makes per-item application
// order a property of the store alone.
//
// Requests wait in an earliest-deadline-first queue (schedq). Each request
// message is queued first and run later from a *drain message the actor
// sends itself, so requests that arrived meanwhile compete by deadline
// instead of by mailbox order. A request that can no longer meet its
// deadline is answered at once with ErrDeadlineUnmeet, never late.
//
// Update ops are applied locally at once, then persisted (group commit) and
// only then multicast and acknowledged: an op is never seen by a peer or a
// client before it is durable, so a crashed clone never reuses a sequence
// number that a peer has seen.
//
// Every write of the clone (its own ops, peers' ops, snapshots, prunes) goes
// through one persistence.Writer, in the order the scheduler issues it, so
// the op log never holds own op n+1 without n and a snapshot is never
// durable before an op it contains. The Writer's completions come back in
// the same order, so multicasts leave in seq order too. No goroutine per
// write: the committer calls back. The Writer's queue is bounded
// (Config.OpLogQueue): when it is full, new updates are refused at admission
// (503 overloaded) rather than queued in memory.
//
// A panic in a handler is that request's 500 handler_panic: an update's ops
// are retracted as for a handler error, the scheduler goes on, and the
// request is not retried elsewhere (it would crash there too).
type schedulerActor struct {
	c         *cloneRuntime
	log       *zap.Logger
	store     *collections.Store
	methods   map[string]*method
	q         *schedq.Queue
	clog      *persistence.CloneLog // reads: snapshot and replay at start
	w         *persistence.Writer   // every write, in order
	stopTick  func()
	stopWake  func() bool
	stopClock func() bool
	startedAt time.Time

	serving       bool // past the recovered clock: requests are admitted
	drainQueued   bool
	wakeAt        time.Time
	sinceSnapshot int
	// sinceDurable: ops applied since the begin of the last durable
	// snapshot, what a restart now would replay (bounds the pacing).
	sinceDurable int
	snap         *snapshotRun   // the snapshot being produced or written, if any
	lastSnapshot *SnapshotInfo  // the last durable one (this incarnation)
	bgTurns      TurnStats      // its background slices (this incarnation)
	stored       storedSnapshot // what the stored snapshot is
	load         *lazyRun       // the background load of a lazily opened state
	// stateItems and stateBytes: encodeStateItems' buffers, reused.
	stateItems []persistence.StateItem
	stateBytes []byte
	loaded     LoadInfo // how this incarnation loaded its state
	lastStatus time.Time

	served, misses, failed, badOps uint64
	abandoned                      uint64 // settled requests dropped unrun
	repaired                       uint64 // ops that arrived by catch-up, not multicast
	oplogFull                      uint64 // updates refused because the op-log queue was full
	applyEWMA                      time.Duration
}

func newScheduler(c *cloneRuntime) actor.Actor {
	return &schedulerActor{c: c, log: c.log.Named("scheduler")}
}

func (s *schedulerActor) Receive(ctx actor.Context) {
	defer func() {
		if p := recover(); p != nil {
			// Out of service from the failure on, not from the restart:
			// the supervisor may wait out a backoff of seconds first, and
			// until then Node.Call must route elsewhere, and what is queued
			// here must go elsewhere at once.
			s.stop()
			panic(p)
		}
	}()
	switch m := ctx.Message().(type) {
	case *actor.Started:
		s.start(ctx)
	case *actor.Stopping, *actor.Restarting:
		s.stop()
	case *callRequest:
		s.admit(ctx, m)
	case *drain:
		s.drainQueued = false
		s.drain(ctx)
	case *tick:
		s.tick(ctx)
	case *deliverOps:
		if n := s.deliver(ctx, m.ops); m.source == sourceCatchup {
			s.repaired += uint64(n)
		}
	case *deliverHeartbeat:
		s.store.ObserveHeartbeat(m.hb)
		s.kick(ctx)
	case *persisted:
		if s.q != nil {
			s.q.ObserveTail(m.method, m.tail)
		}
	case *snapshotWork:
		s.snapshotWorkMsg(ctx, m)
	case *snapshotSaved:
		s.snapshotSaved(ctx, m.pos)
	case *loadWork:
		s.loadSlice(ctx, m)
	case *clockPassed:
		s.serve()
	case *statusRequest:
		s.publish(time.Now())
		ctx.Respond(&statusPublished{})
	case *summaryRequest:
		ctx.Respond(&summary{have: s.store.VersionVector()})
	case *persistFailed:
		if m.w != s.w {
			return // a dead incarnation's writer: this one reloaded already
		}
		panic(fmt.Errorf("op log write failed, reloading from disk: %w", m.err))
	case *crash:
		panic(chaosPanic{m.reason})
	}
}

// start builds a fresh replica from the service definition and reloads it
// from the latest snapshot plus the op log behind it.
func (s *schedulerActor) start(ctx actor.Context) {
	c := s.c
	t0 := time.Now()
	scfg := collections.Config{Service: c.service.svc.Name(), Replica: c.id}
	if hook := c.n.cfg.OnStable; hook != nil {
		label := fmt.Sprintf("%s#%d", c.id, c.incarnation.Add(1))
		scfg.OnStable = func(collection string, item []byte, op collections.OpID) { hook(label, collection, item, op) }
	}
	b, err := c.service.svc.build(scfg)
	if err != nil {
		panic(err)
	}
	s.store, s.methods = b.store, b.methods
	s.clog = c.n.db.Clone(c.id)
	// The origins must be known before replay: with an unknown origin the
	// stable point would run ahead of that origin's ops still in the log,
	// fold too early and apply them late, in a different order than peers.
	s.store.SetOrigins(c.origins())
	if old := c.writer.Load(); old != nil {
		old.Wait() // the dead incarnation's writes land (or fail) before the replay
	}
	snapshotPos, replayed, err := s.recover()
	if err != nil {
		panic(fmt.Errorf("recover %s: %w", c.id, err))
	}
	// The replayed log is behind the stored snapshot as ops applied
	// since it: a long replay calls for the next snapshot soon.
	s.sinceSnapshot, s.sinceDurable = replayed, replayed
	s.w = s.clog.NewWriter(c.n.cfg.OpLogQueue)
	c.writer.Store(s.w)
	if s.q, err = schedq.New(c.n.cfg.Scheduler); err != nil {
		panic(err)
	}
	s.stopTick = every(ctx.ActorSystem(), ctx.Self(), c.n.cfg.HeartbeatInterval, &tick{})
	s.startedAt = t0
	if s.load != nil {
		ctx.Send(ctx.Self(), &loadWork{})
	}
	s.publish(time.Now())
	c.outstanding.Store(0)
	if c.spawned.Load() { // a restarted scheduler (else the clone actor sends it: see spawned)
		ctx.Send(c.repairPID, &repairTick{all: true}) // catch up on what was missed while down
	}
	s.loaded.TookMs = ms(time.Since(t0))
	s.log.Info("clone loaded", zap.Uint64("applied", s.store.Applied()), zap.Int("replayed", replayed),
		zap.Uint64("snapshot_pos", snapshotPos), zap.Duration("took", time.Since(t0)))
	if d := clockWait(s.store.Now(), time.Now()); d > 0 {
		s.stopClock = after(ctx.ActorSystem(), ctx.Self(), d, &clockPassed{})
		return
	}
	s.serve()
}

// maxClockWait caps clockWait. The recovered clock can be ahead of this
// node's physical clock only by the drift the HLC accepted from peers'
// timestamps; a peer whose clock is off by more than this is not worth
// keeping a clone down for.
const maxClockWait = time.Second

// clockWait is how long a starting clone waits before it serves: until the
// physical clock has passed the millisecond of the recovered clock reading
// (at most maxClockWait). A heartbeat the previous incarnation multicast
// after its last persisted op promised peers that no later op of this clone
// would be stamped at or below the heartbeat's time; that time is at most
// the physical clock at the crash (plus drift the HLC accepted from peers),
// so serving only past it keeps the promise. The scheduler does not sleep:
// it refuses requests (not admitted, so they go to another clone) until a
// clockPassed message arrives.
func clockWait(ts collections.Timestamp, now time.Time) time.Duration {
	target := time.UnixMilli(max(int64(ts.WallMs), now.UnixMilli()) + 1)
	return min(max(target.Sub(now), 0), maxClockWait)
}

// serve opens the clone to requests.
func (s *schedulerActor) serve() {
	s.stopClock = nil
	s.serving = true
	s.c.setReady(true)
	s.log.Info("clone ready", zap.Duration("took", time.Since(s.startedAt)))
}

// recover loads the snapshot and replays the log after it.
func (s *schedulerActor) recover() (pos uint64, replayed int, err error) {
	s.loaded = LoadInfo{}
	s.stored = storedSnapshot{}
	t0 := time.Now()
	st, ok, err := s.clog.OpenState()
	if err != nil {
		return 0, 0, err
	}
	if ok {
		pos = st.Pos()
		if err := s.openState(st); err != nil {
			return 0, 0, errors.Join(fmt.Errorf("state at %d: %w", pos, err), st.Close())
		}
		s.loaded.SnapshotParts, s.loaded.SnapshotMs = 1, ms(time.Since(t0))
	} else {
		// A chain, as format 3 wrote them: the next snapshot is a state.
		var parts []persistence.SnapshotPart
		pos, ok, parts, err = s.clog.SnapshotChain()
		if err != nil {
			return 0, 0, err
		}
		if ok {
			if err := s.restoreChain(parts); err != nil {
				return 0, 0, fmt.Errorf("snapshot at %d: %w", pos, err)
			}
			s.loaded.SnapshotParts, s.loaded.SnapshotMs = len(parts), ms(time.Since(t0))
		}
	}
	t0, lastLog := time.Now(), time.Now()
	defer func() { s.loaded.ReplayedOps, s.loaded.ReplayMs = replayed, ms(time.Since(t0)) }()
	err = s.clog.Replay(pos, func(at uint64, r persistence.Record) error {
		if time.Since(lastLog) >= 2*time.Second {
			lastLog = time.Now()
			s.log.Info("replaying op log", zap.Uint64("from", pos), zap.Uint64("at", at), zap.Int("replayed", replayed), zap.Duration("elapsed", time.Since(t0)))
		}
		op := &tempestpb.Op{}
		if err := proto.Unmarshal(r.Data, op); err != nil {
			s.log.Error("skipping undecodable op in log", zap.String("origin", r.Origin), zap.Uint64("seq", r.Seq), zap.Error(err))
			return nil
		}
		if _, err := s.store.Deliver(op); err != nil {
			s.log.Error("skipping unappliable op in log", zap.String("origin", r.Origin), zap.Uint64("seq", r.Seq), zap.Error(err))
			return nil
		}
		replayed++
		return nil
	})
	return pos, replayed, err
}

// stop answers everything still queued, so callers can go to another clone
// at once instead of waiting for their deadline.
func (s *schedulerActor) stop() {
	s.c.setReady(false)
	s.serving = false
	s.stopSnapshot()
	s.stopLoad()
	if s.stopTick != nil {
		s.stopTick()
		s.stopTick = nil
	}
	if s.stopWake != nil {
		s.stopWake()
		s.stopWake = nil
	}
	if s.stopClock != nil {
		s.stopClock()
		s.stopClock = nil
	}
	if s.q == nil {
		return
	}
	for _, r := range s.q.Drain() {
		s.reply(r.Payload.(*callRequest), nil, fmt.Errorf("clone %s: %w", s.c.id, errCloneStopping))
	}
}

func (s *schedulerActor) admit(ctx actor.Context, r *callRequest) {
	if !s.serving {
		s.reply(r, nil, fmt.Errorf("clone %s is starting: %w%w", s.c.id, ErrNoClone, markNotAdmitted))
		return
	}
	m := s.methods[r.method]
	if m == nil {
		s.reply(r, nil, fmt.Errorf("method %q: %w", r.method, ErrUnknownMethod))
		return
	}
	if m.update && s.w.Full() {
		s.refuseOpLogFull(r)
		return
	}
	req := &schedq.Request{Method: r.method, Kind: schedq.Query, Arrival: r.arrived, Deadline: r.deadline, Payload: r}
	if m.update {
		req.Kind = schedq.Update
		if m.holdBack {
			// Ready once every origin's stream is known up to now: no op
			// issued before the request can still reorder it (the end of
			// this millisecond: Store.HoldBackPoint).
			req.Watermark = s.store.HoldBackPoint().Pack()
		}
	}
	now := time.Now()
	if err := s.q.Push(now, req); err != nil {
		s.misses++
		switch {
		case errors.Is(err, schedq.ErrDeadlineUnmeetable):
			err = fmt.Errorf("%s on %s: %w%w", r.method, s.c.id, ErrDeadlineUnmeet, markNotAdmitted)
		case errors.Is(err, schedq.ErrQueueFull):
			err = fmt.Errorf("%s on %s: %w%w", r.method, s.c.id, ErrOverloaded, markNotAdmitted)
		}
		s.reply(r, nil, err)
		return
	}
	s.ack(r, req.RunsUntil) // Node.Call times its hedge by it
	s.kick(ctx)
}

// refuseOpLogFull answers an update 503 overloaded because the clone's
// op-log queue is full. It never ran, so Node.Call may try another clone.
func (s *schedulerActor) refuseOpLogFull(r *callRequest) {
	s.oplogFull++
	s.reply(r, nil, fmt.Errorf("%s on %s: op log queue full (%d records pending): %w%w",
		r.method, s.c.id, s.w.Pending(), ErrOverloaded, markNotAdmitted))
}

// kick makes sure a drain is on its way if there is queued work.
func (s *schedulerActor) kick(ctx actor.Context) {
	if !s.drainQueued && s.q != nil && s.q.Len() > 0 {
		s.drainQueued = true
		ctx.Send(ctx.Self(), &drain{})
	}
}

// drain runs the most urgent ready request, sheds the hopeless ones, and
// arranges to be called again.
func (s *schedulerActor) drain(ctx actor.Context) {
	now := time.Now()
	stable := s.store.StablePoint().Pack()
	next, shed, wake := s.q.Pop(now, stable)
	for _, r := range shed {
		s.misses++
		cr := r.Payload.(*callRequest)
		s.reply(cr, nil, fmt.Errorf("%s: %w", cr.method, ErrDeadlineUnmeet))
	}
	if next != nil {
		if cr := next.Payload.(*callRequest); cr.settled != nil && cr.settled.Load() {
			s.abandoned++ // answered elsewhere or given up: not worth running
			s.c.outstanding.Add(-1)
		} else {
			s.run(ctx, next)
		}
		s.kick(ctx)
		return
	}
	if !wake.IsZero() && (s.wakeAt.IsZero() || wake.Before(s.wakeAt) || !s.wakeAt.After(now)) {
		s.wakeAt = wake
		if s.stopWake != nil {
			s.stopWake()
		}
		s.stopWake = after(ctx.ActorSystem(), ctx.Self(), max(time.Until(wake), 0), &drain{})
	}
}

// run executes one request's handler.
func (s *schedulerActor) run(ctx actor.Context, r *schedq.Request) {
	cr := r.Payload.(*callRequest)
	m := s.methods[cr.method]
	hc := &Ctx{Service: s.c.service.svc.Name(), Method: m.name, Clone: s.c.id, Deadline: cr.deadline}
	start := time.Now()
	if !m.update {
		out, err := s.invoke(m, hc, cr.body)
		s.observe(m.name, start)
		s.replyRan(cr, start, out, err)
		return
	}
	if s.w.Full() {
		// Admitted while there was room; peers' ops filled the queue since.
		s.refuseOpLogFull(cr)
		return
	}
	var out []byte
	ops, err := s.store.Update(func() error {
		var herr error
		out, herr = s.invoke(m, hc, cr.body)
		return herr
	})
	s.observe(m.name, start)
	if err != nil {
		s.replyRan(cr, start, nil, err)
		return
	}
	if len(ops) == 0 {
		s.replyRan(cr, start, out, nil)
		return
	}
	s.sinceSnapshot += len(ops)
	s.sinceDurable += len(ops)
	recs, payload, err := encodeOps(ops)
	if err != nil {
		s.reply(cr, nil, fmt.Errorf("%w: %v", ErrPersistenceFailed, err))
		panic(err) // ops we cannot encode are applied but can never be persisted: reload
	}
	self, member, system, w := ctx.Self(), s.c.memberPID, ctx.ActorSystem(), s.w
	ran := time.Now()
	err = w.Append(recs, func(_ uint64, err error) {
		// On the committer goroutine, in the order of submission.
		if err != nil {
			system.Root.Send(self, &persistFailed{w: w, err: err})
			s.replyRan(cr, start, nil, fmt.Errorf("%w: %v", ErrPersistenceFailed, err))
			return
		}
		system.Root.Send(self, &persisted{method: cr.method, tail: time.Since(ran)})
		system.Root.Send(member, &broadcast{payload: payload})
		s.replyRan(cr, start, out, nil)
	})
	if err != nil {
		s.reply(cr, nil, fmt.Errorf("%w: %v", ErrPersistenceFailed, err))
		panic(fmt.Errorf("op log write refused, reloading from disk: %w", err))
	}
}

// invoke runs a handler. A panic in it is that request's failure, not the
// scheduler's: it becomes a 500 handler_panic (counted in status), and inside
// Store.Update it retracts the update's ops like any handler error.
func (s *schedulerActor) invoke(m *method, hc *Ctx, body []byte) (out []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.failed++
			s.log.Error("handler panicked", zap.String("method", m.name), zap.Any("panic", p), zap.StackSkip("stack", 2))
			out, err = nil, Errorf(500, "handler_panic", "%s panicked: %v", m.name, p)
		}
	}()
	return m.invoke(hc, body)
}

func (s *schedulerActor) observe(method string, start time.Time) {
	d := time.Since(start)
	s.q.Observe(method, d)
	s.served++
	if s.applyEWMA == 0 {
		s.applyEWMA = d
	} else {
		s.applyEWMA = (7*s.applyEWMA + d) / 8
	}
}

// reply answers a request that never ran. It may run on the committer's
// goroutine, so it uses only immutable state.
func (s *schedulerActor) reply(r *callRequest, body []byte, err error) {
	s.replyRan(r, time.Time{}, body, err)
}

// replyRan answers a request whose handler started at started.
func (s *schedulerActor) replyRan(r *callRequest, started time.Time, body []byte, err error) {
	s.c.outstanding.Add(-1)
	select {
	case r.reply <- callResult{body: body, err: err, at: time.Now(), started: started}:
	default: // cannot happen: the caller sized the channel for every answer
	}
}

// ack tells the caller that r was admitted and when it should be answered.
func (s *schedulerActor) ack(r *callRequest, expect time.Time) {
	select {
	case r.reply <- callResult{ack: true, expect: expect}:
	default:
	}
}

// deliver integrates ops from peers, persists the new ones and returns how
// many were new.
func (s *schedulerActor) deliver(ctx actor.Context, ops []*tempestpb.Op) int {
	var fresh []*tempestpb.Op
	for _, op := range ops {
		applied, err := s.store.Deliver(op)
		if err != nil {
			s.badOps++
			s.log.Warn("rejected op from peer", zap.String("origin", op.GetOrigin()), zap.Uint64("seq", op.GetSeq()), zap.Error(err))
			continue
		}
		if applied {
			fresh = append(fresh, op)
		}
	}
	if len(fresh) > 0 {
		s.sinceSnapshot += len(fresh)
		s.sinceDurable += len(fresh)
		recs, _, err := encodeOps(fresh)
		if err != nil {
			panic(err)
		}
		// Not waited for: a peer's op lost by a crash here is fetched again
		// by catch-up. A failure reloads the clone, as for its own ops: the
		// Writer is broken and the replica holds ops the disk does not.
		mustQueue(s.w.Append(recs, s.persistCallback(ctx)))
	}
	s.kick(ctx)
	return len(fresh)
}

// tick: heartbeat, compaction, tidying, snapshot, status.
func (s *schedulerActor) tick(ctx actor.Context) {
	now := time.Now()
	hb, err := proto.Marshal(&tempestpb.GroupMessage{Body: &tempestpb.GroupMessage_Heartbeat{Heartbeat: s.store.Heartbeat()}})
	if err == nil {
		ctx.Send(s.c.memberPID, &broadcast{payload: hb})
	}
	s.store.Compact()
	// The store tidies by itself in proportion to the ops it applies, but
	// not while a snapshot stream is open, and a bulk load of a large
	// state has one open most of the time: what it left hot would stay so
	// until the next load. Each tick moves a bounded batch on.
	s.store.Tidy(tidyPerTick)
	s.q.Age()
	switch {
	case s.snap == nil && s.sinceSnapshot >= s.c.n.cfg.SnapshotEvery:
		s.beginSnapshot(ctx)
	case s.snap != nil && s.snap.paused:
		s.snapshotSlice(ctx) // resumes a snapshot paused while the op log was full
	}
	if now.Sub(s.lastStatus) >= statusRefresh {
		s.publish(now)
	}
	s.kick(ctx)
}

// tidyPerTick is how many items a tick's Tidy examines at most (and so
// how far it advances the cold tables' evacuation: 16 slots per item):
// a few hundred microseconds of the scheduler's turn when there are quiet
// items to move (25,600 items a second per clone at the default 20 ms
// HeartbeatInterval), next to nothing when there are none.
const tidyPerTick = 512

// statusRefresh is how often a scheduler republishes its status on its own
// (Node.Status also asks for a fresh copy): often enough for a human or a
// load monitor, rare enough that copying digests costs nothing.
const statusRefresh = 100 * time.Millisecond

// publish refreshes the clone's status for Node.Status.
func (s *schedulerActor) publish(now time.Time) {
	s.lastStatus = now
	stable := s.store.StablePoint()
	st := s.q.Stats()
	lag := int64(-1)
	if !stable.IsZero() {
		lag = now.UnixMilli() - int64(stable.WallMs)
	}
	s.c.setStatus(func(cs *CloneStatus) {
		cs.Service = s.c.service.svc.Name()
		cs.Clone = s.c.id
		cs.Applied = s.store.Applied()
		cs.Items = s.store.Items()
		cold := s.store.ColdMemory()
		cs.ColdItems, cs.ColdKeyValueBytes = cold.Items, int64(cold.KeyValueBytes)
		cs.ColdArenaBytes, cs.ColdArenaLiveBytes = int64(cold.ArenaBytes), int64(cold.ArenaLiveBytes)
		cs.Digest = fmt.Sprintf("%016x", s.store.Digest())
		cs.CollectionDigests = map[string]string{}
		for name, d := range s.store.CollectionDigests() {
			cs.CollectionDigests[name] = fmt.Sprintf("%016x", d)
		}
		cs.StablePoint = stable.String()
		cs.StableLagMs = lag
		cs.Pending = s.store.Pending()
		cs.OwnSeq = s.store.OwnSeq()
		cs.QueueLen = s.q.Len()
		cs.Served = s.served
		cs.DeadlineMisses = s.misses
		cs.ShedInQueue = st.ShedInQueue
		cs.ShedBacklog = st.ShedBacklog
		cs.Abandoned = s.abandoned
		cs.HeldBack = st.Held
		cs.HandlerPanics = s.failed
		cs.OpLogFull = s.oplogFull
		cs.OpLogPending = s.w.Pending()
		cs.RejectedOps = s.badOps
		cs.RepairedOps = s.repaired
		ss := s.store.Stats()
		cs.LateOps, cs.LateMisplaced, cs.RolledBack = ss.LateOps, ss.LateMisplaced, ss.RolledBack
		cs.ApplyLatencyUs = s.applyEWMA.Microseconds()
		cs.LastSnapshot = s.lastSnapshot
		cs.SnapshotInProgress = s.snap != nil
		cs.BackgroundTurns = s.bgTurns
		if r := s.load; r != nil {
			st := r.load.Stats()
			s.loaded.Faults, s.loaded.Faulted, s.loaded.BackgroundItems = st.Faults, st.Faulted, st.Loaded
			s.loaded.BackgroundBusyMs = ms(r.busy)
			s.loaded.BackgroundMaxTurnUs, s.loaded.BackgroundMaxTurnCPUUs = r.turns.MaxWallUs, r.turns.MaxCPUUs
		}
		loaded := s.loaded
		cs.Loaded = &loaded
		cs.UpdatedAt = now
	})
}

// encodeOps encodes ops as op-log records and as one multicast payload.
func encodeOps(ops []*tempestpb.Op) ([]persistence.Record, []byte, error) {
	recs := make([]persistence.Record, 0, len(ops))
	for _, op := range ops {
		b, err := proto.Marshal(op)
		if err != nil {
			return nil, nil, fmt.Errorf("encode op: %w", err)
		}
		recs = append(recs, persistence.Record{Origin: op.GetOrigin(), Seq: op.GetSeq(), Data: b})
	}
	payload, err := proto.Marshal(&tempestpb.GroupMessage{Body: &tempestpb.GroupMessage_Ops{Ops: &tempestpb.OpBatch{Ops: ops}}})
	if err != nil {
		return nil, nil, fmt.Errorf("encode op batch: %w", err)
	}
	return recs, payload, nil
}
