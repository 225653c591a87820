package check

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/tempestrt/tempest/collections"
)

// Difference is one item whose value differs between two replicas.
type Difference struct {
	Collection string
	Item       []byte
	ReplicaA   string
	ReplicaB   string
	A, B       string // the values, rendered (Store.Describe)
}

func (d Difference) String() string {
	return fmt.Sprintf("%s[%q]: %s has %s, %s has %s", d.Collection, d.Item, d.ReplicaA, d.A, d.ReplicaB, d.B)
}

// Diff lists the items whose current values differ between a and b,
// sorted by (collection, item). Collections declared on only one side are
// reported with item "<collection>" and value "<undeclared>".
func Diff(a, b *collections.Store) []Difference {
	var out []Difference
	da, db := a.CollectionDigests(), b.CollectionDigests()
	names := map[string]bool{}
	for n := range da {
		names[n] = true
	}
	for n := range db {
		names[n] = true
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	slices.Sort(sorted)
	for _, n := range sorted {
		ha, okA := da[n]
		hb, okB := db[n]
		switch {
		case !okA || !okB:
			d := Difference{Collection: n, Item: []byte("<collection>"), ReplicaA: a.Replica(), ReplicaB: b.Replica(), A: "<declared>", B: "<declared>"}
			if !okA {
				d.A = "<undeclared>"
			} else {
				d.B = "<undeclared>"
			}
			out = append(out, d)
			continue
		case ha == hb:
			continue
		}
		ia, ib := a.ItemDigests(n), b.ItemDigests(n)
		var keys []string
		for k, h := range ia {
			if ib[k] != h {
				keys = append(keys, k)
			}
		}
		for k := range ib {
			if _, ok := ia[k]; !ok {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			out = append(out, Difference{
				Collection: n, Item: []byte(k), ReplicaA: a.Replica(), ReplicaB: b.Replica(),
				A: a.Describe(n, []byte(k)), B: b.Describe(n, []byte(k)),
			})
		}
	}
	slices.SortStableFunc(out, func(x, y Difference) int {
		return cmp.Or(cmp.Compare(x.Collection, y.Collection), strings.Compare(string(x.Item), string(y.Item)))
	})
	return out
}

// Converged returns nil if every store holds the same values as the
// first (equal digests), else an error naming, for each store that
// differs, the collections and (up to 10) items and both values.
func Converged(stores ...*collections.Store) error {
	if len(stores) < 2 {
		return nil
	}
	ref := stores[0]
	want := ref.Digest()
	var b strings.Builder
	for _, s := range stores[1:] {
		if s.Digest() == want {
			continue
		}
		diffs := Diff(ref, s)
		fmt.Fprintf(&b, "\nreplica %s (digest %016x) differs from %s (digest %016x) in %d item(s):", s.Replica(), s.Digest(), ref.Replica(), want, len(diffs))
		for i, d := range diffs {
			if i == 10 {
				fmt.Fprintf(&b, "\n  ... and %d more", len(diffs)-10)
				break
			}
			b.WriteString("\n  ")
			b.WriteString(d.String())
		}
	}
	if b.Len() == 0 {
		return nil
	}
	return fmt.Errorf("replicas have not converged:%s", b.String())
}
