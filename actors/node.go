package actors

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"

	"github.com/tempestrt/tempest/gateway"
	"github.com/tempestrt/tempest/internal/admission"
	"github.com/tempestrt/tempest/internal/group"
	"github.com/tempestrt/tempest/internal/group/memgroup"
	"github.com/tempestrt/tempest/persistence"
	"github.com/tempestrt/tempest/supervisor"
)

// Node is one tempest-node process: an actor system running clones of the
// configured services, their persistence and (optionally) the HTTP gateway.
//
// Supervision tree (actor ids in brackets):
//
//	node                 [node]
//	├── gateway          [node/gateway]            HTTP front end (when an address is given)
//	└── services         [node/services]
//	    └── <service>    [node/services/cart]      service supervisor
//	        └── clone    [node/services/cart/1]    one clone of the service
//	            ├── scheduler  [.../1/scheduler]   owns the replica store, runs handlers EDF
//	            ├── member     [.../1/member]      group transport endpoint
//	            └── repair     [.../1/repair]      catch-up (anti-entropy) agent
//
// Every supervisor restarts failed children with capped, jittered
// exponential backoff within a restart budget and escalates beyond it.
type Node struct {
	cfg         Config
	log         *zap.Logger
	system      *actor.ActorSystem
	db          *persistence.DB
	transport   group.Transport
	ownNet      *memgroup.Network
	sup         *supervisor.Registry
	supStrategy *supervisor.Strategy
	services    map[string]*serviceRuntime
	order       []string // service names, sorted
	nodePID     *actor.PID
	gateway     *gatewayRuntime
	started     time.Time
	chaos       atomic.Bool
	stopped     atomic.Bool
	stopOnce    sync.Once
	rr          atomic.Uint64
	// timeouts counts calls answered 504 because no answer came in time;
	// lateAnswers those whose success came too late to be sent in time and
	// was answered 504 instead.
	timeouts, lateAnswers atomic.Uint64
	// writtenLate: admitted requests whose answer was handed to the write
	// after their deadline (Admit's done).
	writtenLate atomic.Uint64
	// adm is the front door (nil when Config.DisableAdmission); admMu
	// serialises it.
	adm         *admission.Limiter
	admMu       sync.Mutex
	sched       *schedLatency // the runtime's scheduling latency, for adm
	schedReadAt time.Time
	// schedP99 is the runtime's scheduling latency (p99, ns) over the last
	// admission interval: how congested the node is (see answerLead).
	schedP99 atomic.Int64
	// refusalTime: how long refusals at the front door took, from arrival
	// to the answer written (gateway) or returned (Node.Call).
	refusalTime latencyHist
	// anyRefusals are the refusals at admission of a request for no known
	// method (it is refused by the limiter like any other).
	anyRefusals *methodRefusals
	// snapPacer: the node's CPU budget for snapshot production, shared by
	// every scheduler (Config.SnapshotCPUShare).
	snapPacer *snapshotPacer
	// readyChanged is signalled (never blocking, capacity 1) whenever a
	// clone becomes ready or stops being ready.
	readyChanged chan struct{}
}

type serviceRuntime struct {
	svc     *Service
	methods map[string]MethodInfo
	// refusals are each method's refusals at admission, made once.
	refusals map[string]*methodRefusals
	clones   []*cloneRuntime
}

// Start validates cfg, opens the database and starts the actor tree. Each
// clone reloads its state from disk before it reports ready.
func Start(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	n := &Node{cfg: cfg, log: log, services: map[string]*serviceRuntime{}, started: time.Now(), readyChanged: make(chan struct{}, 1),
		anyRefusals: newMethodRefusals("request"),
		snapPacer:   newSnapshotPacer(cfg.SnapshotCPUShare, cfg.SnapshotBurst)}
	n.sup = supervisor.NewRegistry(256)
	n.supStrategy = supervisor.NewOneForOne(cfg.Supervision,
		supervisor.WithSink(supervisor.MultiSink(n.sup, supervisor.NewZapSink(log.Named("supervision")))))
	for _, s := range cfg.Services {
		methods, err := s.Methods()
		if err != nil {
			return nil, err
		}
		rt := &serviceRuntime{svc: s, methods: map[string]MethodInfo{}, refusals: map[string]*methodRefusals{}}
		for _, m := range methods {
			rt.methods[m.Name] = m
			rt.refusals[m.Name] = newMethodRefusals(s.Name() + "/" + m.Name)
		}
		for i := 1; i <= cfg.Clones; i++ {
			rt.clones = append(rt.clones, newCloneRuntime(n, rt, i))
		}
		n.services[s.Name()] = rt
		n.order = append(n.order, s.Name())
	}
	slices.Sort(n.order)
	if !cfg.DisableAdmission {
		adm, err := admission.New(cfg.Admission)
		if err != nil {
			return nil, err
		}
		n.adm = adm
		n.sched = newSchedLatency()
	}

	popts := cfg.Persistence
	popts.Dir = cfg.DataDir
	popts.Logger = log.Named("persistence")
	db, err := persistence.Open(popts)
	if err != nil {
		return nil, fmt.Errorf("actors: open data dir %s: %w", cfg.DataDir, err)
	}
	n.db = db
	n.transport = cfg.Transport
	if n.transport == nil {
		n.ownNet = memgroup.New(uint64(time.Now().UnixNano()))
		n.transport = n.ownNet
	}
	if cfg.HTTPAddr != "" {
		gw, err := newGatewayRuntime(n, cfg.HTTPAddr, cfg.Gateway)
		if err != nil {
			n.closeResources()
			return nil, err
		}
		n.gateway = gw
	}
	n.chaos.Store(cfg.Gateway.EnableChaos)
	n.system = actor.NewActorSystem(actor.WithLoggerFactory(supervisor.LoggerFactory(log.Named("protoactor"))),
		actor.WithDeadLetterThrottleInterval(max(cfg.DeadLetterThrottle, time.Millisecond)))
	for _, name := range n.order {
		for _, c := range n.services[name].clones {
			c.setPIDs(n.system)
		}
	}
	pid, err := n.system.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return &nodeActor{n: n} },
		actor.WithSupervisor(n.strategy()), actor.WithGuardian(n.strategy())), "node")
	if err != nil {
		n.closeResources()
		return nil, fmt.Errorf("actors: spawn node: %w", err)
	}
	n.nodePID = pid
	if err := n.waitReady(cfg.ReadyTimeout); err != nil {
		_ = n.Stop()
		return nil, err
	}
	log.Info("node started", zap.String("node", cfg.NodeID), zap.Strings("services", n.order), zap.Int("clones", cfg.Clones))
	return n, nil
}

// strategy is the supervision strategy every supervisor of the node uses.
// One instance serves them all: it keeps its restart bookkeeping per child,
// and Stop closes it to cancel restarts still waiting out their backoff.
func (n *Node) strategy() actor.SupervisorStrategy { return n.supStrategy }

// waitReady waits until every clone has loaded its state.
func (n *Node) waitReady(limit time.Duration) error {
	start := time.Now()
	timeout := time.NewTimer(limit)
	defer timeout.Stop()
	progress := time.NewTicker(5 * time.Second)
	defer progress.Stop()
	for {
		var missing []string
		total := 0
		for _, name := range n.order {
			for _, c := range n.services[name].clones {
				total++
				if !c.ready.Load() {
					missing = append(missing, c.id)
				}
			}
		}
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-n.readyChanged:
		case <-progress.C:
			// A large replica takes a while to load: say who is still at it.
			n.log.Info("loading clones", zap.Int("ready", total-len(missing)), zap.Int("clones", total),
				zap.Strings("loading", missing), zap.Duration("elapsed", time.Since(start)))
		case <-timeout.C:
			return fmt.Errorf("actors: clones %v not ready after %v", missing, limit)
		}
	}
}

// Stop stops every actor, waits for in-flight persistence, and closes the
// database and the transport it owns. Idempotent.
func (n *Node) Stop() error {
	var err error
	n.stopOnce.Do(func() {
		n.stopped.Store(true)
		n.supStrategy.Close()
		if n.nodePID != nil {
			if e := n.system.Root.PoisonFuture(n.nodePID).Wait(); e != nil {
				err = fmt.Errorf("actors: stop node actor: %w", e)
			}
		}
		// The actors are gone; their last op-log writes complete (and call
		// back) before the database closes.
		for _, name := range n.order {
			for _, c := range n.services[name].clones {
				if w := c.writer.Load(); w != nil {
					w.Wait()
				}
			}
		}
		err = errors.Join(err, n.closeResources())
		n.log.Info("node stopped", zap.String("node", n.cfg.NodeID))
	})
	return err
}

func (n *Node) closeResources() error {
	var errs []error
	if n.gateway != nil {
		errs = append(errs, n.gateway.shutdown())
	}
	if n.ownNet != nil {
		errs = append(errs, n.ownNet.Close())
	}
	if n.db != nil {
		errs = append(errs, n.db.Close())
	}
	if n.system != nil {
		n.system.Shutdown()
	}
	return errors.Join(errs...)
}

// EnableChaos turns the chaos API (Kill, and POST /v1/admin/kill) on or off.
func (n *Node) EnableChaos(on bool) { n.chaos.Store(on) }

// ChaosEnabled reports whether the chaos API is on.
func (n *Node) ChaosEnabled() bool { return n.chaos.Load() }

// Actors lists the actor paths Kill accepts: "node", "gateway",
// "services", "cart", "cart/1", "cart/1/scheduler", "cart/1/member",
// "cart/1/repair", ...
func (n *Node) Actors() []string {
	out := []string{"node"}
	if n.gateway != nil {
		out = append(out, "gateway")
	}
	out = append(out, "services")
	for _, name := range n.order {
		out = append(out, name)
		for _, c := range n.services[name].clones {
			out = append(out, c.id, c.id+"/scheduler", c.id+"/member", c.id+"/repair")
		}
	}
	return out
}

// Kill makes the named actor fail (panic in its Receive), as a crash would;
// its supervisor restarts it. path is one of Actors(). It works only while
// the chaos API is enabled.
func (n *Node) Kill(path string) error {
	if !n.chaos.Load() {
		return ErrChaosDisabled
	}
	if n.stopped.Load() {
		return ErrNodeStopped
	}
	if !slices.Contains(n.Actors(), path) {
		return fmt.Errorf("actor %q: %w", path, ErrUnknownActor)
	}
	id := "node/services/" + path
	switch path {
	case "node":
		id = "node"
	case "gateway", "services":
		id = "node/" + path
	}
	pid := n.system.NewLocalPID(id)
	n.system.Root.Send(pid, &crash{reason: "killed by chaos API: " + path})
	n.log.Warn("chaos: killing actor", zap.String("actor", path))
	return nil
}

// Services lists the node's services and their methods.
func (n *Node) Services() map[string][]MethodInfo {
	out := map[string][]MethodInfo{}
	for name, rt := range n.services {
		for _, m := range rt.methods {
			out[name] = append(out[name], m)
		}
		slices.SortFunc(out[name], func(a, b MethodInfo) int { return strings.Compare(a.Name, b.Name) })
	}
	return out
}

// budget is the time a call of m may take: timeout if given (> 0), else
// the method's default deadline, else the node's; at most MaxDeadline.
func (n *Node) budget(m MethodInfo, timeout time.Duration) time.Duration {
	if timeout <= 0 {
		timeout = m.Deadline
	}
	if timeout <= 0 {
		timeout = n.cfg.DefaultDeadline
	}
	return min(timeout, n.cfg.MaxDeadline)
}

// unmeetable is the refusal of a request whose deadline is closer than
// the scheduler's safety margin (no clone could answer by it), or nil.
func (n *Node) unmeetable(deadline time.Time, what string) error {
	if left, ok := n.meetable(deadline); !ok {
		return fmt.Errorf("%s: %v left of its budget: %w", what, left, ErrDeadlineUnmeet)
	}
	return nil
}

// meetable reports whether deadline is at least the scheduler's safety
// margin away, and how far it is.
func (n *Node) meetable(deadline time.Time) (left time.Duration, ok bool) {
	left = time.Until(deadline)
	return left, left >= n.cfg.Scheduler.Margin
}

// Call runs method of service with a JSON body and returns the JSON answer.
// timeout is the client's deadline budget (0 = the method's or node's
// default). Every error is an *Error, which carries an HTTP status and code
// and unwraps to the package's sentinels (errors.Is works).
//
// A clone that refuses the request at admission (its backlog would not let
// the request finish in time, or its queue is full) or stops before running
// it never ran it; the next clone is asked, for updates too, while the budget
// allows.
//
// Queries are hedged: a clone that admits a request says when it expects to
// answer (now + the work queued ahead + the method's estimate). If no answer
// has come when the clone is late by its own expected wait (at least the
// scheduler's Margin; the wait includes the request's own run, so a more
// urgent request that arrives later and runs first does not trigger a hedge
// by itself), a second clone is asked too and the first answer wins; if that
// moment falls within Margin of the deadline, no hedge is sent (it could not
// help). Until a clone acknowledges (its mailbox is backed up, it is busy in
// a long handler, or it died), the hedge is due after Config.HedgeWithoutAck
// or a third of the budget, whichever is first. Hedging on the clone's own
// promise rather than a fixed fraction of the budget keeps an overloaded
// service from doubling its work: a deep queue promises late, so its
// requests are not hedged merely for waiting their turn. A copy that loses
// the race is dropped unrun if still queued. Updates are never sent twice.
func (n *Node) Call(ctx context.Context, service, method string, body []byte, timeout time.Duration) ([]byte, error) {
	out, err := n.call(ctx, service, method, body, timeout)
	if err != nil {
		return nil, AsError(err)
	}
	return out, nil
}

func (n *Node) call(ctx context.Context, service, method string, body []byte, timeout time.Duration) ([]byte, error) {
	if n.stopped.Load() {
		return nil, ErrNodeStopped
	}
	rt := n.services[service]
	if rt == nil {
		return nil, fmt.Errorf("service %q: %w", service, ErrUnknownService)
	}
	m, ok := rt.methods[method]
	if !ok {
		return nil, fmt.Errorf("service %q has no method %q: %w", service, method, ErrUnknownMethod)
	}
	timeout = n.budget(m, timeout)
	called := time.Now()
	now := called
	if t, ok := gateway.Arrival(ctx); ok && t.Before(now) {
		now = t // the budget runs from the request's arrival
	}
	// The queueing delay the front door learns from runs from the headers
	// read: the arrival is the kernel's, good to a few milliseconds (its
	// ticks), which is noise against queueing targets of a few
	// milliseconds, and that wait is the CPU's, which the scheduling
	// latency reports.
	queued := now
	if t, ok := gateway.HeadersRead(ctx); ok && t.After(queued) && !t.After(called) {
		queued = t
	}
	deadline := now.Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	// A budget smaller than the scheduler's safety margin cannot be met by
	// any clone: say so now rather than after a trip through a queue.
	if err := n.unmeetable(deadline, method); err != nil {
		return nil, err
	}
	if n.adm != nil && !admitted(ctx) {
		if err := n.acquire(m.Priority, timeout, service, method); err != nil {
			n.refusalTime.observe(time.Since(now))
			return nil, err
		}
		defer n.release()
	}
	clones := n.readyClones(rt)
	if len(clones) == 0 {
		return nil, fmt.Errorf("service %q: %w", service, ErrNoClone)
	}
	// Each ask yields at most an admission ack and an answer.
	results := make(chan callResult, 2*len(clones))
	settled := new(atomic.Bool)
	defer settled.Store(true)
	win := newAnswerWindow(deadline, answerLead(n.cfg.AnswerLead, time.Duration(n.schedP99.Load()), timeout))
	cutoff := win.cutoff
	ask := func(c *cloneRuntime) {
		c.outstanding.Add(1)
		n.system.Root.Send(c.schedulerPID, &callRequest{method: method, body: body, deadline: cutoff, arrived: now, reply: results, settled: settled})
	}
	expired := time.NewTimer(time.Until(cutoff))
	defer expired.Stop()
	ask(clones[0])
	next := 1
	var hedge <-chan time.Time
	var hedgeTimer *time.Timer
	if !m.Update && len(clones) > 1 {
		hedgeTimer = time.NewTimer(min(timeout/3, n.cfg.HedgeWithoutAck))
		defer hedgeTimer.Stop()
		hedge = hedgeTimer.C
	}
	margin := n.cfg.Scheduler.Margin
	pending := 1
	observed := false // the queueing delay of the first copy that ran
	for {
		select {
		case r := <-results:
			if r.ack {
				// Until the hedge is sent, one copy is live (a retry
				// follows a refusal): its clone's promise sets the hedge.
				if hedge != nil {
					wait := max(r.expect.Sub(now), 0)
					at := r.expect.Add(max(margin, wait))
					if at.After(deadline.Add(-margin)) {
						hedgeTimer.Stop()
						hedge = nil
					} else {
						hedgeTimer.Reset(time.Until(at))
					}
				}
				continue
			}
			pending--
			if !r.started.IsZero() && !observed {
				observed = true
				n.observeDelay(r.started.Sub(queued), deadline.Sub(now))
			}
			// A clone that stopped before running the request, or refused it
			// at admission, never ran it: ask the next one, even for an
			// update, while the budget allows.
			if (errors.Is(r.err, errCloneStopping) || errors.Is(r.err, errNotAdmitted)) && next < len(clones) && time.Until(deadline) >= margin {
				ask(clones[next])
				next++
				pending++
				continue
			}
			if r.err == nil && !win.deliverable(time.Now()) {
				return nil, n.lateAnswer(method, service, m.Update)
			}
			// With a hedge still out, a failure waits for the other answer.
			if r.err == nil || pending == 0 {
				return r.body, r.err
			}
		case <-hedge:
			hedge = nil
			if next < len(clones) {
				ask(clones[next])
				next++
				pending++
			}
		case <-expired.C:
			// select picks at random among ready cases: an answer that
			// arrived in time must win over the timer. Only this goroutine
			// receives, so len is exact.
			for len(results) > 0 {
				if r := <-results; !r.ack && r.err == nil {
					if !win.deliverable(r.at) {
						return nil, n.lateAnswer(method, service, m.Update)
					}
					return r.body, nil
				}
			}
			n.timeouts.Add(1)
			if !observed {
				n.observeDelay(time.Since(queued), deadline.Sub(now)) // waited its whole budget
			}
			return nil, fmt.Errorf("%s on %s: no answer %v before the deadline%s: %w", method, service, n.cfg.AnswerLead, mayHaveApplied(m.Update), ErrDeadlineExceeded)
		case <-ctx.Done():
			n.timeouts.Add(1)
			return nil, fmt.Errorf("%s%s: %w", method, mayHaveApplied(m.Update), errors.Join(ErrDeadlineExceeded, ctx.Err()))
		}
	}
}

// answerWindow is Node.Call's deadline rule, kept pure so that it can be
// tested without a clock. Every answer must leave the node by the request's
// deadline, so Node.Call gives up AnswerLead before it, at the cutoff: the
// time its caller (the gateway) needs to write the answer. The clones
// schedule against the cutoff, not the deadline. A success is sent only if
// it was ready by the cutoff (deliverable); one ready later would leave
// late, so it becomes a 504 instead (lateAnswer), and at the cutoff itself
// Node.Call answers 504 without waiting for anything more.
type answerWindow struct{ cutoff time.Time }

func newAnswerWindow(deadline time.Time, lead time.Duration) answerWindow {
	return answerWindow{cutoff: deadline.Add(-lead)}
}

// answerLead is how long before the deadline Node.Call gives up: the
// configured AnswerLead (the time to write an answer), raised to the
// runtime's recent scheduling latency (p99 of how long runnable goroutines
// waited) when that is longer, but to at most a tenth of the budget. On a
// congested node every step of a request waits about that long to run:
// its headers waited in the kernel and the netpoller before the gateway
// saw them (its budget, counted from then, already started late for its
// client), and its answer waits again before it is written. Leaving that
// much earlier keeps answers on time for the client, not only for the
// gateway's clock; on an idle node the lead is AnswerLead.
func answerLead(base, schedP99, budget time.Duration) time.Duration {
	if schedP99 <= base {
		return base
	}
	return max(base, min(schedP99, budget/10))
}

// deliverable reports whether a success ready at t may still be sent.
func (w answerWindow) deliverable(t time.Time) bool { return !t.After(w.cutoff) }

// lateAnswer is the error for a success that came too late to be sent
// before the deadline: a 504, never a late 200.
func (n *Node) lateAnswer(method, service string, update bool) error {
	n.lateAnswers.Add(1)
	return fmt.Errorf("%s on %s: the answer was ready too late to be sent before the deadline%s: %w", method, service, mayHaveApplied(update), ErrDeadlineExceeded)
}

// mayHaveApplied is what a 504 says of an update: it may have run.
func mayHaveApplied(update bool) string {
	if update {
		return " (the update may have been applied: read it back to know)"
	}
	return ""
}

// readyClones returns the ready clones of rt, fewest outstanding requests
// first, ties in round-robin order.
func (n *Node) readyClones(rt *serviceRuntime) []*cloneRuntime {
	type cand struct {
		c    *cloneRuntime
		load int64
	}
	var cs []cand
	start := int(n.rr.Add(1))
	for i := range rt.clones {
		c := rt.clones[(start+i)%len(rt.clones)]
		if c.ready.Load() {
			cs = append(cs, cand{c, max(c.outstanding.Load(), 0)})
		}
	}
	slices.SortStableFunc(cs, func(a, b cand) int { return cmp.Compare(a.load, b.load) })
	out := make([]*cloneRuntime, len(cs))
	for i, c := range cs {
		out[i] = c.c
	}
	return out
}

// HTTPAddr is the gateway's listening address, or "" without a gateway.
func (n *Node) HTTPAddr() string {
	if n.gateway == nil {
		return ""
	}
	return n.gateway.addr
}
