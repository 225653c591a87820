package collections

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
)

// Codec turns keys, values or list elements into bytes and back. Encoding
// must be deterministic (the same value always gives the same bytes):
// digests compare bytes, and map keys and set elements are identified by
// their encoding.
type Codec[T any] interface {
	Encode(T) ([]byte, error)
	Decode([]byte) (T, error)
}

// JSONCodec encodes with encoding/json (deterministic: struct fields in
// declaration order, map keys sorted). It is the default for map values and
// list elements, and for keys and set elements of types DefaultKeyCodec does
// not handle natively.
func JSONCodec[T any]() Codec[T] { return jsonCodec[T]{} }

type jsonCodec[T any] struct{}

func (jsonCodec[T]) Encode(v T) ([]byte, error) { return json.Marshal(v) }
func (jsonCodec[T]) Decode(b []byte) (T, error) {
	var v T
	err := json.Unmarshal(b, &v)
	return v, err
}

// DefaultKeyCodec is the default codec for map keys and set elements:
// types whose kind is string are their bytes as-is; signed and unsigned
// integers are strconv decimal; bools are "true"/"false"; anything else is
// JSON. Named types (type UserID string) are handled by kind.
//
// Note that iteration follows the encoded bytes, so integer keys iterate in
// decimal-string order ("10" < "9").
func DefaultKeyCodec[K any]() Codec[K] {
	switch reflect.TypeFor[K]().Kind() {
	case reflect.String:
		return stringKeyCodec[K]{}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return intKeyCodec[K]{bits: reflect.TypeFor[K]().Bits()}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return uintKeyCodec[K]{bits: reflect.TypeFor[K]().Bits()}
	case reflect.Bool:
		return boolKeyCodec[K]{}
	default:
		return jsonCodec[K]{}
	}
}

type stringKeyCodec[K any] struct{}

func (stringKeyCodec[K]) Encode(k K) ([]byte, error) {
	if s, ok := any(k).(string); ok {
		return []byte(s), nil
	}
	return []byte(reflect.ValueOf(k).String()), nil
}

func (stringKeyCodec[K]) Decode(b []byte) (K, error) {
	var k K
	if p, ok := any(&k).(*string); ok {
		*p = string(b)
		return k, nil
	}
	reflect.ValueOf(&k).Elem().SetString(string(b))
	return k, nil
}

type intKeyCodec[K any] struct{ bits int }

func (intKeyCodec[K]) Encode(k K) ([]byte, error) {
	return strconv.AppendInt(nil, reflect.ValueOf(k).Int(), 10), nil
}

func (c intKeyCodec[K]) Decode(b []byte) (K, error) {
	var k K
	n, err := strconv.ParseInt(string(b), 10, c.bits)
	if err != nil {
		return k, err
	}
	reflect.ValueOf(&k).Elem().SetInt(n)
	return k, nil
}

type uintKeyCodec[K any] struct{ bits int }

func (uintKeyCodec[K]) Encode(k K) ([]byte, error) {
	return strconv.AppendUint(nil, reflect.ValueOf(k).Uint(), 10), nil
}

func (c uintKeyCodec[K]) Decode(b []byte) (K, error) {
	var k K
	n, err := strconv.ParseUint(string(b), 10, c.bits)
	if err != nil {
		return k, err
	}
	reflect.ValueOf(&k).Elem().SetUint(n)
	return k, nil
}

type boolKeyCodec[K any] struct{}

func (boolKeyCodec[K]) Encode(k K) ([]byte, error) {
	return strconv.AppendBool(nil, reflect.ValueOf(k).Bool()), nil
}

func (boolKeyCodec[K]) Decode(b []byte) (K, error) {
	var k K
	v, err := strconv.ParseBool(string(b))
	if err != nil {
		return k, err
	}
	reflect.ValueOf(&k).Elem().SetBool(v)
	return k, nil
}

// keyValidator returns a check that b is the canonical encoding of some
// key: it decodes and re-encodes to the same bytes. Without it a remote
// op could create an item ("007") that no local key (7) ever names.
func keyValidator[K any](c Codec[K]) func([]byte) error {
	return func(b []byte) error {
		k, err := c.Decode(b)
		if err != nil {
			return err
		}
		again, err := c.Encode(k)
		if err != nil {
			return err
		}
		if !bytes.Equal(again, b) {
			return fmt.Errorf("key %q is not canonical (re-encodes as %q)", b, again)
		}
		return nil
	}
}

func valueValidator[V any](c Codec[V]) func([]byte) error {
	return func(b []byte) error {
		_, err := c.Decode(b)
		return err
	}
}

// Option configures a collection at declaration.
type Option func(*options)

type options struct {
	keyCodec   any
	valueCodec any
}

// WithKeyCodec sets the codec of a map's keys or a set's elements. It
// panics at declaration if c is not a Codec of the collection's key type.
func WithKeyCodec[K any](c Codec[K]) Option { return func(o *options) { o.keyCodec = c } }

// WithValueCodec sets the codec of a map's values or a list's elements. It
// panics at declaration if c is not a Codec of the collection's value type.
func WithValueCodec[V any](c Codec[V]) Option { return func(o *options) { o.valueCodec = c } }

// WithCodec is WithValueCodec.
func WithCodec[V any](c Codec[V]) Option { return WithValueCodec(c) }

func buildOptions(opts []Option) options {
	var o options
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	return o
}

func codecFrom[T any](given any, def Codec[T], what, coll string) Codec[T] {
	if given == nil {
		return def
	}
	c, ok := given.(Codec[T])
	if !ok {
		panic(fmt.Sprintf("collections: %s: %s codec %T is not a Codec[%s]", coll, what, given, reflect.TypeFor[T]()))
	}
	return c
}
