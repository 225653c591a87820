package persistence

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"
)

func TestRoundTrip(t *testing.T) {
	db := openT(t, memOptions())
	a, b := db.Clone("cart/1"), db.Clone("cart/2")
	if _, _, ok, err := a.LoadSnapshot(); ok || err != nil {
		t.Fatalf("fresh clone has a snapshot: %v %v", ok, err)
	}
	if p := mustAppend(t, a, rec("cart/1", 1)); p != 1 {
		t.Fatalf("first position %d, want 1", p)
	}
	if p := mustAppend(t, a, rec("cart/1", 2), rec("cart/3", 1), rec("cart/1", 3)); p != 4 {
		t.Fatalf("position %d, want 4", p)
	}
	if p := mustAppend(t, b, rec("cart/1", 1)); p != 1 {
		t.Fatalf("clone b position %d, want 1 (positions are per clone)", p)
	}
	got := replayAll(t, a, 0)
	want := []posRec{{1, rec("cart/1", 1)}, {2, rec("cart/1", 2)}, {3, rec("cart/3", 1)}, {4, rec("cart/1", 3)}}
	if len(got) != len(want) {
		t.Fatalf("replayed %d records, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].pos != want[i].pos || got[i].r.Origin != want[i].r.Origin || got[i].r.Seq != want[i].r.Seq || string(got[i].r.Data) != string(want[i].r.Data) {
			t.Fatalf("record %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	if got := replayAll(t, a, 2); len(got) != 2 || got[0].pos != 3 {
		t.Fatalf("Replay(2) = %+v", got)
	}
	if m, _ := a.MaxSeq("cart/1"); m != 3 {
		t.Fatalf("MaxSeq = %d, want 3", m)
	}
	if m, _ := a.MaxSeq("nobody"); m != 0 {
		t.Fatalf("MaxSeq of unknown origin = %d", m)
	}
	if p, _ := a.LastPos(); p != 4 {
		t.Fatalf("LastPos = %d", p)
	}
	if err := a.SaveSnapshot([]byte("state@4"), 4); err != nil {
		t.Fatal(err)
	}
	data, pos, ok, err := a.LoadSnapshot()
	if err != nil || !ok || pos != 4 || string(data) != "state@4" {
		t.Fatalf("LoadSnapshot = %q %d %v %v", data, pos, ok, err)
	}
	if err := a.PutMeta("epoch", []byte("7")); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := a.GetMeta("epoch"); err != nil || !ok || string(v) != "7" {
		t.Fatalf("GetMeta = %q %v %v", v, ok, err)
	}
	if _, ok, _ := b.GetMeta("epoch"); ok {
		t.Fatal("meta leaked across clones")
	}
	if err := a.PutMeta("empty", nil); err != nil {
		t.Fatal(err)
	}
	if v, ok, _ := a.GetMeta("empty"); !ok || len(v) != 0 {
		t.Fatalf("empty meta: %q %v", v, ok)
	}
	if err := a.DeleteMeta("epoch"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := a.GetMeta("epoch"); ok {
		t.Fatal("DeleteMeta left the key")
	}
	ids, err := db.Clones()
	if err != nil || !slices.Equal(ids, []string{"cart/1", "cart/2"}) {
		t.Fatalf("Clones = %v %v", ids, err)
	}
	st := db.Stats()
	if st.Appends != 3 || st.Records != 5 || st.Duplicates != 0 || st.Policy != "always" {
		t.Fatalf("stats %+v", st)
	}
}

func TestAppendIdempotent(t *testing.T) {
	db := openT(t, memOptions())
	c := db.Clone("svc/1")
	if p := mustAppend(t, c, rec("o", 1), rec("o", 2)); p != 2 {
		t.Fatalf("pos %d", p)
	}
	if p := mustAppend(t, c, rec("o", 2)); p != 2 {
		t.Fatalf("duplicate returned %d, want the stored position 2", p)
	}
	if p := mustAppend(t, c, rec("o", 1), rec("o", 3)); p != 3 {
		t.Fatalf("pos %d, want 3", p)
	}
	if p := mustAppend(t, c, rec("o", 4), rec("o", 4)); p != 4 {
		t.Fatalf("in-call duplicate: pos %d, want 4", p)
	}
	changed := Record{Origin: "o", Seq: 4, Data: []byte("different")}
	if p := mustAppend(t, c, changed); p != 4 {
		t.Fatalf("pos %d", p)
	}
	got := replayAll(t, c, 0)
	if len(got) != 4 {
		t.Fatalf("%d records stored, want 4", len(got))
	}
	if string(got[3].r.Data) != string(payload("o", 4)) {
		t.Fatalf("duplicate overwrote the first copy: %q", got[3].r.Data)
	}
	if st := db.Stats(); st.Records != 4 || st.Duplicates != 4 {
		t.Fatalf("stats records=%d duplicates=%d, want 4 and 4", st.Records, st.Duplicates)
	}

	// The same records appended concurrently from many goroutines (as when
	// several peers re-send the same ops) are stored once each.
	d := db.Clone("svc/2")
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Go(func() {
			for s := uint64(1); s <= 50; s++ {
				if _, err := d.Append(context.Background(), rec("p", s)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if got := replayAll(t, d, 0); len(got) != 50 {
		t.Fatalf("concurrent duplicates: %d records stored, want 50", len(got))
	}
	checkContiguous(t, d, "p", 50)
}

func TestSnapshotPruneReplay(t *testing.T) {
	db := openT(t, memOptions())
	c := db.Clone("cart/1")
	for s := uint64(1); s <= 10; s++ {
		mustAppend(t, c, rec("a", s)) // positions 1..10
	}
	for s := uint64(1); s <= 5; s++ {
		mustAppend(t, c, rec("b", s)) // positions 11..15
	}
	if err := c.Prune(5); !errors.Is(err, ErrNotCovered) {
		t.Fatalf("Prune without snapshot: %v, want ErrNotCovered", err)
	}
	if err := c.SaveSnapshot([]byte("x"), 16); !errors.Is(err, ErrPosOutOfRange) {
		t.Fatalf("snapshot beyond the log: %v", err)
	}
	if err := c.SaveSnapshot([]byte("s8"), 8); err != nil {
		t.Fatal(err)
	}
	if err := c.Prune(10); !errors.Is(err, ErrNotCovered) {
		t.Fatalf("Prune beyond snapshot: %v, want ErrNotCovered", err)
	}
	if err := c.Prune(6); err != nil {
		t.Fatal(err)
	}
	if err := c.SaveSnapshot([]byte("s7"), 7); !errors.Is(err, ErrStaleSnapshot) {
		t.Fatalf("older snapshot: %v, want ErrStaleSnapshot", err)
	}
	// Restore path: snapshot, then replay after its position.
	data, pos, ok, err := c.LoadSnapshot()
	if err != nil || !ok || pos != 8 || string(data) != "s8" {
		t.Fatalf("LoadSnapshot = %q %d %v %v", data, pos, ok, err)
	}
	got := replayAll(t, c, pos)
	if len(got) != 7 || got[0].pos != 9 || got[0].r.Seq != 9 || got[6].pos != 15 {
		t.Fatalf("replay after snapshot: %+v", got)
	}
	if got := replayAll(t, c, 6); len(got) != 9 {
		t.Fatalf("replay after prune point: %d records, want 9", len(got))
	}
	if err := c.Replay(5, func(uint64, Record) error { t.Fatal("fn called"); return nil }); !errors.Is(err, ErrPruned) {
		t.Fatalf("Replay before the prune point: %v, want ErrPruned", err)
	}
	// Index entries of pruned records are gone, the others remain.
	if n := countKeys(t, db, indexPrefix(c.prefix, "a")); n != 4 {
		t.Fatalf("%d index entries for origin a, want 4 (seqs 7..10)", n)
	}
	if n := countKeys(t, db, kindKey(c.prefix, kindLog, 0)); n != 9 {
		t.Fatalf("%d log records, want 9", n)
	}
	if m, _ := c.MaxSeq("a"); m != 10 {
		t.Fatalf("MaxSeq after prune = %d, want 10", m)
	}
	// A pruned record re-delivered is still a duplicate: it is covered by the
	// snapshot, so Append reports the prune point and stores nothing.
	if p := mustAppend(t, c, rec("a", 3)); p != 6 {
		t.Fatalf("re-delivered pruned record: pos %d, want prune point 6", p)
	}
	if p, _ := c.LastPos(); p != 15 {
		t.Fatalf("LastPos %d after duplicate, want 15", p)
	}
	// Range serves what is left and reports the pruned part.
	recs, err := rangeAll(t, c, "a", 1, math.MaxUint64)
	if !errors.Is(err, ErrPruned) || len(recs) != 4 || recs[0].Seq != 7 {
		t.Fatalf("Range over pruned seqs: %d records, %v", len(recs), err)
	}
	if recs, err := rangeAll(t, c, "a", 7, 10); err != nil || len(recs) != 4 {
		t.Fatalf("Range(7,10): %d %v", len(recs), err)
	}

	// A late record below the pruned seqs of its origin, never stored
	// before, is stored (not mistaken for a pruned one).
	mustAppend(t, c, rec("c", 5)) // pos 16
	if err := c.SaveSnapshot([]byte("s16"), 16); err != nil {
		t.Fatal(err)
	}
	if err := c.Prune(16); err != nil {
		t.Fatal(err)
	}
	if p := mustAppend(t, c, rec("c", 3)); p != 17 {
		t.Fatalf("late gap fill: pos %d, want 17 (stored)", p)
	}
	if p := mustAppend(t, c, rec("c", 5)); p != 16 {
		t.Fatalf("pruned c5 again: pos %d, want 16", p)
	}
	// Pruning everything keeps positions monotonic.
	if err := c.SaveSnapshot([]byte("s17"), 17); err != nil {
		t.Fatal(err)
	}
	if err := c.Prune(1000); err != nil { // clamped to the last position
		t.Fatal(err)
	}
	if got := replayAll(t, c, 17); len(got) != 0 {
		t.Fatalf("log not empty: %+v", got)
	}
	if p, _ := c.LastPos(); p != 17 {
		t.Fatalf("LastPos after full prune = %d, want 17", p)
	}
	if p := mustAppend(t, c, rec("d", 1)); p != 18 {
		t.Fatalf("position after full prune = %d, want 18 (never reused)", p)
	}
	if err := c.Prune(3); err != nil {
		t.Fatalf("pruning less than already pruned: %v", err)
	}
}

func countKeys(t *testing.T, db *DB, prefix []byte) int {
	t.Helper()
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: append(slices.Clone(prefix), 0xff)})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for valid := it.First(); valid; valid = it.Next() {
		n++
	}
	return n
}

func TestRange(t *testing.T) {
	db := openT(t, memOptions())
	c := db.Clone("chat/1")
	// Interleaved origins, out-of-order arrival.
	mustAppend(t, c, rec("x", 3), rec("y", 1), rec("x", 1))
	mustAppend(t, c, rec("x", 2), rec("y", 2), rec("x", 5))
	got, err := rangeAll(t, c, "x", 0, math.MaxUint64)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, r := range got {
		if r.Origin != "x" || string(r.Data) != string(payload("x", r.Seq)) {
			t.Fatalf("bad record %+v", r)
		}
		seqs = append(seqs, r.Seq)
	}
	if !slices.Equal(seqs, []uint64{1, 2, 3, 5}) {
		t.Fatalf("Range(x) seqs %v, want [1 2 3 5] in seq order", seqs)
	}
	if got, _ := rangeAll(t, c, "x", 2, 3); len(got) != 2 || got[0].Seq != 2 || got[1].Seq != 3 {
		t.Fatalf("Range(x,2,3) = %+v", got)
	}
	if got, _ := rangeAll(t, c, "x", 4, 4); len(got) != 0 {
		t.Fatalf("never-stored seq returned: %+v", got)
	}
	if got, _ := rangeAll(t, c, "x", 3, 1); len(got) != 0 {
		t.Fatalf("empty range returned %+v", got)
	}
	if got, _ := rangeAll(t, c, "xy", 1, 10); len(got) != 0 {
		t.Fatalf("origin prefix leaked: %+v", got)
	}
	stop := errors.New("stop")
	n := 0
	err = c.Range("x", 1, 10, func(Record) error {
		n++
		return stop
	})
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("fn error not propagated: %v after %d calls", err, n)
	}
}

func TestDropAndClones(t *testing.T) {
	db := openT(t, memOptions())
	a, b := db.Clone("s/1"), db.Clone("s/10")
	mustAppend(t, a, rec("o", 1), rec("o", 2))
	mustAppend(t, b, rec("o", 1))
	if err := a.SaveSnapshot([]byte("snap"), 2); err != nil {
		t.Fatal(err)
	}
	if err := a.PutMeta("k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := db.Clone("s/2").PutMeta("only-meta", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if ids, _ := db.Clones(); !slices.Equal(ids, []string{"s/1", "s/10", "s/2"}) {
		t.Fatalf("Clones = %v", ids)
	}
	if err := a.Drop(); err != nil {
		t.Fatal(err)
	}
	if ids, _ := db.Clones(); !slices.Equal(ids, []string{"s/10", "s/2"}) {
		t.Fatalf("Clones after Drop = %v", ids)
	}
	if _, _, ok, _ := a.LoadSnapshot(); ok {
		t.Fatal("snapshot survived Drop")
	}
	if m, _ := a.MaxSeq("o"); m != 0 {
		t.Fatalf("MaxSeq after Drop = %d", m)
	}
	if _, ok, _ := a.GetMeta("k"); ok {
		t.Fatal("meta survived Drop")
	}
	if p := mustAppend(t, a, rec("o", 1)); p != 1 {
		t.Fatalf("Append after Drop at %d, want 1", p)
	}
	if got := replayAll(t, b, 0); len(got) != 1 {
		t.Fatalf("Drop of s/1 touched s/10: %+v", got)
	}
}

func TestInvalidInput(t *testing.T) {
	db := openT(t, memOptions())
	ctx := context.Background()
	bad := db.Clone("")
	if _, err := bad.Append(ctx, rec("o", 1)); !errors.Is(err, ErrInvalidID) {
		t.Fatalf("empty clone id: %v", err)
	}
	if err := db.Clone(strings.Repeat("x", MaxIDLen+1)).Replay(0, nil); !errors.Is(err, ErrInvalidID) {
		t.Fatalf("long clone id: %v", err)
	}
	c := db.Clone("ok")
	for name, recs := range map[string][]Record{
		"none":        nil,
		"seq 0":       {{Origin: "o", Seq: 0}},
		"no origin":   {{Seq: 1}},
		"long origin": {{Origin: strings.Repeat("o", MaxIDLen+1), Seq: 1}},
		"one bad":     {rec("o", 1), {Origin: "o"}},
	} {
		if _, err := c.Append(ctx, recs...); !errors.Is(err, ErrInvalidRecord) {
			t.Errorf("%s: %v, want ErrInvalidRecord", name, err)
		}
	}
	if got := replayAll(t, c, 0); len(got) != 0 {
		t.Fatalf("rejected Append stored %d records", len(got))
	}
	if err := c.PutMeta("", nil); !errors.Is(err, ErrInvalidID) {
		t.Fatalf("empty meta key: %v", err)
	}
	if _, err := c.MaxSeq(""); !errors.Is(err, ErrInvalidID) {
		t.Fatalf("empty origin: %v", err)
	}

	for name, mod := range map[string]func(*Options){
		"no dir":            func(o *Options) { o.Dir = "" },
		"bad policy":        func(o *Options) { o.Sync = 9 },
		"interval zero":     func(o *Options) { o.Sync, o.SyncInterval = SyncInterval, 0 },
		"interval huge":     func(o *Options) { o.Sync, o.SyncInterval = SyncInterval, time.Hour*2 },
		"negative interval": func(o *Options) { o.SyncInterval = -1 },
		"zero records":      func(o *Options) { o.MaxBatchRecords = 0 },
		"zero bytes":        func(o *Options) { o.MaxBatchBytes = 0 },
	} {
		o := DefaultOptions("d")
		mod(&o)
		if err := o.Validate(); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%s: Validate = %v", name, err)
		}
		if _, err := Open(o); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%s: Open = %v", name, err)
		}
	}
	if err := DefaultOptions("d").Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	if err := InMemoryOptions().Validate(); err != nil {
		t.Fatalf("in-memory preset invalid: %v", err)
	}
	for _, p := range []SyncPolicy{SyncAlways, SyncInterval, SyncNone} {
		if q, err := ParseSyncPolicy(p.String()); err != nil || q != p {
			t.Errorf("ParseSyncPolicy(%q) = %v %v", p.String(), q, err)
		}
	}
	if _, err := ParseSyncPolicy("sometimes"); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("ParseSyncPolicy: %v", err)
	}
}

// TestConcurrentAppendsCoalesce runs many appenders on the real disk, where
// an fsync takes long enough for requests to pile up: the committer must
// serve them with far fewer commits and fsyncs than Appends, and every record
// must be stored exactly once, in each appender's order.
func TestConcurrentAppendsCoalesce(t *testing.T) {
	db := openT(t, DefaultOptions(t.TempDir()))
	const goroutines, perG, clones = 64, 20, 8
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Go(func() {
			c := db.Clone(fmt.Sprintf("svc/%d", g%clones))
			origin := fmt.Sprintf("g%d", g)
			for s := uint64(1); s <= perG; s++ {
				if _, err := c.Append(context.Background(), rec(origin, s)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	st := db.Stats()
	t.Logf("stats: %+v", st)
	const appends = goroutines * perG
	if st.Appends != appends || st.Records != appends {
		t.Fatalf("appends=%d records=%d, want %d", st.Appends, st.Records, appends)
	}
	if st.Commits >= appends || st.MeanBatchOps <= 1 {
		t.Fatalf("no group commit: %d commits for %d appends (mean batch %.2f)", st.Commits, appends, st.MeanBatchOps)
	}
	if st.WALSyncs >= appends {
		t.Fatalf("%d WAL fsyncs for %d appends: syncs were not shared", st.WALSyncs, appends)
	}
	for i := 0; i < clones; i++ {
		c := db.Clone(fmt.Sprintf("svc/%d", i))
		got := replayAll(t, c, 0)
		if len(got) != appends/clones {
			t.Fatalf("clone %d: %d records, want %d", i, len(got), appends/clones)
		}
		last := map[string]uint64{}
		for j, pr := range got {
			if pr.pos != uint64(j+1) {
				t.Fatalf("clone %d: position %d at index %d: positions not dense", i, pr.pos, j)
			}
			if pr.r.Seq != last[pr.r.Origin]+1 {
				t.Fatalf("clone %d: origin %s seq %d after %d: appender order lost", i, pr.r.Origin, pr.r.Seq, last[pr.r.Origin])
			}
			last[pr.r.Origin] = pr.r.Seq
		}
	}
}

// TestCloseWhileAppending closes the DB under a stream of appends: every
// Append must return (nil or ErrClosed), Close must not hang, and every
// acknowledged record must be there after reopening.
func TestCloseWhileAppending(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(DefaultOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	const goroutines = 32
	acked := make([]atomic.Uint64, goroutines)
	var total atomic.Int64
	errs := make(chan error, goroutines)
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Go(func() {
			c := db.Clone(fmt.Sprintf("c/%d", g%4))
			origin := fmt.Sprintf("g%d", g)
			for s := uint64(1); ; s++ {
				if _, err := c.Append(context.Background(), rec(origin, s)); err != nil {
					errs <- err
					return
				}
				acked[g].Store(s)
				total.Add(1)
			}
		})
	}
	for total.Load() < 200 {
		time.Sleep(time.Millisecond)
	}
	closed := make(chan error, 1)
	go func() { closed <- db.Close() }()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("appenders hung after Close")
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	close(errs)
	for err := range errs {
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Append during Close returned %v, want ErrClosed", err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	c := db.Clone("c/0")
	if _, err := c.Append(context.Background(), rec("late", 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	if err := c.Replay(0, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Replay after Close: %v", err)
	}
	if _, err := db.Clones(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Clones after Close: %v", err)
	}
	if err := db.Sync(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Sync after Close: %v", err)
	}
	_ = db.Stats() // works after Close

	db2 := openT(t, DefaultOptions(dir))
	for g := 0; g < goroutines; g++ {
		checkContiguous(t, db2.Clone(fmt.Sprintf("c/%d", g%4)), fmt.Sprintf("g%d", g), acked[g].Load())
	}
}

// TestContextCancellation holds the committer to show both outcomes of a
// cancelled Append: cancelled while queued (nothing stored, ctx error) and
// cancelled after the committer took it (ErrInDoubt; here it is stored).
func TestContextCancellation(t *testing.T) {
	db := openT(t, memOptions())
	c := db.Clone("c")
	ctx := context.Background()

	pre, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Append(pre, rec("o", 9)); !errors.Is(err, context.Canceled) || errors.Is(err, ErrInDoubt) {
		t.Fatalf("pre-cancelled: %v", err)
	}

	entered, release := holdCommitter(db)

	ctx1, cancel1 := context.WithCancel(ctx)
	r1 := make(chan error, 1)
	go func() { _, err := c.Append(ctx1, rec("o", 1)); r1 <- err }()
	<-entered // the committer has taken record 1 and is held

	ctx2, cancel2 := context.WithCancel(ctx)
	r2 := make(chan error, 1)
	go func() { _, err := c.Append(ctx2, rec("o", 2)); r2 <- err }()
	waitQueued(db, 1)
	cancel2()
	if err := <-r2; !errors.Is(err, context.Canceled) || errors.Is(err, ErrInDoubt) {
		t.Fatalf("cancelled while queued: %v, want context.Canceled", err)
	}
	cancel1()
	if err := <-r1; !errors.Is(err, ErrInDoubt) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled while committing: %v, want ErrInDoubt wrapping context.Canceled", err)
	}
	release()
	mustAppend(t, c, rec("other", 1)) // goes through the committer after the held group
	if m, _ := c.MaxSeq("o"); m != 1 {
		t.Fatalf("MaxSeq(o) = %d: want record 1 stored (taken before cancel), record 2 and 9 not", m)
	}
	if got, _ := rangeAll(t, c, "o", 1, 10); len(got) != 1 {
		t.Fatalf("stored %+v", got)
	}
}

func TestReopenOnDisk(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(DefaultOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	a, b := db.Clone("cart/1"), db.Clone("chat/1")
	for s := uint64(1); s <= 20; s++ {
		mustAppend(t, a, rec("cart/1", s))
	}
	mustAppend(t, b, rec("chat/1", 1), rec("chat/2", 1))
	if err := a.SaveSnapshot([]byte("cart@15"), 15); err != nil {
		t.Fatal(err)
	}
	if err := a.Prune(10); err != nil {
		t.Fatal(err)
	}
	if err := b.PutMeta("members", []byte("3")); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db2 := openT(t, DefaultOptions(dir))
	if ids, err := db2.Clones(); err != nil || !slices.Equal(ids, []string{"cart/1", "chat/1"}) {
		t.Fatalf("Clones after reopen = %v %v", ids, err)
	}
	a2, b2 := db2.Clone("cart/1"), db2.Clone("chat/1")
	data, pos, ok, err := a2.LoadSnapshot()
	if err != nil || !ok || pos != 15 || string(data) != "cart@15" {
		t.Fatalf("snapshot after reopen: %q %d %v %v", data, pos, ok, err)
	}
	if got := replayAll(t, a2, pos); len(got) != 5 || got[0].pos != 16 {
		t.Fatalf("replay after reopen: %+v", got)
	}
	if err := a2.Replay(3, func(uint64, Record) error { return nil }); !errors.Is(err, ErrPruned) {
		t.Fatalf("prune point lost on reopen: %v", err)
	}
	if p := mustAppend(t, a2, rec("cart/1", 5)); p != 10 {
		t.Fatalf("pruned record after reopen: pos %d, want prune point 10", p)
	}
	if p := mustAppend(t, a2, rec("cart/1", 21)); p != 21 {
		t.Fatalf("position after reopen %d, want 21", p)
	}
	if v, ok, _ := b2.GetMeta("members"); !ok || string(v) != "3" {
		t.Fatalf("meta after reopen: %q %v", v, ok)
	}
	checkContiguous(t, b2, "chat/2", 1)
}

func TestCorruptStoredData(t *testing.T) {
	db := openT(t, memOptions())
	c := db.Clone("c")
	mustAppend(t, c, rec("o", 1), rec("o", 2), rec("o", 3))
	// Damage record 2 behind the store's back.
	if err := db.pdb.Set(logKey(c.prefix, 2), []byte("garbage"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	var seen []uint64
	err := c.Replay(0, func(pos uint64, _ Record) error { seen = append(seen, pos); return nil })
	if !errors.Is(err, ErrCorrupt) || !slices.Equal(seen, []uint64{1}) {
		t.Fatalf("Replay over corrupt record: %v after %v", err, seen)
	}
	if _, err := rangeAll(t, c, "o", 1, 3); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Range over corrupt record: %v", err)
	}
	// Index pointing at the wrong record.
	if err := db.pdb.Set(indexKey(c.prefix, "o", 3), encodePos(1), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if _, err := rangeAll(t, c, "o", 3, 3); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Range over mismatched index: %v", err)
	}
	// Corrupt snapshot (the header names generation 3).
	if err := c.SaveSnapshot([]byte("s"), 3); err != nil {
		t.Fatal(err)
	}
	if err := db.pdb.Set(snapChunkKey(c.prefix, 3, 0), []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := c.LoadSnapshot(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("LoadSnapshot: %v", err)
	}
	// A valid snapshot value under the wrong generation.
	if err := db.pdb.Set(snapChunkKey(c.prefix, 3, 0), encodeSnapshot(2, []byte("s")), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := c.LoadSnapshot(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("LoadSnapshot of a mislabelled generation: %v", err)
	}
	// A chunked snapshot is refused by LoadSnapshot, not misread.
	if err := db.pdb.Set(snapChunkKey(c.prefix, 3, 0), encodeSnapshot(3, []byte("header")), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.pdb.Set(snapChunkKey(c.prefix, 3, 1), encodeSnapshot(3, []byte("chunk 1")), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := c.LoadSnapshot(); !errors.Is(err, ErrIncompatible) {
		t.Fatalf("LoadSnapshot of a chunked snapshot: %v", err)
	}
	// A hole in the chunks is corrupt.
	if err := db.pdb.Set(snapChunkKey(c.prefix, 3, 3), encodeSnapshot(3, []byte("chunk 3")), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	_, _, chunks, err := c.SnapshotChunks()
	if err != nil {
		t.Fatal(err)
	}
	var chunkErr error
	for _, err := range chunks {
		chunkErr = errors.Join(chunkErr, err)
	}
	if !errors.Is(chunkErr, ErrCorrupt) {
		t.Fatalf("SnapshotChunks with chunk 2 missing: %v", chunkErr)
	}
	// Corrupt bookkeeping of a clone the committer has not loaded yet: its
	// writes fail cleanly, other clones are unaffected.
	d := db.Clone("d")
	if err := db.pdb.Set(headerKey(d.prefix), []byte("xx"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Append(context.Background(), rec("o", 1)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Append to clone with corrupt header: %v", err)
	}
	if _, err := d.LastPos(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("LastPos: %v", err)
	}
	e := db.Clone("e")
	if err := db.pdb.Set(originKey(e.prefix, "bad"), []byte{1}, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Append(context.Background(), rec("good", 1), rec("bad", 1)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Append with corrupt origin state: %v", err)
	}
	if got := replayAll(t, e, 0); len(got) != 0 {
		t.Fatalf("failed Append left %d records", len(got))
	}
	if p := mustAppend(t, db.Clone("f"), rec("o", 1)); p != 1 {
		t.Fatalf("healthy clone: pos %d", p)
	}
}

func TestIncompatibleDirectory(t *testing.T) {
	fs := vfs.NewMem()
	pdb, err := pebble.Open("db", &pebble.Options{FS: fs, Logger: pebbleLogger{zap.NewNop().Sugar()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := pdb.Set([]byte("foreign"), []byte("data"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := pdb.Close(); err != nil {
		t.Fatal(err)
	}
	o := DefaultOptions("db")
	o.FS = fs
	if _, err := Open(o); !errors.Is(err, ErrIncompatible) {
		t.Fatalf("Open over foreign data: %v, want ErrIncompatible", err)
	}
}

// TestUpgradeFormat1 opens a format-1 database (snapshots inside the clone
// range) and finds its snapshots moved to the snapshot range, everything else
// intact, and the marker rewritten; an unknown marker is refused.
func TestUpgradeFormat1(t *testing.T) {
	o := memOptions()
	db, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	a, b := db.Clone("cart/1"), db.Clone("cart/2")
	mustAppend(t, a, rec("o", 1), rec("o", 2), rec("o", 3))
	mustAppend(t, b, rec("o", 1))
	if err := a.SaveSnapshot([]byte("a@2"), 2); err != nil {
		t.Fatal(err)
	}
	if err := a.Prune(2); err != nil {
		t.Fatal(err)
	}
	// Rewrite it as format 1 would have stored it.
	lo, hi := snapBounds(a.prefix)
	for _, err := range []error{
		db.pdb.DeleteRange(lo, hi, pebble.Sync),
		db.pdb.Set(legacySnapKey(a.prefix), encodeSnapshot(2, []byte("a@2")), pebble.Sync),
		db.pdb.Set(formatKey, formatValueV1, pebble.Sync),
		db.Close(),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}

	db = openT(t, o)
	a, b = db.Clone("cart/1"), db.Clone("cart/2")
	if data, pos, ok, err := a.LoadSnapshot(); err != nil || !ok || pos != 2 || string(data) != "a@2" {
		t.Fatalf("snapshot after upgrade: %q %d %v %v", data, pos, ok, err)
	}
	if _, _, ok, err := b.LoadSnapshot(); ok || err != nil {
		t.Fatalf("clone without snapshot: %v %v", ok, err)
	}
	if n := countKeys(t, db, legacySnapKey(a.prefix)); n != 0 {
		t.Fatalf("%d format-1 snapshot keys left", n)
	}
	if got := replayAll(t, a, 2); len(got) != 1 || got[0].pos != 3 {
		t.Fatalf("replay after upgrade: %+v", got)
	}
	if p := mustAppend(t, a, rec("o", 1)); p != 2 {
		t.Fatalf("pruned duplicate after upgrade: pos %d, want prune point 2", p)
	}
	v, closer, err := db.pdb.Get(formatKey)
	if err != nil || string(v) != string(formatValue) {
		t.Fatalf("marker after upgrade: %q %v", v, err)
	}
	_ = closer.Close()

	if err := db.pdb.Set(formatKey, []byte("tempest-persistence-9"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(o); !errors.Is(err, ErrIncompatible) || !strings.Contains(err.Error(), "tempest-persistence-9") {
		t.Fatalf("Open with an unknown marker: %v, want ErrIncompatible naming it", err)
	}
}

// TestSnapshotRangeHoldsOneGeneration checks the snapshot key range: a new
// snapshot replaces the previous generation in the same batch, nothing of it
// lands in the clone range, and Drop empties it.
func TestSnapshotRangeHoldsOneGeneration(t *testing.T) {
	db := openT(t, memOptions())
	c := db.Clone("cart/1")
	mustAppend(t, c, rec("o", 1), rec("o", 2))
	for _, pos := range []uint64{1, 2, 2} {
		if err := c.SaveSnapshot([]byte(fmt.Sprintf("s@%d", pos)), pos); err != nil {
			t.Fatal(err)
		}
	}
	lo, _ := snapBounds(c.prefix)
	if n := countKeys(t, db, lo); n != 1 {
		t.Fatalf("%d snapshot keys after three saves, want 1", n)
	}
	if n := countKeys(t, db, legacySnapKey(c.prefix)); n != 0 {
		t.Fatalf("snapshot written inside the clone range")
	}
	if data, pos, ok, err := c.LoadSnapshot(); err != nil || !ok || pos != 2 || string(data) != "s@2" {
		t.Fatalf("LoadSnapshot = %q %d %v %v", data, pos, ok, err)
	}
	if err := c.Drop(); err != nil {
		t.Fatal(err)
	}
	if n := countKeys(t, db, lo); n != 0 {
		t.Fatalf("%d snapshot keys after Drop", n)
	}
	if _, _, ok, err := c.LoadSnapshot(); ok || err != nil {
		t.Fatalf("snapshot after Drop: %v %v", ok, err)
	}
}
