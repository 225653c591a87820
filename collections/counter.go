package collections

import "github.com/tempestrt/tempest/proto/tempestpb"

// Counter is a replicated int64 counter: one item whose ops add deltas.
// Additions commute, so the value does not depend on the order; the order
// is still total and checked like any item's. Overflow wraps.
type Counter struct {
	s *Store
	c *collection
}

// NewCounter declares a counter collection (see NewMap for the rules).
func NewCounter(s *Store, name string) *Counter {
	return &Counter{s: s, c: s.declare(name, kindCounter)}
}

// Name returns the collection's name.
func (c *Counter) Name() string { return c.c.name }

// Incr adds delta (may be negative). Only inside Store.Update. It fails
// only if a mutation of the same update failed before (see Store.Update).
func (c *Counter) Incr(delta int64) error {
	if err := c.s.writable(c.c); err != nil {
		return err
	}
	return c.s.mutate(c.c, nil, &tempestpb.Op{Kind: tempestpb.OpKind_OP_COUNTER_ADD, Delta: delta})
}

// Value returns the counter's value (tentative ops included).
func (c *Counter) Value() int64 {
	if it := c.c.lookup(nil); it != nil {
		return it.cur.count
	}
	return 0
}

// Stable reports whether the counter has no tentative ops.
func (c *Counter) Stable() bool { return c.s.itemStable(c.c, nil) }
