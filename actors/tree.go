package actors

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"

	"github.com/tempestrt/tempest/persistence"
)

// The supervisors of the tree. Each spawns its children in *actor.Started,
// because protoactor stops an actor's children when it restarts it and the
// new instance must bring them back.

// nodeActor is the root of a node's tree.
type nodeActor struct{ n *Node }

func (a *nodeActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		strategy := a.n.strategy()
		if a.n.gateway != nil {
			spawnChild(ctx, "gateway", func() actor.Actor { return &gatewayActor{g: a.n.gateway} }, strategy)
		}
		spawnChild(ctx, "services", func() actor.Actor { return &servicesActor{n: a.n} }, strategy)
	case *crash:
		panic(chaosPanic{m.reason})
	}
}

// servicesActor supervises one actor per service.
type servicesActor struct{ n *Node }

func (a *servicesActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		for _, name := range a.n.order {
			rt := a.n.services[name]
			spawnChild(ctx, name, func() actor.Actor { return &serviceActor{n: a.n, rt: rt} }, a.n.strategy())
		}
	case *crash:
		panic(chaosPanic{m.reason})
	}
}

// serviceActor supervises the clones of one service.
type serviceActor struct {
	n  *Node
	rt *serviceRuntime
}

func (a *serviceActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		for _, c := range a.rt.clones {
			spawnChild(ctx, fmt.Sprint(c.index), func() actor.Actor { return &cloneActor{c: c} }, a.n.strategy())
		}
	case *crash:
		panic(chaosPanic{m.reason})
	}
}

// cloneRuntime is what outlives the actor instances of one clone: its
// identity, its op log, its actors' PIDs (protoactor keeps a PID across
// restarts) and the status its scheduler publishes.
type cloneRuntime struct {
	n       *Node
	service *serviceRuntime
	index   int
	id      string // "cart/1": the clone's origin id and group member name
	log     *zap.Logger

	// The children's PIDs, fixed by name before the tree starts (protoactor
	// keeps a PID across restarts), so siblings and Node.Call read them
	// without synchronisation.
	schedulerPID, memberPID, repairPID *actor.PID

	// writer is the current scheduler incarnation's ordered op-log stream
	// (persistence.Writer). A new incarnation waits for the previous one's
	// writes to complete before it replays the log: otherwise an own op still
	// queued by the dead incarnation would be missing from the replay, and the
	// clone would reuse its sequence number for a different op. Node.Stop
	// waits for it before closing the database.
	writer atomic.Pointer[persistence.Writer]

	ready atomic.Bool // the scheduler has loaded state and serves
	// spawned: the clone actor has spawned all three children. Until then
	// a scheduler must not send to its siblings: a message to a PID whose
	// spawn is still under way races with protoactor's mailbox setup (the
	// race detector caught it), so the clone actor itself starts the first
	// catch-up once they all exist.
	spawned atomic.Bool
	// outstanding counts requests Node.Call sent to this clone that its
	// scheduler has not finished with (answered, or dropped unrun). Node.Call
	// routes to the clone with the fewest (least outstanding requests), so a
	// clone stalled in a slow handler or behind a deep mailbox gets less. A
	// heuristic only: a new scheduler incarnation resets it, since requests
	// lost with the old mailbox are never finished.
	outstanding atomic.Int64
	prunedAsks  atomic.Uint64 // peers' catch-up requests that reached behind this clone's pruned log
	incarnation atomic.Int64  // scheduler starts, for OnStable replica labels

	mu     sync.Mutex
	status CloneStatus
}

func newCloneRuntime(n *Node, rt *serviceRuntime, index int) *cloneRuntime {
	id := fmt.Sprintf("%s/%d", rt.svc.Name(), index)
	return &cloneRuntime{n: n, service: rt, index: index, id: id, log: n.log.With(zap.String("clone", id))}
}

// setReady records whether the clone serves, and wakes Node.waitReady.
func (c *cloneRuntime) setReady(ready bool) {
	c.ready.Store(ready)
	select {
	case c.n.readyChanged <- struct{}{}:
	default:
	}
}

// peers are the ids of the other clones of the same service.
// setPIDs fixes the children's PIDs; called once, before the tree starts.
func (c *cloneRuntime) setPIDs(system *actor.ActorSystem) {
	base := "node/services/" + c.id
	c.schedulerPID = system.NewLocalPID(base + "/scheduler")
	c.memberPID = system.NewLocalPID(base + "/member")
	c.repairPID = system.NewLocalPID(base + "/repair")
}

func (c *cloneRuntime) peers() []string {
	var out []string
	for _, o := range c.service.clones {
		if o != c {
			out = append(out, o.id)
		}
	}
	return out
}

// origins are the ids of every clone of the service, self included: the op
// streams that define stability.
func (c *cloneRuntime) origins() []string {
	out := make([]string, 0, len(c.service.clones))
	for _, o := range c.service.clones {
		out = append(out, o.id)
	}
	return out
}

func (c *cloneRuntime) setStatus(f func(*CloneStatus)) {
	c.mu.Lock()
	f(&c.status)
	c.mu.Unlock()
}

// cloneActor is one clone: the supervisor of its scheduler, member and
// repair agent. Siblings find each other by PID, which is fixed by name.
type cloneActor struct{ c *cloneRuntime }

func (a *cloneActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		c := a.c
		strategy := c.n.strategy()
		spawnChild(ctx, "scheduler", func() actor.Actor { return newScheduler(c) }, strategy)
		spawnChild(ctx, "member", func() actor.Actor { return &memberActor{c: c} }, strategy)
		spawnChild(ctx, "repair", func() actor.Actor { return &repairActor{c: c} }, strategy)
		c.spawned.Store(true)
		ctx.Send(c.repairPID, &repairTick{all: true}) // catch up on what was missed while down
	case *actor.Restarting, *actor.Stopping:
		a.c.spawned.Store(false) // its children are stopped and spawned again
	case *crash:
		panic(chaosPanic{m.reason})
	}
}

// spawnChild spawns a named child; a failure to spawn is a failure of the
// parent (its supervisor retries).
func spawnChild(ctx actor.Context, name string, produce func() actor.Actor, s actor.SupervisorStrategy) *actor.PID {
	pid, err := ctx.SpawnNamed(actor.PropsFromProducer(produce, actor.WithSupervisor(s)), name)
	if err != nil {
		panic(fmt.Errorf("spawn %s/%s: %w", ctx.Self().Id, name, err))
	}
	return pid
}
