// Package check holds verifiers for replicated collections, shipped with
// the code so that unit, property and chaos tests share them:
//
//   - OrderChecker: the per-item order checker. Every replica records each
//     op it applies to an item, in order (wire it to
//     collections.Config.OnStable with Hook); any two ops that two
//     replicas applied in opposite orders is a Violation naming the item,
//     both ops and both replicas.
//   - Converged / Diff: the convergence check. Replicas that have
//     delivered the same ops must hold equal values; Converged compares
//     digests and, when they differ, says which replica, collection and
//     item differ and how.
//   - PendingOrder: the order check applied to the tentative histories of
//     live stores.
package check

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/tempestrt/tempest/collections"
)

// Violation is a breach of per-item sequential consistency: on item
// (Collection, Item), replica ReplicaA applied op First before op Second
// while ReplicaB applied Second before First. When ReplicaA == ReplicaB
// the replica applied First twice (Second == First).
type Violation struct {
	Collection string
	Item       []byte
	First      collections.OpID
	Second     collections.OpID
	ReplicaA   string
	ReplicaB   string
}

func (v Violation) String() string {
	if v.ReplicaA == v.ReplicaB {
		return fmt.Sprintf("%s[%q]: replica %s applied %s twice", v.Collection, v.Item, v.ReplicaA, v.First)
	}
	return fmt.Sprintf("%s[%q]: replica %s applied %s before %s, replica %s applied them in the opposite order",
		v.Collection, v.Item, v.ReplicaA, v.First, v.Second, v.ReplicaB)
}

// OrderChecker records, per item and per replica, the sequence of ops the
// replica applied, and finds pairs of ops two replicas applied in
// opposite orders. Replicas may record different subsets (a replica that
// folded less, or a restarted replica recorded under a new label that
// starts mid-stream): only ops both recorded are compared. It is safe for
// concurrent use.
type OrderChecker struct {
	mu      sync.Mutex
	items   map[itemKey]*itemRecord
	records int
}

type itemKey struct{ coll, item string }

type itemRecord struct {
	replicas map[string][]collections.OpID
}

// NewOrderChecker returns an empty checker.
func NewOrderChecker() *OrderChecker {
	return &OrderChecker{items: map[itemKey]*itemRecord{}}
}

// Record notes that replica applied op to item of collection, after every
// op it recorded before for that item.
func (c *OrderChecker) Record(replica, collection string, item []byte, op collections.OpID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := itemKey{collection, string(item)}
	r := c.items[k]
	if r == nil {
		r = &itemRecord{replicas: map[string][]collections.OpID{}}
		c.items[k] = r
	}
	r.replicas[replica] = append(r.replicas[replica], op)
	c.records++
}

// Hook returns a function recording for replica, shaped for
// collections.Config.OnStable.
func (c *OrderChecker) Hook(replica string) func(collection string, item []byte, op collections.OpID) {
	return func(collection string, item []byte, op collections.OpID) {
		c.Record(replica, collection, item, op)
	}
}

// Records returns the number of Record calls.
func (c *OrderChecker) Records() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.records
}

// Items returns the recorded items, sorted.
func (c *OrderChecker) Items() []collections.ItemRef {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]collections.ItemRef, 0, len(c.items))
	for k := range c.items {
		out = append(out, collections.ItemRef{Collection: k.coll, Item: []byte(k.item)})
	}
	slices.SortFunc(out, func(a, b collections.ItemRef) int {
		return cmp.Or(cmp.Compare(a.Collection, b.Collection), strings.Compare(string(a.Item), string(b.Item)))
	})
	return out
}

// Orders returns a copy of what each replica recorded for an item.
func (c *OrderChecker) Orders(collection string, item []byte) map[string][]collections.OpID {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string][]collections.OpID{}
	if r := c.items[itemKey{collection, string(item)}]; r != nil {
		for rep, ops := range r.replicas {
			out[rep] = slices.Clone(ops)
		}
	}
	return out
}

// Violations returns every item's violations: each op a replica recorded
// twice, and for each pair of replicas the first pair of their common ops
// that they applied in opposite orders (one per item and replica pair, to
// keep reports short). Sorted by item, then replicas.
func (c *OrderChecker) Violations() []Violation {
	c.mu.Lock()
	defer c.mu.Unlock()
	keys := make([]itemKey, 0, len(c.items))
	for k := range c.items {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b itemKey) int { return cmp.Or(cmp.Compare(a.coll, b.coll), cmp.Compare(a.item, b.item)) })
	var out []Violation
	for _, k := range keys {
		out = append(out, itemViolations(k.coll, []byte(k.item), c.items[k].replicas)...)
	}
	return out
}

// itemViolations compares the sequences of one item.
func itemViolations(coll string, item []byte, seqs map[string][]collections.OpID) []Violation {
	reps := make([]string, 0, len(seqs))
	for r := range seqs {
		reps = append(reps, r)
	}
	slices.Sort(reps)
	var out []Violation
	pos := make(map[string]map[collections.OpID]int, len(reps))
	for _, r := range reps {
		p := make(map[collections.OpID]int, len(seqs[r]))
		for i, op := range seqs[r] {
			if _, dup := p[op]; dup {
				out = append(out, Violation{Collection: coll, Item: item, First: op, Second: op, ReplicaA: r, ReplicaB: r})
				continue
			}
			p[op] = i
		}
		pos[r] = p
	}
	for i, a := range reps {
		for _, b := range reps[i+1:] {
			if v, ok := firstInversion(seqs[a], pos[a], pos[b]); ok {
				v.Collection, v.Item, v.ReplicaA, v.ReplicaB = coll, item, a, b
				out = append(out, v)
			}
		}
	}
	return out
}

// firstInversion walks a's sequence (first occurrences only), keeping the
// ops b also applied; b's positions must increase along it. The first
// descent is a pair applied in opposite orders.
func firstInversion(seqA []collections.OpID, posA, posB map[collections.OpID]int) (Violation, bool) {
	var prev collections.OpID
	prevPos, have := -1, false
	for i, op := range seqA {
		if posA[op] != i { // a duplicate, reported already
			continue
		}
		pb, ok := posB[op]
		if !ok {
			continue
		}
		if have && pb < prevPos {
			return Violation{First: prev, Second: op}, true
		}
		prev, prevPos, have = op, pb, true
	}
	return Violation{}, false
}

// Err returns nil, or an error listing (up to 10 of) the violations.
func (c *OrderChecker) Err() error {
	return violationsErr(c.Violations())
}

func violationsErr(vs []Violation) error {
	if len(vs) == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d per-item order violation(s):", len(vs))
	for i, v := range vs {
		if i == 10 {
			fmt.Fprintf(&b, "\n  ... and %d more", len(vs)-10)
			break
		}
		b.WriteString("\n  ")
		b.WriteString(v.String())
	}
	return errors.New(b.String())
}

// PendingOrder checks the tentative histories of live stores: for every
// item tentative on some store, any two ops that two stores hold in
// opposite orders is a violation (replicas are named by
// Store.Replica). Stores that folded different amounts are fine: only ops
// both hold are compared.
func PendingOrder(stores ...*collections.Store) error {
	oc := NewOrderChecker()
	for _, s := range stores {
		for _, ref := range s.Tentative() {
			for _, id := range s.ItemOrder(ref.Collection, ref.Item) {
				oc.Record(s.Replica(), ref.Collection, ref.Item, id)
			}
		}
	}
	return oc.Err()
}
