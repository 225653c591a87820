package actors

import (
	"context"
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
type schedulerActor struct {
	c        *cloneRuntime
	log      *zap.Logger
	store    *collections.Store
	methods  map[string]*method
	q        *schedq.Queue
	clog     *persistence.CloneLog
	stopTick func()
	stopWake func() bool

	drainQueued   bool
	wakeAt        time.Time
	lastPos       uint64 // highest op-log position known durable
	sinceSnapshot int
	lastStatus    time.Time

	served, misses, failed, badOps uint64
	abandoned                      uint64 // settled requests dropped unrun
	repaired                       uint64 // ops that arrived by catch-up, not multicast
	applyEWMA                      time.Duration
}

func newScheduler(c *cloneRuntime) actor.Actor {
	return &schedulerActor{c: c, log: c.log.Named("scheduler")}
}

func (s *schedulerActor) Receive(ctx actor.Context) {
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
		s.lastPos = max(s.lastPos, m.pos)
		if m.method != "" && s.q != nil {
			s.q.ObserveTail(m.method, m.tail)
		}
	case *statusRequest:
		s.publish(time.Now())
		ctx.Respond(&statusPublished{})
	case *summaryRequest:
		ctx.Respond(&summary{have: s.store.VersionVector()})
	case *persistFailed:
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
	c.inflight.Wait()
	snapshotPos, replayed, err := s.recover()
	if err != nil {
		panic(fmt.Errorf("recover %s: %w", c.id, err))
	}
	s.lastPos = snapshotPos
	waitPastClock(s.store.Now())
	if s.q, err = schedq.New(c.n.cfg.Scheduler); err != nil {
		panic(err)
	}
	s.stopTick = every(ctx.ActorSystem(), ctx.Self(), c.n.cfg.HeartbeatInterval, &tick{})
	s.publish(time.Now())
	c.outstanding.Store(0)
	c.ready.Store(true)
	ctx.Send(c.repairPID, &repairTick{all: true}) // catch up on what was missed while down
	s.log.Info("clone ready", zap.Uint64("applied", s.store.Applied()), zap.Int("replayed", replayed),
		zap.Uint64("snapshot_pos", snapshotPos), zap.Duration("took", time.Since(t0)))
}

// waitPastClock waits until the physical clock has passed the millisecond of
// the recovered clock reading (at most one second). A heartbeat the previous
// incarnation multicast after its last persisted op promised peers that no
// later op of this clone would be stamped at or below the heartbeat's time;
// that time is at most the physical clock at the crash (plus drift the HLC
// accepted from peers), so starting past it keeps the promise.
func waitPastClock(ts collections.Timestamp) {
	now := time.Now()
	target := time.UnixMilli(max(int64(ts.WallMs), now.UnixMilli()) + 1)
	if d := target.Sub(now); d > 0 {
		time.Sleep(min(d, time.Second))
	}
}

// recover loads the snapshot and replays the log after it.
func (s *schedulerActor) recover() (pos uint64, replayed int, err error) {
	data, pos, ok, err := s.clog.LoadSnapshot()
	if err != nil {
		return 0, 0, err
	}
	if ok {
		snap := &tempestpb.StoreSnapshot{}
		if err := proto.Unmarshal(data, snap); err != nil {
			return 0, 0, fmt.Errorf("decode snapshot: %w", err)
		}
		if err := s.store.Restore(snap); err != nil {
			return 0, 0, err
		}
	}
	err = s.clog.Replay(pos, func(_ uint64, r persistence.Record) error {
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
	s.c.ready.Store(false)
	if s.stopTick != nil {
		s.stopTick()
		s.stopTick = nil
	}
	if s.stopWake != nil {
		s.stopWake()
		s.stopWake = nil
	}
	if s.q == nil {
		return
	}
	now := time.Now()
	for {
		next, shed, _ := s.q.Pop(now.Add(24*time.Hour), ^uint64(0))
		for _, r := range shed {
			s.reply(r.Payload.(*callRequest), nil, fmt.Errorf("clone %s: %w", s.c.id, errCloneStopping))
		}
		if next == nil {
			break
		}
		s.reply(next.Payload.(*callRequest), nil, fmt.Errorf("clone %s: %w", s.c.id, errCloneStopping))
	}
}

func (s *schedulerActor) admit(ctx actor.Context, r *callRequest) {
	m := s.methods[r.method]
	if m == nil {
		s.reply(r, nil, fmt.Errorf("method %q: %w", r.method, ErrUnknownMethod))
		return
	}
	req := &schedq.Request{Method: r.method, Kind: schedq.Query, Arrival: r.arrived, Deadline: r.deadline, Payload: r}
	if m.update {
		req.Kind = schedq.Update
		if m.holdBack {
			// Ready once every origin's stream is known up to now: no op
			// issued before the request can still reorder it.
			req.Watermark = s.store.Now().Pack()
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
	defer func() {
		if p := recover(); p != nil {
			s.failed++
			s.reply(cr, nil, Errorf(500, "handler_panic", "%s panicked: %v", m.name, p))
			panic(p) // let it crash: the supervisor restarts the scheduler, which reloads from disk
		}
	}()
	if !m.update {
		out, err := m.invoke(hc, cr.body)
		s.observe(m.name, start)
		s.reply(cr, out, err)
		return
	}
	var out []byte
	ops, err := s.store.Update(func() error {
		var herr error
		out, herr = m.invoke(hc, cr.body)
		return herr
	})
	s.observe(m.name, start)
	if err != nil {
		s.reply(cr, nil, err)
		return
	}
	if len(ops) == 0 {
		s.reply(cr, out, nil)
		return
	}
	s.sinceSnapshot += len(ops)
	recs, payload, err := encodeOps(ops)
	if err != nil {
		panic(err) // ops we cannot encode are applied but can never be persisted: reload
	}
	self, member, system := ctx.Self(), s.c.memberPID, ctx.ActorSystem()
	clog := s.clog
	ran := time.Now()
	s.c.n.inflight.Add(1)
	s.c.inflight.Add(1)
	go func() {
		defer s.c.n.inflight.Done()
		defer s.c.inflight.Done()
		pos, err := clog.Append(context.Background(), recs...)
		if err != nil {
			system.Root.Send(self, &persistFailed{err: err})
			s.reply(cr, nil, fmt.Errorf("%w: %v", ErrPersistenceFailed, err))
			return
		}
		system.Root.Send(self, &persisted{pos: pos, method: cr.method, tail: time.Since(ran)})
		system.Root.Send(member, &broadcast{payload: payload})
		s.reply(cr, out, nil)
	}()
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

// reply answers a request. It may run on a persistence goroutine, so it uses
// only immutable state.
func (s *schedulerActor) reply(r *callRequest, body []byte, err error) {
	s.c.outstanding.Add(-1)
	select {
	case r.reply <- callResult{body: body, err: err}:
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
		recs, _, err := encodeOps(fresh)
		if err != nil {
			panic(err)
		}
		self, system, clog := ctx.Self(), ctx.ActorSystem(), s.clog
		s.c.n.inflight.Add(1)
		s.c.inflight.Add(1)
		go func() {
			defer s.c.n.inflight.Done()
			defer s.c.inflight.Done()
			// Not waited for: a peer's op lost by a crash here is fetched
			// again by catch-up. A failure is only logged for the same reason.
			if pos, err := clog.Append(context.Background(), recs...); err != nil {
				s.log.Error("persist peer ops", zap.Error(err))
			} else {
				system.Root.Send(self, &persisted{pos: pos})
			}
		}()
	}
	s.kick(ctx)
	return len(fresh)
}

// tick: heartbeat, compaction, snapshot, status.
func (s *schedulerActor) tick(ctx actor.Context) {
	now := time.Now()
	hb, err := proto.Marshal(&tempestpb.GroupMessage{Body: &tempestpb.GroupMessage_Heartbeat{Heartbeat: s.store.Heartbeat()}})
	if err == nil {
		ctx.Send(s.c.memberPID, &broadcast{payload: hb})
	}
	s.store.Compact()
	s.q.Age()
	if s.sinceSnapshot >= s.c.n.cfg.SnapshotEvery && s.lastPos > 0 {
		s.snapshot()
	}
	if now.Sub(s.lastStatus) >= 100*time.Millisecond {
		s.publish(now)
	}
	s.kick(ctx)
}

// snapshot saves the replica state; the log up to lastPos is covered, and
// all but LogRetain records behind it are pruned.
func (s *schedulerActor) snapshot() {
	data, err := proto.Marshal(s.store.Snapshot())
	if err != nil {
		s.log.Error("encode snapshot", zap.Error(err))
		return
	}
	if err := s.clog.SaveSnapshot(data, s.lastPos); err != nil {
		s.log.Error("save snapshot", zap.Error(err))
		return
	}
	s.sinceSnapshot = 0
	if retain := s.c.n.cfg.LogRetain; s.lastPos > retain {
		if err := s.clog.Prune(s.lastPos - retain); err != nil {
			s.log.Warn("prune op log", zap.Error(err))
		}
	}
}

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
		cs.RejectedOps = s.badOps
		cs.RepairedOps = s.repaired
		ss := s.store.Stats()
		cs.LateOps, cs.LateMisplaced, cs.RolledBack = ss.LateOps, ss.LateMisplaced, ss.RolledBack
		cs.ApplyLatencyUs = s.applyEWMA.Microseconds()
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
