package collections

import (
	"encoding/json"
	"fmt"
	"iter"

	"github.com/tempestrt/tempest/proto/tempestpb"
)

// Map is a replicated map. Each key is one item: ops on one key are
// totally ordered on every replica; ops on different keys are independent.
//
// Keys are encoded with the key codec (DefaultKeyCodec unless
// WithKeyCodec) and values with the value codec (JSONCodec unless
// WithValueCodec). Reads decode afresh: a value returned by Get may be
// modified freely without affecting the replica.
type Map[K comparable, V any] struct {
	s  *Store
	c  *collection
	kc Codec[K]
	vc Codec[V]
}

// NewMap declares a map collection named name. Every replica of a service
// must declare the same collections. It panics if the name is empty or
// taken (ErrDuplicateCollection) or an option's codec has the wrong type.
func NewMap[K comparable, V any](s *Store, name string, opts ...Option) *Map[K, V] {
	o := buildOptions(opts)
	m := &Map[K, V]{
		s:  s,
		kc: codecFrom(o.keyCodec, DefaultKeyCodec[K](), "key", name),
		vc: codecFrom(o.valueCodec, JSONCodec[V](), "value", name),
	}
	m.c = s.declare(name, kindMap)
	m.c.validKey = keyValidator(m.kc)
	m.c.validValue = valueValidator(m.vc)
	m.c.userOps = map[string]*userOp{}
	return m
}

// Name returns the collection's name.
func (m *Map[K, V]) Name() string { return m.c.name }

// key encodes k for a mutation.
func (m *Map[K, V]) key(k K) ([]byte, error) {
	b, err := m.kc.Encode(k)
	if err != nil {
		return nil, fmt.Errorf("%w: map %q key %v: %v", ErrCodec, m.c.name, k, err)
	}
	return b, nil
}

// readKey encodes k for a read; a key that cannot be encoded is in no map.
func (m *Map[K, V]) readKey(k K) ([]byte, bool) {
	b, err := m.kc.Encode(k)
	return b, err == nil
}

// Get returns the value at k (tentative ops included) and whether it exists.
func (m *Map[K, V]) Get(k K) (V, bool) {
	var zero V
	b, ok := m.readKey(k)
	if !ok {
		return zero, false
	}
	cur, ok := m.c.current(b)
	if !ok || !cur.exists {
		return zero, false
	}
	v, err := m.vc.Decode(cur.data)
	if err != nil { // unreachable: values are validated on entry
		return zero, false
	}
	return v, true
}

// Contains reports whether k exists.
func (m *Map[K, V]) Contains(k K) bool {
	b, ok := m.readKey(k)
	if !ok {
		return false
	}
	cur, ok := m.c.current(b)
	return ok && cur.exists
}

// Len returns the number of keys.
func (m *Map[K, V]) Len() int { return m.c.count() }

// Stable reports whether the item at k has no tentative ops: its value
// (or absence) is final up to ops not yet issued.
func (m *Map[K, V]) Stable(k K) bool {
	b, ok := m.readKey(k)
	return !ok || m.s.itemStable(m.c, b)
}

// Put sets k to v. Only inside Store.Update (else it panics with
// ErrReadOnly). It returns an error wrapping ErrCodec if k or v cannot be
// encoded; see Store.Update for what a failed mutation does to the update.
func (m *Map[K, V]) Put(k K, v V) error {
	if err := m.s.writable(m.c); err != nil {
		return err
	}
	key, err := m.key(k)
	if err != nil {
		return m.s.fail(err)
	}
	data, err := m.vc.Encode(v)
	if err != nil {
		return m.s.fail(fmt.Errorf("%w: map %q value for key %v: %v", ErrCodec, m.c.name, k, err))
	}
	return m.s.mutate(m.c, key, &tempestpb.Op{Kind: tempestpb.OpKind_OP_PUT, Value: data})
}

// Delete removes k (a no-op op if absent). Only inside Store.Update. It
// returns an error wrapping ErrCodec if k cannot be encoded.
func (m *Map[K, V]) Delete(k K) error {
	if err := m.s.writable(m.c); err != nil {
		return err
	}
	key, err := m.key(k)
	if err != nil {
		return m.s.fail(err)
	}
	return m.s.mutate(m.c, key, &tempestpb.Op{Kind: tempestpb.OpKind_OP_DELETE})
}

// Do applies the user op registered as name to k with args (JSON-encoded
// into the op). Only inside Store.Update. It returns an error wrapping
// ErrUnknownOp if name is not registered, ErrCodec if k or args cannot be
// encoded (or args do not decode as the op's argument type) or if the op's
// result cannot be encoded, and ErrUserOpPanic if the op's function
// panicked. A function that mutates a collection panics with ErrReadOnly.
func (m *Map[K, V]) Do(k K, name string, args any) error {
	if err := m.s.writable(m.c); err != nil {
		return err
	}
	uo := m.c.userOps[name]
	if uo == nil {
		return m.s.fail(fmt.Errorf("%w: %q on map %q", ErrUnknownOp, name, m.c.name))
	}
	data, err := json.Marshal(args)
	if err != nil {
		return m.s.fail(fmt.Errorf("%w: args of user op %q on map %q: %v", ErrCodec, name, m.c.name, err))
	}
	if err := uo.validate(data); err != nil {
		return m.s.fail(fmt.Errorf("%w: args of user op %q on map %q do not decode as its argument type: %v", ErrCodec, name, m.c.name, err))
	}
	key, err := m.key(k)
	if err != nil {
		return m.s.fail(err)
	}
	return m.s.mutate(m.c, key, &tempestpb.Op{Kind: tempestpb.OpKind_OP_USER, UserOp: name, Value: data})
}

// RegisterOp registers a deterministic user op on m's items under name.
// fn computes an item's next value from its current one (the zero V and
// exists=false for an absent key) and the op's arguments; keep=false
// deletes the item. Every replica re-runs fn when it applies or replays
// the op, so fn must be a pure function of its inputs: no clocks, no
// randomness, no reads of collections, no mutation of cur (it is a fresh
// copy, but aliasing it into next is fine). A panic in fn makes the op a
// no-op on every replica (and surfaces from Map.Do when the op is made).
// Args travel JSON-encoded.
//
// Register ops in the service's setup, on every replica alike, before
// ops arrive. It panics with ErrDuplicateOp if name is taken.
func RegisterOp[K comparable, V any, A any](m *Map[K, V], name string, fn func(cur V, exists bool, args A) (next V, keep bool)) {
	if name == "" || fn == nil {
		panic(fmt.Sprintf("collections: RegisterOp on map %q: empty name or nil fn", m.c.name))
	}
	if _, dup := m.c.userOps[name]; dup {
		panic(fmt.Errorf("%w: %q on map %q", ErrDuplicateOp, name, m.c.name))
	}
	vc := m.vc
	m.c.userOps[name] = &userOp{
		validate: func(args []byte) error {
			var a A
			return json.Unmarshal(args, &a)
		},
		apply: func(v value, args []byte) (value, error) {
			var cur V
			if v.exists {
				var err error
				if cur, err = vc.Decode(v.data); err != nil {
					return v, err
				}
			}
			var a A
			if err := json.Unmarshal(args, &a); err != nil {
				return v, err
			}
			next, keep := fn(cur, v.exists, a)
			if !keep {
				return value{}, nil
			}
			data, err := vc.Encode(next)
			if err != nil {
				return v, err
			}
			return value{exists: true, data: data}, nil
		},
	}
}

// All iterates over the entries in encoded-key order. Keys are taken when
// iteration starts; values are read as iteration proceeds, and keys
// deleted meanwhile are skipped, so the body may mutate the map.
func (m *Map[K, V]) All() iter.Seq2[K, V] {
	return func(yield func(K, V) bool) {
		for k, cur := range liveItems(m.c, m.kc) {
			v, err := m.vc.Decode(cur.data)
			if err != nil {
				continue
			}
			if !yield(k, v) {
				return
			}
		}
	}
}

// Keys iterates over the keys in encoded-key order (see All).
func (m *Map[K, V]) Keys() iter.Seq[K] {
	return func(yield func(K) bool) {
		for k := range liveItems(m.c, m.kc) {
			if !yield(k) {
				return
			}
		}
	}
}
