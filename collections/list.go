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

func (l *List[T]) enc(v T) []byte {
	b, err := l.vc.Encode(v)
	if err != nil {
		panic(fmt.Errorf("%w: list %q element: %v", ErrCodec, l.c.name, err))
	}
	return b
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

// Append adds v at the end. Only inside Store.Update.
func (l *List[T]) Append(v T) {
	l.s.mutate(l.c, nil, &tempestpb.Op{Kind: tempestpb.OpKind_OP_LIST_APPEND, Value: l.enc(v)})
}

// Insert puts v at index i (clamped into [0, Len] when applied). Only
// inside Store.Update.
func (l *List[T]) Insert(i int, v T) {
	l.s.mutate(l.c, nil, &tempestpb.Op{Kind: tempestpb.OpKind_OP_LIST_INSERT, Index: int64(i), Value: l.enc(v)})
}

// RemoveAt removes element i (nothing if out of range when applied). Only
// inside Store.Update.
func (l *List[T]) RemoveAt(i int) {
	l.s.mutate(l.c, nil, &tempestpb.Op{Kind: tempestpb.OpKind_OP_LIST_REMOVE_AT, Index: int64(i)})
}

// Set replaces element i (nothing if out of range when applied). Only
// inside Store.Update.
func (l *List[T]) Set(i int, v T) {
	l.s.mutate(l.c, nil, &tempestpb.Op{Kind: tempestpb.OpKind_OP_LIST_SET, Index: int64(i), Value: l.enc(v)})
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
