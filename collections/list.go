package collections

import (
	"fmt"
	"iter"
	"slices"

	"github.com/tempestrt/tempest/proto/tempestpb"
)

// List is a replicated list. The whole list is one item, so all its ops
// are totally ordered on every replica. Indices in ops are interpreted
// when the op is applied, against the list as it is at that point of the
// order: Insert clamps its index into [0, Len], RemoveAt and Set do
// nothing when the index is out of range. Because an op may be replayed
// after ops ordered before it arrive, an index names a position, not an
// element: prefer Append, or user-level ids, where that matters.
//
// Elements are encoded with the value codec (JSONCodec unless
// WithValueCodec). Rolling back a list op reverts the edit (an undo
// log), so replay never copies the list.
type List[T any] struct {
	s  *Store
	c  *collection
	vc Codec[T]
}

// NewList declares a list collection (see NewMap for the rules).
func NewList[T any](s *Store, name string, opts ...Option) *List[T] {
	o := buildOptions(opts)
	l := &List[T]{s: s, vc: codecFrom(o.valueCodec, JSONCodec[T](), "element", name)}
	l.c = s.declare(name, kindList)
	l.c.validValue = valueValidator(l.vc)
	return l
}

// Name returns the collection's name.
func (l *List[T]) Name() string { return l.c.name }

func (l *List[T]) elems() [][]byte {
	if it := l.c.lookup(nil); it != nil {
		return it.cur.elems
	}
	return nil
}

// mutate makes a list op; v, if not nil, is the element to encode into it.
func (l *List[T]) mutate(op *tempestpb.Op, v *T) error {
	if err := l.s.writable(l.c); err != nil {
		return err
	}
	if v != nil {
		b, err := l.vc.Encode(*v)
		if err != nil {
			return l.s.fail(fmt.Errorf("%w: list %q element: %v", ErrCodec, l.c.name, err))
		}
		op.Value = b
	}
	return l.s.mutate(l.c, nil, op)
}

// Get returns element i and whether i is in range.
func (l *List[T]) Get(i int) (T, bool) {
	var zero T
	e := l.elems()
	if i < 0 || i >= len(e) {
		return zero, false
	}
	v, err := l.vc.Decode(e[i])
	if err != nil {
		return zero, false
	}
	return v, true
}

// Len returns the number of elements.
func (l *List[T]) Len() int { return len(l.elems()) }

// Stable reports whether the list has no tentative ops.
func (l *List[T]) Stable() bool { return l.s.itemStable(l.c, nil) }

// Append adds v at the end. Only inside Store.Update. It returns an
// error wrapping ErrCodec if v cannot be encoded (see Store.Update).
func (l *List[T]) Append(v T) error {
	return l.mutate(&tempestpb.Op{Kind: tempestpb.OpKind_OP_LIST_APPEND}, &v)
}

// Insert puts v at index i (clamped into [0, Len] when applied). Only
// inside Store.Update. It returns an error wrapping ErrCodec if v cannot
// be encoded.
func (l *List[T]) Insert(i int, v T) error {
	return l.mutate(&tempestpb.Op{Kind: tempestpb.OpKind_OP_LIST_INSERT, Index: int64(i)}, &v)
}

// RemoveAt removes element i (nothing if out of range when applied). Only
// inside Store.Update. It fails only if a mutation of the same update
// failed before (see Store.Update).
func (l *List[T]) RemoveAt(i int) error {
	return l.mutate(&tempestpb.Op{Kind: tempestpb.OpKind_OP_LIST_REMOVE_AT, Index: int64(i)}, nil)
}

// Set replaces element i (nothing if out of range when applied). Only
// inside Store.Update. It returns an error wrapping ErrCodec if v cannot
// be encoded.
func (l *List[T]) Set(i int, v T) error {
	return l.mutate(&tempestpb.Op{Kind: tempestpb.OpKind_OP_LIST_SET, Index: int64(i)}, &v)
}

// All iterates over (index, element) of the list as it is when iteration
// starts (the body may mutate the list).
func (l *List[T]) All() iter.Seq2[int, T] {
	return func(yield func(int, T) bool) {
		for i, e := range slices.Clone(l.elems()) {
			v, err := l.vc.Decode(e)
			if err != nil {
				continue
			}
			if !yield(i, v) {
				return
			}
		}
	}
}

// Values iterates over the elements (see All).
func (l *List[T]) Values() iter.Seq[T] {
	return func(yield func(T) bool) {
		for _, v := range l.All() {
			if !yield(v) {
				return
			}
		}
	}
}
