package ricochet

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// NodeOptions are the optional parts of a Node.
type NodeOptions struct {
	// Logger receives transport errors (debug) and lifecycle events.
	// Default zap.NewNop().
	Logger *zap.Logger
	// Seed seeds the engine's *rand.Rand; 0 picks one from the clock.
	Seed uint64
	// OnDeliver is called for every delivered message, on the Node's
	// goroutine, one at a time. It must not block for long (the node
	// processes no packets meanwhile); it may call the Node's methods.
	OnDeliver func(Delivery)
	// OnUnrecoverable is called (like OnDeliver) for every range of
	// packets this node will never deliver.
	OnUnrecoverable func(PacketRange)
	// Clock returns the current time. Default time.Now.
	Clock func() time.Time
}

// Node runs an Engine over a Transport: a goroutine feeds the engine the
// transport's inbound packets and a ticker (every Config.TickInterval),
// performs its output on the transport, and hands deliveries to
// OnDeliver. The engine is guarded by a mutex so Send, SetGroup and Stats
// may be called from any goroutine. The Node owns the transport: Close
// closes it.
type Node struct {
	self  NodeID
	tr    Transport
	opts  NodeOptions
	log   *zap.Logger
	clock func() time.Time

	mu  sync.Mutex
	eng *Engine

	txErrors  atomic.Uint64
	done      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// NewNode starts a node with identity self on tr. Errors: ErrInvalidConfig.
func NewNode(cfg Config, self NodeID, tr Transport, opts NodeOptions) (*Node, error) {
	if tr == nil {
		return nil, fmt.Errorf("%w: nil transport", ErrInvalidConfig)
	}
	seed := opts.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	eng, err := NewEngine(cfg, self, rand.New(rand.NewPCG(seed, uint64(self))))
	if err != nil {
		return nil, err
	}
	n := &Node{self: self, tr: tr, opts: opts, log: opts.Logger, clock: opts.Clock, eng: eng, done: make(chan struct{})}
	if n.log == nil {
		n.log = zap.NewNop()
	}
	if n.clock == nil {
		n.clock = time.Now
	}
	n.wg.Add(1)
	go n.run(cfg.TickInterval)
	return n, nil
}

// ID returns the node's identity.
func (n *Node) ID() NodeID { return n.self }

// Send multicasts payload to group g. A nil error means the message was
// accepted: numbered, buffered for retransmission and handed to the
// transport; a transport failure is counted (TransportErrors) and left to
// the protocol's recovery. Errors: ErrClosed, ErrNotMember,
// ErrMessageTooLarge.
func (n *Node) Send(g GroupID, payload []byte) error {
	if n.isClosed() {
		return ErrClosed
	}
	n.mu.Lock()
	out, err := n.eng.Send(n.clock(), g, payload)
	n.mu.Unlock()
	if err != nil {
		return err
	}
	n.perform(out)
	return nil
}

// SetGroup sets group g's members (see Engine.SetGroup).
func (n *Node) SetGroup(g GroupID, members []NodeID) {
	n.mu.Lock()
	n.eng.SetGroup(g, members)
	n.mu.Unlock()
}

// RemoveGroup makes the node leave group g (see Engine.RemoveGroup).
func (n *Node) RemoveGroup(g GroupID) {
	n.mu.Lock()
	n.eng.RemoveGroup(g)
	n.mu.Unlock()
}

// Stats returns the engine's counters.
func (n *Node) Stats() Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.eng.Stats()
}

// TransportErrors is the number of sends the transport refused.
func (n *Node) TransportErrors() uint64 { return n.txErrors.Load() }

// Close stops the node's goroutine and closes the transport. Safe to call
// more than once.
func (n *Node) Close() error {
	var err error
	n.closeOnce.Do(func() {
		close(n.done)
		n.wg.Wait()
		err = n.tr.Close()
		n.log.Debug("ricochet node closed", zap.Uint32("node", uint32(n.self)))
	})
	return err
}

func (n *Node) isClosed() bool {
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

func (n *Node) run(tick time.Duration) {
	defer n.wg.Done()
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	in := n.tr.Inbound()
	for {
		var out Output
		select {
		case <-n.done:
			return
		case m, ok := <-in:
			if !ok {
				n.log.Debug("ricochet transport closed", zap.Uint32("node", uint32(n.self)))
				in = nil // keep ticking until Close; nothing more arrives
				continue
			}
			at := m.At
			if at.IsZero() {
				at = n.clock()
			}
			n.mu.Lock()
			out = n.eng.Step(at, m.Packet)
			n.mu.Unlock()
		case <-ticker.C:
			n.mu.Lock()
			out = n.eng.Tick(n.clock())
			n.mu.Unlock()
		}
		n.perform(out)
	}
}

// perform carries out an engine output outside the engine lock.
func (n *Node) perform(out Output) {
	for _, m := range out.Multicasts {
		if err := n.tr.Multicast(m.Group, m.Members, m.Packet); err != nil {
			n.txError(err, m.Packet)
		}
	}
	for _, u := range out.Unicasts {
		if err := n.tr.Unicast(u.To, u.Packet); err != nil {
			n.txError(err, u.Packet)
		}
	}
	if n.opts.OnDeliver != nil {
		for _, d := range out.Deliveries {
			n.opts.OnDeliver(d)
		}
	}
	if n.opts.OnUnrecoverable != nil {
		for _, r := range out.Unrecoverable {
			n.opts.OnUnrecoverable(r)
		}
	}
}

func (n *Node) txError(err error, p *Packet) {
	n.txErrors.Add(1)
	n.log.Debug("ricochet send failed", zap.Uint32("node", uint32(n.self)), zap.Stringer("kind", p.Kind), zap.Error(err))
}
