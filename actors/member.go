package actors

import (
	"errors"
	"fmt"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/tempestrt/tempest/internal/group"
	"github.com/tempestrt/tempest/proto/tempestpb"
)

// memberActor is a clone's endpoint in its service's group: it decodes what
// peers send and routes it to the scheduler or the repair agent, and sends
// what they ask it to. Undecodable payloads are counted and dropped.
type memberActor struct {
	c   *cloneRuntime
	log *zap.Logger
	ep  group.Endpoint
	bad uint64
}

func (a *memberActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.log = a.c.log.Named("member")
		self, root := ctx.Self(), ctx.ActorSystem().Root
		ep, err := a.c.n.transport.Join(a.c.service.svc.Name(), a.c.id, func(from string, payload []byte) {
			root.Send(self, &inbound{from: from, payload: payload})
		})
		if err != nil {
			panic(fmt.Errorf("join group %s: %w", a.c.service.svc.Name(), err))
		}
		a.ep = ep
	case *actor.Stopping, *actor.Restarting:
		if a.ep != nil {
			_ = a.ep.Leave()
			a.ep = nil
		}
	case *inbound:
		a.route(ctx, m)
	case *broadcast:
		if err := a.ep.Broadcast(m.payload); err != nil {
			a.log.Warn("broadcast", zap.Error(err))
		}
	case *unicast:
		if err := a.ep.Send(m.to, m.payload); err != nil && !errors.Is(err, group.ErrUnknownMember) {
			a.log.Warn("send", zap.String("to", m.to), zap.Error(err))
		}
	case *crash:
		panic(chaosPanic{m.reason})
	}
}

func (a *memberActor) route(ctx actor.Context, m *inbound) {
	msg := &tempestpb.GroupMessage{}
	if err := proto.Unmarshal(m.payload, msg); err != nil {
		a.bad++
		a.log.Warn("dropping undecodable group message", zap.String("from", m.from), zap.Int("bytes", len(m.payload)), zap.Error(err))
		return
	}
	switch b := msg.Body.(type) {
	case *tempestpb.GroupMessage_Ops:
		ctx.Send(a.c.schedulerPID, &deliverOps{ops: b.Ops.GetOps(), source: sourceMulticast})
	case *tempestpb.GroupMessage_Heartbeat:
		ctx.Send(a.c.schedulerPID, &deliverHeartbeat{hb: b.Heartbeat})
	case *tempestpb.GroupMessage_CatchupRequest:
		ctx.Send(a.c.repairPID, &catchupRequest{req: b.CatchupRequest})
	case *tempestpb.GroupMessage_CatchupReply:
		if ops := b.CatchupReply.GetOps(); len(ops) > 0 {
			ctx.Send(a.c.schedulerPID, &deliverOps{ops: ops, source: sourceCatchup})
		}
		if b.CatchupReply.GetMore() {
			ctx.Send(a.c.repairPID, &repairTick{}) // keep pulling
		}
	default:
		a.bad++
		a.log.Warn("dropping empty group message", zap.String("from", m.from))
	}
}
