// Package memgroup is the in-process group transport: the clones of a service
// that live in one process exchange messages through it. It is what
// `tempest-node dev` uses, and, with its fault hooks (loss, delay, jitter
// that reorders, duplication, partitions), what deterministic tests use to
// exercise the layers above. It is not a network: everything stays in memory.
package memgroup

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/tempestrt/tempest/internal/group"
)

// Faults are the faults the network injects. The zero value injects none.
type Faults struct {
	Loss      float64       // probability in [0,1] that a payload to one member is dropped
	Duplicate float64       // probability in [0,1] that a delivered payload is delivered twice
	Delay     time.Duration // fixed delay added to every delivery
	Jitter    time.Duration // extra uniform random delay in [0, Jitter); reorders payloads
}

// Validate reports whether the faults make sense.
func (f Faults) Validate() error {
	if f.Loss < 0 || f.Loss > 1 || f.Duplicate < 0 || f.Duplicate > 1 {
		return fmt.Errorf("memgroup: loss %v and duplicate %v must be in [0,1]", f.Loss, f.Duplicate)
	}
	if f.Delay < 0 || f.Jitter < 0 {
		return fmt.Errorf("memgroup: delay %v and jitter %v must not be negative", f.Delay, f.Jitter)
	}
	return nil
}

// MaxPayload is the largest payload the network carries (bytes).
const MaxPayload = 16 << 20

// Stats counts what the network did.
type Stats struct {
	Sent, Delivered, Lost, Duplicated, Partitioned uint64
}

// Network is an in-process group transport. Deliveries happen on one
// dispatcher goroutine in order of due time, so receivers are never called
// concurrently with each other.
type Network struct {
	mu        sync.Mutex
	groups    map[string]map[string]*endpoint
	faults    Faults
	cut       map[[2]string]bool // member pairs that cannot talk (both directions stored)
	rng       *rand.Rand
	queue     deliveryHeap
	seq       uint64
	stats     Stats
	wake      chan struct{}
	done      chan struct{}
	finished  chan struct{}
	closed    bool
	closeOnce sync.Once
}

// New starts a network whose random faults are drawn from seed.
func New(seed uint64) *Network {
	n := &Network{
		groups:   map[string]map[string]*endpoint{},
		cut:      map[[2]string]bool{},
		rng:      rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		finished: make(chan struct{}),
	}
	go n.dispatch()
	return n
}

// SetFaults replaces the injected faults; it applies to payloads sent afterwards.
func (n *Network) SetFaults(f Faults) error {
	if err := f.Validate(); err != nil {
		return err
	}
	n.mu.Lock()
	n.faults = f
	n.mu.Unlock()
	return nil
}

// Partition cuts every member in a off from every member in b (both ways).
func (n *Network) Partition(a, b []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, x := range a {
		for _, y := range b {
			n.cut[[2]string{x, y}] = true
			n.cut[[2]string{y, x}] = true
		}
	}
}

// Heal removes every partition.
func (n *Network) Heal() {
	n.mu.Lock()
	n.cut = map[[2]string]bool{}
	n.mu.Unlock()
}

// Stats returns what the network has done so far.
func (n *Network) Stats() Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stats
}

// Close stops the dispatcher; payloads still in flight are dropped.
func (n *Network) Close() error {
	n.closeOnce.Do(func() {
		n.mu.Lock()
		n.closed = true
		n.mu.Unlock()
		close(n.done)
		<-n.finished
	})
	return nil
}

// Join implements group.Transport.
func (n *Network) Join(groupName, member string, recv group.Receiver) (group.Endpoint, error) {
	if recv == nil {
		return nil, fmt.Errorf("memgroup: join %s/%s: nil receiver", groupName, member)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, group.ErrClosed
	}
	g := n.groups[groupName]
	if g == nil {
		g = map[string]*endpoint{}
		n.groups[groupName] = g
	}
	if _, ok := g[member]; ok {
		return nil, fmt.Errorf("memgroup: join %s/%s: %w", groupName, member, group.ErrAlreadyJoined)
	}
	ep := &endpoint{net: n, group: groupName, member: member, recv: recv}
	g[member] = ep
	return ep, nil
}

type endpoint struct {
	net           *Network
	group, member string
	recv          group.Receiver
	left          bool // guarded by net.mu
}

func (e *endpoint) Broadcast(payload []byte) error {
	return e.net.send(e, "", payload)
}

func (e *endpoint) Send(to string, payload []byte) error {
	if to == "" {
		return fmt.Errorf("memgroup: send to empty member: %w", group.ErrUnknownMember)
	}
	return e.net.send(e, to, payload)
}

func (e *endpoint) Members() []string {
	e.net.mu.Lock()
	defer e.net.mu.Unlock()
	var out []string
	for m := range e.net.groups[e.group] {
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}

func (e *endpoint) Leave() error {
	n := e.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if e.left {
		return nil
	}
	e.left = true
	if g := n.groups[e.group]; g != nil && g[e.member] == e {
		delete(g, e.member)
	}
	return nil
}

// send queues payload for to (or every other member when to is empty).
func (n *Network) send(from *endpoint, to string, payload []byte) error {
	if len(payload) > MaxPayload {
		return fmt.Errorf("memgroup: %d bytes: %w", len(payload), group.ErrTooLarge)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed || from.left {
		return group.ErrClosed
	}
	g := n.groups[from.group]
	var targets []*endpoint
	if to != "" {
		ep, ok := g[to]
		if !ok {
			return fmt.Errorf("memgroup: send %s -> %s in %s: %w", from.member, to, from.group, group.ErrUnknownMember)
		}
		targets = append(targets, ep)
	} else {
		for m, ep := range g {
			if m != from.member {
				targets = append(targets, ep)
			}
		}
		// Map order is random; sort so a seed reproduces the same faults.
		slices.SortFunc(targets, func(a, b *endpoint) int { return compareStrings(a.member, b.member) })
	}
	body := slices.Clone(payload)
	now := time.Now()
	for _, ep := range targets {
		n.stats.Sent++
		if n.cut[[2]string{from.member, ep.member}] {
			n.stats.Partitioned++
			continue
		}
		if n.faults.Loss > 0 && n.rng.Float64() < n.faults.Loss {
			n.stats.Lost++
			continue
		}
		copies := 1
		if n.faults.Duplicate > 0 && n.rng.Float64() < n.faults.Duplicate {
			copies = 2
			n.stats.Duplicated++
		}
		for range copies {
			at := now.Add(n.faults.Delay)
			if n.faults.Jitter > 0 {
				at = at.Add(time.Duration(n.rng.Int64N(int64(n.faults.Jitter))))
			}
			n.seq++
			heap.Push(&n.queue, delivery{at: at, seq: n.seq, to: ep, from: from.member, payload: body})
		}
	}
	select {
	case n.wake <- struct{}{}:
	default:
	}
	return nil
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (n *Network) dispatch() {
	defer close(n.finished)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		n.mu.Lock()
		var due []delivery
		now := time.Now()
		for n.queue.Len() > 0 && !n.queue[0].at.After(now) {
			d := heap.Pop(&n.queue).(delivery)
			if !d.to.left {
				due = append(due, d)
				n.stats.Delivered++
			}
		}
		var next time.Duration = time.Hour
		if n.queue.Len() > 0 {
			next = n.queue[0].at.Sub(now)
		}
		n.mu.Unlock()
		for _, d := range due {
			d.to.recv(d.from, d.payload)
		}
		if len(due) > 0 {
			continue
		}
		timer.Reset(next)
		select {
		case <-n.done:
			return
		case <-n.wake:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

type delivery struct {
	at      time.Time
	seq     uint64
	to      *endpoint
	from    string
	payload []byte
}

type deliveryHeap []delivery

func (h deliveryHeap) Len() int { return len(h) }
func (h deliveryHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].seq < h[j].seq
}
func (h deliveryHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *deliveryHeap) Push(x any)   { *h = append(*h, x.(delivery)) }
func (h *deliveryHeap) Pop() any {
	old := *h
	d := old[len(old)-1]
	*h = old[:len(old)-1]
	return d
}
