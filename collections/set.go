package collections

import (
	"fmt"
	"iter"

	"github.com/tempestrt/tempest/proto/tempestpb"
)

// Set is a replicated set. Each element is one item: adds and removes of
// one element are totally ordered on every replica (the later one wins);
// different elements are independent. Elements are encoded with the key
// codec (DefaultKeyCodec unless WithKeyCodec).
type Set[T comparable] struct {
	s  *Store
	c  *collection
	kc Codec[T]
}

// NewSet declares a set collection (see NewMap for the rules).
func NewSet[T comparable](s *Store, name string, opts ...Option) *Set[T] {
	o := buildOptions(opts)
	st := &Set[T]{s: s, kc: codecFrom(o.keyCodec, DefaultKeyCodec[T](), "element", name)}
	st.c = s.declare(name, kindSet)
	st.c.validKey = keyValidator(st.kc)
	return st
}

// Name returns the collection's name.
func (st *Set[T]) Name() string { return st.c.name }

// key encodes v for a mutation.
func (st *Set[T]) key(v T) ([]byte, error) {
	b, err := st.kc.Encode(v)
	if err != nil {
		return nil, fmt.Errorf("%w: set %q element %v: %v", ErrCodec, st.c.name, v, err)
	}
	return b, nil
}

func (st *Set[T]) mutate(v T, k tempestpb.OpKind) error {
	if err := st.s.writable(st.c); err != nil {
		return err
	}
	key, err := st.key(v)
	if err != nil {
		return st.s.fail(err)
	}
	return st.s.mutate(st.c, key, &tempestpb.Op{Kind: k})
}

// Add makes v present. Only inside Store.Update. It returns an error
// wrapping ErrCodec if v cannot be encoded (see Store.Update).
func (st *Set[T]) Add(v T) error { return st.mutate(v, tempestpb.OpKind_OP_SET_ADD) }

// Remove makes v absent. Only inside Store.Update. It returns an error
// wrapping ErrCodec if v cannot be encoded (see Store.Update).
func (st *Set[T]) Remove(v T) error { return st.mutate(v, tempestpb.OpKind_OP_SET_REMOVE) }

// Contains reports whether v is present (tentative ops included).
func (st *Set[T]) Contains(v T) bool {
	b, err := st.kc.Encode(v)
	if err != nil {
		return false
	}
	cur, ok := st.c.current(b)
	return ok && cur.exists
}

// Len returns the number of elements present.
func (st *Set[T]) Len() int { return st.c.count() }

// Stable reports whether v's item has no tentative ops.
func (st *Set[T]) Stable(v T) bool {
	b, err := st.kc.Encode(v)
	return err != nil || st.s.itemStable(st.c, b)
}

// All iterates over the elements in encoded order. Elements are taken when
// iteration starts; ones removed meanwhile are skipped.
func (st *Set[T]) All() iter.Seq[T] {
	return func(yield func(T) bool) {
		for v := range liveItems(st.c, st.kc) {
			if !yield(v) {
				return
			}
		}
	}
}
