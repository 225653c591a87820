package collections_test

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"pgregory.net/rapid"

	"github.com/tempestrt/tempest/collections"
	"github.com/tempestrt/tempest/proto/tempestpb"
)

// The reference model: what a replica must hold after a set of ops,
// computed with plain Go values by applying the ops one after the other in
// (timestamp, origin, seq) order. It shares nothing with the store's
// histories, rollback or replay; it only reads the timestamps the replicas'
// clocks stamped on the ops.

// mkind is what one model op does.
type mkind uint8

const (
	mPut      mkind = iota // m[key] = n
	mDel                   // delete m[key]
	mAdd                   // user op "add": m[key] += n; 0 deletes
	mSetNX                 // user op "setnx": m[key] = n unless present
	nPut                   // nm[ikey] = str
	nConcat                // user op "concat": nm[ikey] += str
	sAdd                   // s gets ikey
	sRemove                // s loses ikey
	lAppend                // l = append(l, str)
	lInsert                // insert str at i clamped into [0, len(l)]
	lRemoveAt              // remove l[i] if i is in range
	lSet                   // l[i] = str if i is in range
	cIncr                  // c += n
	mkinds
)

// mop is one op as the model sees it.
type mop struct {
	id      collections.OpID
	wall    uint64
	logical uint32
	kind    mkind
	key     string // m's key
	ikey    int    // nm's key, s's element
	i, n    int
	str     string
}

// item names the item an op is on, as "collection/encoded key".
func (o mop) item() string {
	switch o.kind {
	case mPut, mDel, mAdd, mSetNX:
		return "m/" + o.key
	case nPut, nConcat:
		return "n/" + strconv.Itoa(o.ikey)
	case sAdd, sRemove:
		return "s/" + strconv.Itoa(o.ikey)
	case lAppend, lInsert, lRemoveAt, lSet:
		return "l/"
	}
	return "c/"
}

// mstate is the value of every collection.
type mstate struct {
	m  map[string]int
	nm map[int]string
	s  map[int]bool
	l  []string
	c  int64
}

func (st *mstate) apply(o mop) {
	switch o.kind {
	case mPut:
		st.m[o.key] = o.n
	case mDel:
		delete(st.m, o.key)
	case mAdd:
		if v := st.m[o.key] + o.n; v != 0 {
			st.m[o.key] = v
		} else {
			delete(st.m, o.key)
		}
	case mSetNX:
		if _, ok := st.m[o.key]; !ok {
			st.m[o.key] = o.n
		}
	case nPut:
		st.nm[o.ikey] = o.str
	case nConcat:
		st.nm[o.ikey] += o.str
	case sAdd:
		st.s[o.ikey] = true
	case sRemove:
		delete(st.s, o.ikey)
	case lAppend:
		st.l = append(st.l, o.str)
	case lInsert:
		i := min(max(o.i, 0), len(st.l))
		st.l = append(st.l[:i], append([]string{o.str}, st.l[i:]...)...)
	case lRemoveAt:
		if o.i >= 0 && o.i < len(st.l) {
			st.l = append(st.l[:o.i], st.l[o.i+1:]...)
		}
	case lSet:
		if o.i >= 0 && o.i < len(st.l) {
			st.l[o.i] = o.str
		}
	case cIncr:
		st.c += int64(o.n)
	}
}

// model applies ops in (timestamp, origin, seq) order to empty values and
// returns the values and each item's order of ops.
func model(ops []mop) (mstate, map[string][]collections.OpID) {
	sorted := slices.Clone(ops)
	slices.SortFunc(sorted, func(a, b mop) int {
		return cmp.Or(cmp.Compare(a.wall, b.wall), cmp.Compare(a.logical, b.logical),
			strings.Compare(a.id.Origin, b.id.Origin), cmp.Compare(a.id.Seq, b.id.Seq))
	})
	st := mstate{m: map[string]int{}, nm: map[int]string{}, s: map[int]bool{}, l: []string{}}
	order := map[string][]collections.OpID{}
	for _, o := range sorted {
		st.apply(o)
		order[o.item()] = append(order[o.item()], o.id)
	}
	return st, order
}

// oStore is one incarnation of a replica: a store and its collections.
type oStore struct {
	s  *collections.Store
	m  *collections.Map[string, int]
	nm *collections.Map[int, string]
	st *collections.Set[int]
	l  *collections.List[string]
	c  *collections.Counter
}

// oReplica is a replica across restarts, with what the runtime keeps on
// disk for it: the op log (every op it applied, in order) and its latest
// snapshot with the log position it covers.
type oReplica struct {
	name      string
	auto      bool // automatic compaction (else only explicit Compact)
	cur       *oStore
	log       []*tempestpb.Op
	snap      []byte
	snapLog   int
	delivered map[collections.OpID]bool // ops this replica holds
	// folded is the replica's order of stable ops per item (OnStable),
	// over its incarnations; at a restart it goes back to what the
	// snapshot held (snapFolded), since the log replay folds the rest again.
	folded     map[string][]collections.OpID
	snapFolded map[string]int
}

type oracle struct {
	t      *rapid.T
	now    time.Time
	names  []string
	reps   []*oReplica
	flight []msg
	ops    []mop           // every committed op
	pbs    []*tempestpb.Op // the same, as made (catch-up serves them)
	steps  int
}

func (o *oracle) fail(r *oReplica, format string, args ...any) error {
	return fmt.Errorf("step %d, %s: %s", o.steps, r.name, fmt.Sprintf(format, args...))
}

func (o *oracle) boot(r *oReplica) error {
	cfg := collections.Config{
		Service:            "svc",
		Replica:            r.name,
		Now:                func() time.Time { return o.now },
		DisableAutoCompact: !r.auto,
		OnStable: func(coll string, item []byte, id collections.OpID) {
			k := coll + "/" + string(item)
			r.folded[k] = append(r.folded[k], id)
		},
	}
	s, err := collections.NewStore(cfg)
	if err != nil {
		return err
	}
	st := &oStore{
		s:  s,
		m:  collections.NewMap[string, int](s, "m"),
		nm: collections.NewMap[int, string](s, "n"),
		st: collections.NewSet[int](s, "s"),
		l:  collections.NewList[string](s, "l"),
		c:  collections.NewCounter(s, "c"),
	}
	collections.RegisterOp(st.m, "add", func(cur int, _ bool, a addArgs) (int, bool) {
		return cur + a.N, cur+a.N != 0
	})
	collections.RegisterOp(st.m, "setnx", func(cur int, exists bool, a addArgs) (int, bool) {
		if exists {
			return cur, true
		}
		return a.N, true
	})
	collections.RegisterOp(st.nm, "concat", func(cur string, _ bool, a string) (string, bool) {
		return cur + a, true
	})
	s.SetOrigins(o.names) // before restoring (recovery rule 2)
	r.cur = st
	return nil
}

// restart replaces r's store by a new incarnation built as the runtime
// builds one: latest snapshot, then the op log after it.
func (o *oracle) restart(r *oReplica) error {
	// The runtime waits until the clock passes the recovered clock, so the
	// new incarnation keeps the promises of heartbeats sent after the
	// last logged op.
	o.now = o.now.Add(time.Millisecond)
	if err := o.boot(r); err != nil {
		return err
	}
	for k := range r.folded {
		r.folded[k] = r.folded[k][:r.snapFolded[k]]
	}
	if r.snap != nil {
		snap := &tempestpb.StoreSnapshot{}
		if err := proto.Unmarshal(r.snap, snap); err != nil {
			return err
		}
		if err := r.cur.s.Restore(snap); err != nil {
			return o.fail(r, "restore: %v", err)
		}
	}
	for _, op := range r.log[r.snapLog:] {
		if _, err := r.cur.s.Deliver(proto.Clone(op).(*tempestpb.Op)); err != nil {
			return o.fail(r, "replaying the log: %v", err)
		}
	}
	return nil
}

func (o *oracle) snapshot(r *oReplica) error {
	b, err := proto.Marshal(r.cur.s.Snapshot())
	if err != nil {
		return err
	}
	r.snap, r.snapLog = b, len(r.log)
	r.snapFolded = map[string]int{}
	for k, ids := range r.folded {
		r.snapFolded[k] = len(ids)
	}
	return nil
}

func (o *oracle) send(from int, op *tempestpb.Op, hb *tempestpb.Heartbeat) {
	for to := range o.reps {
		if to != from {
			o.flight = append(o.flight, msg{to: to, op: op, hb: hb})
		}
	}
}

func (o *oracle) deliver(m msg) error {
	r := o.reps[m.to]
	if m.hb != nil {
		r.cur.s.ObserveHeartbeat(proto.Clone(m.hb).(*tempestpb.Heartbeat))
		return nil
	}
	id := collections.ID(m.op)
	applied, err := r.cur.s.Deliver(proto.Clone(m.op).(*tempestpb.Op))
	switch {
	case err != nil:
		return o.fail(r, "deliver %v: %v", id, err)
	case applied && r.delivered[id]:
		return o.fail(r, "op %v applied twice", id)
	case !applied && !r.delivered[id]:
		return o.fail(r, "op %v ignored as a duplicate, never delivered", id)
	case applied:
		r.log = append(r.log, m.op)
		r.delivered[id] = true
	}
	return nil
}

var errRefused = errors.New("handler refuses")

// update runs a handler of 1 to 3 random mutations on replica i; some
// handlers fail (their own error, or a mutation that cannot be made) and
// must leave nothing behind.
func (o *oracle) update(i int) error {
	t, r := o.t, o.reps[i]
	n := rapid.IntRange(1, 3).Draw(t, "mutations")
	var made []mop
	for range n {
		made = append(made, mop{
			kind: mkind(rapid.IntRange(0, int(mkinds)-1).Draw(t, "kind")),
			key:  []string{"a", "b", "c"}[rapid.IntRange(0, 2).Draw(t, "key")],
			ikey: rapid.IntRange(0, 3).Draw(t, "ikey"),
			i:    rapid.IntRange(-1, 4).Draw(t, "index"),
			n:    rapid.IntRange(-3, 3).Draw(t, "n"),
			str:  r.name[len(r.name)-1:] + strconv.Itoa(len(o.ops)),
		})
	}
	failure := rapid.IntRange(0, 9).Draw(t, "failure") // 0: handler error, 1: failed mutation
	st := r.cur
	ops, err := st.s.Update(func() error {
		for _, m := range made {
			var err error
			switch m.kind {
			case mPut:
				err = st.m.Put(m.key, m.n)
			case mDel:
				err = st.m.Delete(m.key)
			case mAdd:
				err = st.m.Do(m.key, "add", addArgs{N: m.n})
			case mSetNX:
				err = st.m.Do(m.key, "setnx", addArgs{N: m.n})
			case nPut:
				err = st.nm.Put(m.ikey, m.str)
			case nConcat:
				err = st.nm.Do(m.ikey, "concat", m.str)
			case sAdd:
				err = st.st.Add(m.ikey)
			case sRemove:
				err = st.st.Remove(m.ikey)
			case lAppend:
				err = st.l.Append(m.str)
			case lInsert:
				err = st.l.Insert(m.i, m.str)
			case lRemoveAt:
				err = st.l.RemoveAt(m.i)
			case lSet:
				err = st.l.Set(m.i, m.str)
			case cIncr:
				err = st.c.Incr(int64(m.n))
			}
			if err != nil {
				return err
			}
		}
		switch failure {
		case 0:
			return errRefused
		case 1:
			_ = st.m.Do("a", "no such op", nil) // the handler ignores the error
		}
		return nil
	})
	switch {
	case failure == 0 && (!errors.Is(err, errRefused) || ops != nil):
		return o.fail(r, "refused update: %d ops, %v", len(ops), err)
	case failure == 1 && (!errors.Is(err, collections.ErrUnknownOp) || ops != nil):
		return o.fail(r, "update with a failed mutation: %d ops, %v", len(ops), err)
	case failure <= 1:
		return nil
	case err != nil || len(ops) != len(made):
		return o.fail(r, "update: %d ops for %d mutations, %v", len(ops), len(made), err)
	}
	for j, op := range ops {
		m := made[j]
		m.id, m.wall, m.logical = collections.ID(op), op.GetWallMs(), op.GetLogical()
		if got := op.GetCollection() + "/" + string(op.GetItem()); got != m.item() {
			return o.fail(r, "op %v is on %s, the handler mutated %s", m.id, got, m.item())
		}
		o.ops = append(o.ops, m)
		o.pbs = append(o.pbs, op)
		r.log = append(r.log, op)
		r.delivered[m.id] = true
		o.send(i, op, nil)
	}
	return nil
}

// check compares replica r with the model of the ops it holds: the values
// of every collection, and each item's order of applied ops (the stable
// ones as OnStable reported them, then the tentative ones).
func (o *oracle) check(r *oReplica) error {
	var held []mop
	for _, m := range o.ops {
		if r.delivered[m.id] {
			held = append(held, m)
		}
	}
	if len(held) != len(r.delivered) {
		return o.fail(r, "holds %d ops, %d of them committed", len(r.delivered), len(held))
	}
	want, wantOrder := model(held)
	st := r.cur
	got := mstate{m: collect(st.m), nm: collect(st.nm), s: map[int]bool{}, l: slices.Collect(st.l.Values()), c: st.c.Value()}
	for v := range st.st.All() {
		got.s[v] = true
	}
	if got.l == nil {
		got.l = []string{}
	}
	switch {
	case !maps.Equal(got.m, want.m):
		return o.fail(r, "map m = %v, model %v", got.m, want.m)
	case !maps.Equal(got.nm, want.nm):
		return o.fail(r, "map n = %v, model %v", got.nm, want.nm)
	case !maps.Equal(got.s, want.s):
		return o.fail(r, "set s = %v, model %v", got.s, want.s)
	case !slices.Equal(got.l, want.l):
		return o.fail(r, "list l = %q, model %q", got.l, want.l)
	case got.c != want.c:
		return o.fail(r, "counter c = %d, model %d", got.c, want.c)
	}
	items := map[string]bool{}
	for k := range wantOrder {
		items[k] = true
	}
	for k, ids := range r.folded {
		items[k] = items[k] || len(ids) > 0
	}
	for _, ref := range st.s.Tentative() {
		items[ref.Collection+"/"+string(ref.Item)] = true
	}
	for k := range items {
		coll, key, _ := strings.Cut(k, "/")
		order := append(slices.Clone(r.folded[k]), st.s.ItemOrder(coll, []byte(key))...)
		if !slices.Equal(order, wantOrder[k]) {
			return o.fail(r, "item %s applied %v, model %v", k, order, wantOrder[k])
		}
	}
	return nil
}

func (o *oracle) step() error {
	t := o.t
	i := rapid.IntRange(0, len(o.reps)-1).Draw(t, "replica")
	r := o.reps[i]
	switch a := rapid.IntRange(0, 99).Draw(t, "action"); {
	case a < 30:
		return o.update(i)
	case a < 65 && len(o.flight) > 0:
		j := rapid.IntRange(0, len(o.flight)-1).Draw(t, "msg")
		m := o.flight[j]
		switch rapid.IntRange(0, 9).Draw(t, "fate") {
		case 0: // lost (catch-up repairs it)
			o.flight = slices.Delete(o.flight, j, j+1)
			return nil
		case 1: // duplicated: delivered, and still in flight
		default:
			o.flight = slices.Delete(o.flight, j, j+1)
		}
		return o.deliver(m)
	case a < 73:
		o.send(i, nil, r.cur.s.Heartbeat())
	case a < 77:
		r.cur.s.Compact()
	case a < 85:
		// Mostly the same millisecond: replicas stamp equal timestamps
		// and ties are broken by origin.
		o.now = o.now.Add(time.Duration(rapid.IntRange(0, 2).Draw(t, "advance")) * time.Millisecond)
	case a < 88:
		for _, op := range o.pbs { // catch-up from a peer that has everything
			if err := o.deliver(msg{to: i, op: op}); err != nil {
				return err
			}
		}
	case a < 92:
		return o.snapshot(r)
	case a < 95:
		return o.restart(r)
	default:
		return o.check(r)
	}
	return nil
}

// settle delivers everything and makes every op stable everywhere.
func (o *oracle) settle() error {
	for _, m := range o.flight {
		if err := o.deliver(m); err != nil {
			return err
		}
	}
	o.flight = nil
	for i := range o.reps {
		for _, op := range o.pbs {
			if err := o.deliver(msg{to: i, op: op}); err != nil {
				return err
			}
		}
	}
	o.now = o.now.Add(time.Second)
	var hbs []*tempestpb.Heartbeat
	for _, r := range o.reps {
		hbs = append(hbs, r.cur.s.Heartbeat())
	}
	for _, r := range o.reps {
		for _, hb := range hbs {
			r.cur.s.ObserveHeartbeat(proto.Clone(hb).(*tempestpb.Heartbeat))
		}
		r.cur.s.Compact()
	}
	return nil
}

// runOracle plays one random history on 2 to 4 replicas and returns the
// first difference from the model (nil if none). It draws from t but
// never fails it, so that mutation tests can run it.
func runOracle(t *rapid.T) (err error) {
	defer func() {
		if p := recover(); p != nil {
			if reflect.TypeOf(p).PkgPath() == "pgregory.net/rapid" {
				panic(p) // rapid's own control flow (data overrun while shrinking, ...)
			}
			err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
		}
	}()
	o := &oracle{t: t, now: time.UnixMilli(1_700_000_000_000)}
	n := rapid.IntRange(2, 4).Draw(t, "replicas")
	for i := range n {
		o.names = append(o.names, fmt.Sprintf("svc/%d", i+1))
	}
	for _, name := range o.names {
		r := &oReplica{
			name:       name,
			auto:       rapid.Bool().Draw(t, "auto"),
			delivered:  map[collections.OpID]bool{},
			folded:     map[string][]collections.OpID{},
			snapFolded: map[string]int{},
		}
		o.reps = append(o.reps, r)
		if err := o.boot(r); err != nil {
			return err
		}
	}
	steps := rapid.IntRange(1, 200).Draw(t, "steps")
	for o.steps = 1; o.steps <= steps; o.steps++ {
		if err := o.step(); err != nil {
			return err
		}
	}
	if err := o.settle(); err != nil {
		return err
	}
	for _, r := range o.reps {
		if len(r.delivered) != len(o.ops) {
			return o.fail(r, "holds %d ops after settling, %d committed", len(r.delivered), len(o.ops))
		}
		if p := r.cur.s.Pending(); p != 0 {
			return o.fail(r, "%d ops still tentative after settling", p)
		}
		if late := r.cur.s.Stats().LateOps; late != 0 {
			return o.fail(r, "%d ops arrived behind the stable point", late)
		}
		if err := o.check(r); err != nil {
			return fmt.Errorf("after settling: %w", err)
		}
	}
	return nil
}

// TestPropertyMatchesModel: whatever the delivery order, duplication, loss
// (repaired by catch-up) and restarts (latest snapshot plus the op log
// after it), every replica holds at every check the values, and the
// per-item order of applied ops, of the reference model run on the ops it
// holds; after settling, those of every committed op, all stable.
func TestPropertyMatchesModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		if err := runOracle(t); err != nil {
			t.Fatal(err)
		}
	})
}

// TestOracleCatchesMutants shows that TestPropertyMatchesModel can fail:
// with a deliberate bug switched on (see mutant.go), some of a fixed set
// of seeded histories must differ from the model, and the same history
// must match it once the bug is off again.
func TestOracleCatchesMutants(t *testing.T) {
	requireMutantsCaught(t, runOracle, []mutant{
		{"ties broken by arrival", collections.MutantTiesByArrival},
		{"replay skips one op", collections.MutantReplaySkipsOne},
	})
}

// mutant is a deliberate bug (see mutant.go) a property must catch.
type mutant struct {
	name string
	m    collections.Mutation
}

// requireMutantsCaught runs the property on a fixed set of 300 seeded
// histories with each mutant switched on: some history must fail, and the
// same history must pass with the mutant off again. It is what shows that
// a property can fail.
func requireMutantsCaught(t *testing.T, property func(*rapid.T) error, mutants []mutant) {
	t.Helper()
	const seeds = 300
	prop := rapid.Custom(property)
	for _, m := range mutants {
		t.Run(m.name, func(t *testing.T) {
			caught := -1
			func() {
				defer collections.SetMutation(m.m)()
				for seed := range seeds {
					if err := prop.Example(seed); err != nil {
						caught = seed
						t.Logf("mutant %q caught by seed %d: %.300v", m.name, seed, err)
						return
					}
				}
			}()
			if caught < 0 {
				t.Fatalf("mutant %q survived %d histories: the property cannot see it", m.name, seeds)
			}
			if err := prop.Example(caught); err != nil {
				t.Fatalf("seed %d fails without the mutant too: %v", caught, err)
			}
		})
	}
}
