package actors

import (
	"errors"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/tempestrt/tempest/persistence"
	"github.com/tempestrt/tempest/proto/tempestpb"
)

// repairActor is a clone's anti-entropy agent. Periodically (and right after
// its clone's scheduler restarts) it sends a random peer its version vector;
// the peer answers from its op log with the ops the requester lacks. This
// repairs what the group transport lost and what a clone missed while it
// was down. It reads the log directly, so it never waits on the scheduler
// to serve a peer.
type repairActor struct {
	c      *cloneRuntime
	log    *zap.Logger
	clog   *persistence.CloneLog
	rng    *rand.Rand
	cancel func()
	asked  time.Time
	askAll bool // the pending summary is for a round with every peer
}

var errStopRange = errors.New("enough ops")

func (a *repairActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.log = a.c.log.Named("repair")
		a.clog = a.c.n.db.Clone(a.c.id)
		a.rng = rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(a.c.index)))
		a.cancel = every(ctx.ActorSystem(), ctx.Self(), a.c.n.cfg.RepairInterval, &repairTick{})
	case *actor.Stopping, *actor.Restarting:
		if a.cancel != nil {
			a.cancel()
		}
	case *repairTick:
		// Ask the scheduler for the version vector; the answer comes back
		// as *summary. Rate-limit rounds triggered by "more" replies.
		if !m.all && time.Since(a.asked) < time.Millisecond {
			return
		}
		a.asked = time.Now()
		a.askAll = a.askAll || m.all
		ctx.Request(a.c.schedulerPID, &summaryRequest{})
	case *summary:
		a.ask(ctx, m.have, a.askAll)
		a.askAll = false
	case *catchupRequest:
		a.serve(ctx, m.req)
	case *crash:
		panic(chaosPanic{m.reason})
	}
}

func (a *repairActor) ask(ctx actor.Context, have map[string]uint64, all bool) {
	peers := a.c.peers()
	if len(peers) == 0 {
		return
	}
	if !all {
		peers = []string{peers[a.rng.IntN(len(peers))]}
	}
	payload, err := proto.Marshal(&tempestpb.GroupMessage{Body: &tempestpb.GroupMessage_CatchupRequest{
		CatchupRequest: &tempestpb.CatchupRequest{From: a.c.id, Have: have, MaxOps: uint32(a.c.n.cfg.CatchupMaxOps)},
	}})
	if err != nil {
		a.log.Error("encode catch-up request", zap.Error(err))
		return
	}
	for _, peer := range peers {
		ctx.Send(a.c.memberPID, &unicast{to: peer, payload: payload})
	}
}

// serve answers a peer's catch-up request from this clone's op log.
func (a *repairActor) serve(ctx actor.Context, req *tempestpb.CatchupRequest) {
	limit := min(int(req.GetMaxOps()), a.c.n.cfg.CatchupMaxOps)
	if limit <= 0 || req.GetFrom() == "" || req.GetFrom() == a.c.id {
		return
	}
	origins := a.c.origins()
	for o := range req.GetHave() {
		if !slices.Contains(origins, o) {
			origins = append(origins, o)
		}
	}
	var ops []*tempestpb.Op
	more := false
	for _, origin := range origins {
		from := req.GetHave()[origin] + 1
		err := a.clog.Range(origin, from, ^uint64(0), func(r persistence.Record) error {
			if len(ops) >= limit {
				more = true
				return errStopRange
			}
			op := &tempestpb.Op{}
			if err := proto.Unmarshal(r.Data, op); err != nil {
				return nil // a corrupt record is skipped; another peer may have it
			}
			ops = append(ops, op)
			return nil
		})
		if errors.Is(err, persistence.ErrPruned) {
			a.c.prunedAsks.Add(1)
			// The requester is behind this clone's log retention: only a
			// state transfer (not yet built) can bring it up to date.
			a.log.Debug("catch-up request reaches behind the pruned log", zap.String("origin", origin), zap.String("peer", req.GetFrom()))
		} else if err != nil && !errors.Is(err, errStopRange) {
			a.log.Warn("read op log for catch-up", zap.String("origin", origin), zap.Error(err))
		}
	}
	if len(ops) == 0 {
		return
	}
	payload, err := proto.Marshal(&tempestpb.GroupMessage{Body: &tempestpb.GroupMessage_CatchupReply{
		CatchupReply: &tempestpb.CatchupReply{From: a.c.id, Ops: ops, More: more},
	}})
	if err != nil {
		a.log.Error("encode catch-up reply", zap.Error(err))
		return
	}
	ctx.Send(a.c.memberPID, &unicast{to: req.GetFrom(), payload: payload})
}
