package actors_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/protobuf/proto"

	"github.com/tempestrt/tempest/actors"
	"github.com/tempestrt/tempest/collections"
	"github.com/tempestrt/tempest/examples/cart"
	"github.com/tempestrt/tempest/persistence"
	"github.com/tempestrt/tempest/proto/tempestpb"
)

// TestCrashMidSnapshotLosesNoAcknowledgedOp: a clone holding thousands of
// carts writes its snapshots (a full state, then deltas) as streams of
// small chunks, a slice per scheduler turn, while updates keep coming. The
// machine crashes (a crash image of the disk) in the middle of a delta,
// after some of its chunks and before its end. Restarted from the image,
// the clone must load (the previous state and the log, nothing of the
// partial delta) and hold every update acknowledged before the crash.
func TestCrashMidSnapshotLosesNoAcknowledgedOp(t *testing.T) {
	fs := vfs.NewCrashableMem()
	var (
		armed      atomic.Bool
		snapWrites atomic.Int64
		crashed    atomic.Pointer[vfs.MemFS]
		imaged     atomic.Bool
		imageTaken = make(chan struct{})
	)
	// Once armed (a full snapshot and two deltas after it are durable,
	// adds were acknowledged), the image is taken at the 10th snapshot
	// write: chunks of a delta some twenty chunks long, not its end.
	const crashAt = 10
	hooks := &persistence.TestHooks{BeforeQueue: func(w persistence.WriteInfo) {
		if w.Kind != persistence.WriteSnapshot || !armed.Load() {
			return
		}
		if snapWrites.Add(1) == crashAt {
			// imaged first: an add acknowledged while the image is being
			// taken may be missing from it, and must not be counted. One
			// acknowledged before imaged is set was durable before.
			imaged.Store(true)
			crashed.Store(fs.CrashClone(vfs.CrashCloneCfg{}))
			close(imageTaken)
		}
	}}
	chunked := func(c *actors.Config) {
		c.SnapshotEvery = 300
		c.SnapshotChunkItems = 16
		c.SnapshotChunkBytes = 2048
		c.SnapshotSlice = 20 * time.Microsecond
	}
	n := crashNode(t, fs, 1, hooks, chunked)

	// Thousands of carts, loaded in batches.
	const carts = 4000
	loadCarts(t, n, carts)
	deadline := time.Now().Add(10 * time.Second)
	for n.Status().Clones[0].LastSnapshot == nil {
		if time.Now().After(deadline) {
			t.Fatal("no snapshot durable 10 s after the bulk load")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Status tells what the snapshot cost, and pebble's own figures.
	st := n.Status()
	ls := st.Clones[0].LastSnapshot
	if ls.Items < 300 || ls.Chunks < ls.Items/16 || ls.Bytes <= 0 || ls.MaxTurnUs <= 0 || ls.DurationMs <= 0 {
		t.Fatalf("status of the last snapshot %+v: want its items, chunks (<= 16 items each), bytes and times", ls)
	}
	if ls.MaxTurnCPUUs <= 0 || ls.CPUMs <= 0 || ls.CPUMs > ls.BusyMs*1.01+0.1 {
		t.Fatalf("status of the last snapshot %+v: want its turns' CPU time, at most their wall time", ls)
	}
	if bt := st.Clones[0].BackgroundTurns; bt.Turns < int64(ls.Turns) || bt.MaxWallUs < ls.MaxTurnUs || bt.MaxCPUUs <= 0 {
		t.Fatalf("status background_turns %+v: want at least the last snapshot's %d turns, longest %d µs", bt, ls.Turns, ls.MaxTurnUs)
	}
	if st.Pebble == nil || st.Pebble.MemtableBytes == 0 {
		t.Fatalf("status has no pebble figures: %+v", st.Pebble)
	}
	if st.Clones[0].Items < carts || st.Memory.Items < carts || st.Memory.BytesPerItem <= 0 {
		t.Fatalf("status items %d, memory %+v: want the %d carts counted", st.Clones[0].Items, st.Memory, carts)
	}
	if m := st.Memory; m.ColdItems > 0 && (m.ColdArenaLiveBytes < int64(m.KeyValueBytesPerColdItem*float64(m.ColdItems)) || m.ColdArenaBytes < m.ColdArenaLiveBytes) {
		t.Fatalf("status memory %+v: want the cold items' arena, at least their keys and values", m)
	}
	// Single adds until the image is taken; those acknowledged before it
	// must survive. The image is armed after the first 100.
	var (
		mu      sync.Mutex
		mustHas = map[string]int64{}
	)
	for i := 0; ; i++ {
		select {
		case <-imageTaken:
		case <-time.After(0):
			if i > 20000 {
				t.Fatalf("no crash image after %d adds (%d snapshot writes)", i, snapWrites.Load())
			}
			user := fmt.Sprintf("u%d", i%carts)
			body, _ := json.Marshal(cart.AddRequest{User: user, Item: "late", Qty: 1})
			if _, err := n.Call(t.Context(), "cart", "add", body, 2*time.Second); err == nil && !imaged.Load() {
				mu.Lock()
				mustHas[user]++
				mu.Unlock()
			}
			if i%50 == 0 && !armed.Load() {
				if ls := n.Status().Clones[0].LastSnapshot; ls != nil && ls.Deltas >= 2 {
					armed.Store(true)
				}
			}
			continue
		}
		break
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	image := crashed.Load()

	// The image holds a state, last written by a delta.
	{
		o := persistence.DefaultOptions("db")
		o.FS = image
		db, err := persistence.Open(o)
		if err != nil {
			t.Fatal(err)
		}
		st, ok, err := db.Clone("cart/1").OpenState()
		if err != nil || !ok {
			t.Fatalf("crash image: state %v %v", ok, err)
		}
		items := 0
		for _, err := range st.Items() {
			if err != nil {
				t.Fatalf("crash image: reading the state at %d: %v", st.Pos(), err)
			}
			items++
		}
		hdr := &tempestpb.SnapshotHeader{}
		if err := proto.Unmarshal(st.Header(), hdr); err != nil {
			t.Fatal(err)
		}
		t.Logf("crash image: a state at %d of %d items, last written by a delta: %v", st.Pos(), items, hdr.GetDelta())
		if items < 500 || !hdr.GetDelta() {
			t.Fatalf("the stored state has %d items, last written by a delta: %v: want carts (500 a batch), and deltas", items, hdr.GetDelta())
		}
		if err := errors.Join(st.Close(), db.Close()); err != nil {
			t.Fatal(err)
		}
	}

	n2 := crashNode(t, image, 1, nil, chunked)
	t.Logf("restarted from the image: loaded %+v, applied %d", n2.Status().Clones[0].Loaded, n2.Status().Clones[0].Applied)
	for u := 0; u < carts; u += 97 {
		user := fmt.Sprintf("u%d", u)
		v := mustCall[cart.View](t, n2, "cart", "get", cart.GetRequest{User: user})
		if v.Items["base"] != 1 {
			t.Fatalf("after the crash %s's cart is %v: the bulk load is lost", user, v.Items)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(mustHas) == 0 {
		t.Fatal("no add was acknowledged before the crash image: the test checked nothing")
	}
	for user, want := range mustHas {
		v := mustCall[cart.View](t, n2, "cart", "get", cart.GetRequest{User: user})
		if v.Items["late"] < want {
			t.Fatalf("after the crash %s has %d late adds, %d were acknowledged before it", user, v.Items["late"], want)
		}
	}
}

// TestRestartLoadsTheStateAndReplaysLittle: a clone of thousands of carts
// keeps taking single adds; its snapshots are a full state, then deltas of
// the few hundred carts changed since the previous one. A restart loads
// the state and replays only the log after its last delta (fewer ops than
// SnapshotEvery, whatever the state's size), and every acknowledged add is
// there. Status says how the clone loaded.
func TestRestartLoadsTheStateAndReplaysLittle(t *testing.T) {
	fs := vfs.NewMem()
	const every = 300
	small := func(c *actors.Config) {
		c.SnapshotEvery = every
		c.SnapshotChunkItems = 16
		c.SnapshotChunkBytes = 2048
	}
	n := crashNode(t, fs, 1, nil, small)
	const carts = 3000
	loadCarts(t, n, carts)
	adds := map[string]int64{}
	add := func(i int) {
		user := fmt.Sprintf("u%d", (i*7)%carts)
		mustCall[cart.View](t, n, "cart", "add", cart.AddRequest{User: user, Item: "late", Qty: 1})
		adds[user]++
	}
	// The deltas that count come after the bulk load: those of the load
	// hold its batches.
	loaded := 0
	if ls := n.Status().Clones[0].LastSnapshot; ls != nil {
		loaded = ls.Deltas
	}
	i := 0
	for ; ; i++ {
		if i > 20*every {
			t.Fatalf("no three deltas after %d adds: last snapshot %+v", i, n.Status().Clones[0].LastSnapshot)
		}
		if ls := n.Status().Clones[0].LastSnapshot; ls != nil && ls.Deltas >= loaded+3 && !n.Status().Clones[0].SnapshotInProgress {
			// A snapshot begins at the first tick after `every` ops: a
			// delta holds those and the few that came before the tick,
			// not the state.
			if !ls.Delta || ls.Items > 2*every || ls.StateItems < carts {
				t.Fatalf("last snapshot %+v: want a delta of about the %d carts changed since the previous one, to a state of all %d carts", ls, every, carts)
			}
			break
		}
		add(i)
	}
	for range every / 2 { // a log after the state to replay
		add(i)
		i++
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}

	n2 := crashNode(t, fs, 1, nil, small)
	ld := n2.Status().Clones[0].Loaded
	if ld == nil || ld.SnapshotParts != 1 || ld.SnapshotItems < carts || ld.ReplayedOps == 0 || ld.ReplayedOps > 2*every {
		t.Fatalf("loaded %+v: want a state (>= %d items), then a log of less than %d ops", ld, carts, 2*every)
	}
	for u := 0; u < carts; u += 37 {
		user := fmt.Sprintf("u%d", u)
		v := mustCall[cart.View](t, n2, "cart", "get", cart.GetRequest{User: user})
		if v.Items["base"] != 1 || v.Items["late"] != adds[user] {
			t.Fatalf("after the restart %s's cart is %v, want base 1, late %d", user, v.Items, adds[user])
		}
	}
}

// loadCarts gives carts u0 .. u(carts-1) one "base" item each, through
// cart/addmany in batches of 500 (carts a multiple of 500).
func loadCarts(t *testing.T, n *actors.Node, carts int) {
	t.Helper()
	for lo := 0; lo < carts; lo += 500 {
		var req cart.AddManyRequest
		for i := lo; i < lo+500; i++ {
			req.Adds = append(req.Adds, cart.AddRequest{User: fmt.Sprintf("u%d", i), Item: "base", Qty: 1})
		}
		mustCall[cart.AddManyResponse](t, n, "cart", "addmany", req)
	}
}

// TestSnapshotPacing: with a small snapshot CPU share the snapshot's slices
// wait for the node's budget between them (status paced_ms) and the
// snapshot still completes; with a share of 1 nothing waits.
func TestSnapshotPacing(t *testing.T) {
	for _, tc := range []struct {
		share      float64
		wantPacing bool
	}{{0.05, true}, {1, false}} {
		t.Run(fmt.Sprint(tc.share), func(t *testing.T) {
			n := crashNode(t, vfs.NewMem(), 1, nil, func(c *actors.Config) {
				c.SnapshotEvery = 1000
				c.SnapshotChunkItems = 16
				c.SnapshotSlice = 50 * time.Microsecond
				c.SnapshotCPUShare = tc.share
				c.SnapshotBurst = 0
			})
			loadCarts(t, n, 3000)
			deadline := time.Now().Add(20 * time.Second)
			var ls *actors.SnapshotInfo
			for ls == nil || ls.Items < 1000 {
				if time.Now().After(deadline) {
					t.Fatalf("no snapshot of 1000+ items durable 20 s after the load (last: %+v)", ls)
				}
				time.Sleep(10 * time.Millisecond)
				ls = n.Status().Clones[0].LastSnapshot
			}
			if ls.Turns < 2 {
				t.Fatalf("snapshot of %d items in %d turns: want several slices", ls.Items, ls.Turns)
			}
			if paced := ls.PacedMs > 0; paced != tc.wantPacing {
				t.Fatalf("share %v: paced %v ms over %d turns (busy %v ms), want pacing %v", tc.share, ls.PacedMs, ls.Turns, ls.BusyMs, tc.wantPacing)
			}
		})
	}
}

// TestIdleClonesTidy: items a bulk load left as Go objects go to the cold
// tables once the load stops, while nothing else happens. The store tidies
// in proportion to the ops it applies, and not while a snapshot stream is
// open, which during a bulk load of a large state is most of the time: the
// items changed then stayed hot until the next load (measured: 39% of the
// item-replicas of a 100,000-cart node, 189 B per item against 99 cold).
// Only the current change window (the next delta's members, at most the
// ops since the last snapshot began) may stay hot.
func TestIdleClonesTidy(t *testing.T) {
	n := crashNode(t, vfs.NewMem(), 1, nil, func(c *actors.Config) {
		c.SnapshotEvery = 1000
		c.SnapshotChunkItems = 16
		c.SnapshotSlice = 50 * time.Microsecond
		c.SnapshotCPUShare = 0.05 // snapshots open for most of the load
		c.SnapshotBurst = 0
	})
	const carts = 20000
	loadCarts(t, n, carts)
	deadline := time.Now().Add(10 * time.Second)
	for {
		cs := n.Status().Clones[0]
		hot := cs.Items - cs.ColdItems
		if cs.Items == carts && hot <= 2*1000 && !cs.SnapshotInProgress {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("10 s after the load: %d items, %d of them hot (want at most 2000: the change window); snapshot in progress %v",
				cs.Items, hot, cs.SnapshotInProgress)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRestartFromAChain: a clone whose stored snapshot is a chain of
// chunks (a full snapshot and a delta, as format 3 wrote them) loads it and
// the log after it, and its next snapshot is a full state that replaces
// the chain; a restart then loads the state. Nothing acknowledged is lost
// on the way.
func TestRestartFromAChain(t *testing.T) {
	fs := vfs.NewMem()
	// The chain, written by the store a cart clone would have.
	{
		o := persistence.DefaultOptions("db")
		o.FS = fs
		db, err := persistence.Open(o)
		if err != nil {
			t.Fatal(err)
		}
		st, err := collections.NewStore(collections.Config{Service: "cart", Replica: "cart/1"})
		if err != nil {
			t.Fatal(err)
		}
		carts := collections.NewMap[string, map[string]int64](st, "carts")
		st.SetOrigins([]string{"cart/1"})
		w := db.Clone("cart/1").NewWriter(1 << 20)
		var errs []error
		cb := func(_ uint64, err error) {
			if err != nil {
				errs = append(errs, err)
			}
		}
		put := func(lo, hi int, item string) {
			ops, err := st.Update(func() error {
				for i := lo; i < hi; i++ {
					carts.Put(fmt.Sprintf("u%d", i), map[string]int64{item: 1})
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			var recs []persistence.Record
			for _, op := range ops {
				b, err := proto.Marshal(op)
				if err != nil {
					t.Fatal(err)
				}
				recs = append(recs, persistence.Record{Origin: op.GetOrigin(), Seq: op.GetSeq(), Data: b})
			}
			if err := w.Append(recs, cb); err != nil {
				t.Fatal(err)
			}
		}
		snapshot := func(delta bool) {
			s, err := st.BeginSnapshot(collections.SnapshotStreamOptions{Delta: delta, ChunkItems: 16})
			if err != nil || s.Delta() != delta {
				t.Fatalf("snapshot stream: delta %v, want %v: %v", s.Delta(), delta, err)
			}
			hdr, _ := proto.Marshal(s.Header())
			begin := w.SnapshotBegin
			if delta {
				begin = w.SnapshotDeltaBegin
			}
			if err := begin(hdr, cb); err != nil {
				t.Fatal(err)
			}
			for {
				chunk, last, err := s.Next(0, 0)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := proto.Marshal(chunk)
				if err := w.SnapshotChunk(b, cb); err != nil {
					t.Fatal(err)
				}
				if last {
					break
				}
			}
			if err := w.SnapshotEnd(cb); err != nil {
				t.Fatal(err)
			}
		}
		put(0, 500, "base")
		snapshot(false)
		put(0, 100, "late")
		snapshot(true)
		put(100, 150, "late") // the log after the chain
		w.Wait()
		if err := errors.Join(append(errs, db.Close())...); err != nil {
			t.Fatal(err)
		}
	}
	check := func(n *actors.Node) {
		t.Helper()
		for u := 0; u < 500; u += 7 {
			v := mustCall[cart.View](t, n, "cart", "get", cart.GetRequest{User: fmt.Sprintf("u%d", u)})
			want := map[string]int64{"base": 1}
			if u < 150 {
				want = map[string]int64{"late": 1}
			}
			if !maps.Equal(v.Items, want) {
				t.Fatalf("u%d's cart is %v, want %v", u, v.Items, want)
			}
		}
	}
	small := func(c *actors.Config) { c.SnapshotEvery = 50 }
	n := crashNode(t, fs, 1, nil, small)
	if ld := n.Status().Clones[0].Loaded; ld == nil || ld.SnapshotParts != 2 || ld.SnapshotItems != 600 || ld.ReplayedOps != 50 {
		t.Fatalf("loaded %+v: want a chain of 2 parts (500 + 100 items), then 50 ops", ld)
	}
	check(n)
	extra := int64(0)
	add := func() {
		mustCall[cart.View](t, n, "cart", "add", cart.AddRequest{User: "extra", Item: "x", Qty: 1})
		extra++
	}
	for i := 0; n.Status().Clones[0].LastSnapshot == nil; i++ {
		if i > 1000 {
			t.Fatal("no snapshot after 1000 adds")
		}
		add()
	}
	if ls := n.Status().Clones[0].LastSnapshot; ls.Delta || ls.StateItems < 500 {
		t.Fatalf("first snapshot after a chain: %+v, want a full state", ls)
	}
	for range 5 {
		add() // the log after the state
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	n = crashNode(t, fs, 1, nil, small)
	if ld := n.Status().Clones[0].Loaded; ld == nil || ld.SnapshotParts != 1 || ld.SnapshotItems < 500 || ld.ReplayedOps < 5 {
		t.Fatalf("loaded %+v: want the state, then the log", ld)
	}
	check(n)
	if v := mustCall[cart.View](t, n, "cart", "get", cart.GetRequest{User: "extra"}); v.Items["x"] != extra {
		t.Fatalf("extra's cart %v, want x: %d", v.Items, extra)
	}
}

// TestLazyRestartServesBeforeTheLoad: a clone restarted on a state of
// thousands of carts opens it lazily: it serves at once, reads and adds of
// carts not loaded yet fault them in and answer right, Len-like counts
// (status items) count the whole state, and the rest loads in the
// background, paced (a tiny CPU share here, so that the test sees it
// unfinished), until every cart is in memory. A second restart finds every
// add.
func TestLazyRestartServesBeforeTheLoad(t *testing.T) {
	fs := vfs.NewMem()
	const carts = 3000
	slow := func(c *actors.Config) {
		c.SnapshotEvery = 1000
		c.SnapshotCPUShare = 0.01 // 10 ms of CPU a second for snapshots and the load
		c.SnapshotBurst = time.Millisecond
		c.SnapshotSlice = 200 * time.Microsecond
	}
	n := crashNode(t, fs, 1, nil, func(c *actors.Config) { c.SnapshotEvery = 500 })
	loadCarts(t, n, carts)
	for i := 0; ; i++ { // a full state, then deltas, durable
		if ls := n.Status().Clones[0].LastSnapshot; ls != nil && ls.StateItems >= carts && !n.Status().Clones[0].SnapshotInProgress {
			break
		}
		if i > 2000 {
			t.Fatalf("no state of the %d carts: %+v", carts, n.Status().Clones[0].LastSnapshot)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}

	n = crashNode(t, fs, 1, nil, slow)
	st := n.Status().Clones[0]
	ld := st.Loaded
	if ld == nil || !ld.Lazy || ld.LoadDone || ld.SnapshotItems < carts || ld.EagerItems > carts/10 {
		t.Fatalf("loaded %+v: want the state opened lazily, its load not done", ld)
	}
	if st.Items < carts || st.ColdItems >= carts {
		t.Fatalf("status items %d (cold %d): want all %d carts counted, not all in memory", st.Items, st.ColdItems, carts)
	}
	adds := map[string]int64{}
	for u := 0; u < carts; u += 61 {
		user := fmt.Sprintf("u%d", u)
		if v := mustCall[cart.View](t, n, "cart", "get", cart.GetRequest{User: user}); v.Items["base"] != 1 {
			t.Fatalf("before the load: %s's cart is %v", user, v.Items)
		}
		if u%2 == 0 {
			user = fmt.Sprintf("u%d", u+1)
			mustCall[cart.View](t, n, "cart", "add", cart.AddRequest{User: user, Item: "late", Qty: 1})
			adds[user]++
		}
	}
	mustCall[cart.View](t, n, "cart", "add", cart.AddRequest{User: "brand-new", Item: "x", Qty: 2})
	if ld := n.Status().Clones[0].Loaded; ld.Faulted == 0 || ld.LoadDone {
		t.Fatalf("loaded %+v: want carts faulted in, the load still going", ld)
	}
	deadline := time.Now().Add(60 * time.Second)
	for ld := n.Status().Clones[0].Loaded; !ld.LoadDone; ld = n.Status().Clones[0].Loaded {
		if time.Now().After(deadline) {
			t.Fatalf("load not done after 60 s: %+v", ld)
		}
		time.Sleep(20 * time.Millisecond)
	}
	st = n.Status().Clones[0]
	if st.Items != carts+1 || st.Loaded.BackgroundItems+st.Loaded.Faulted+st.Loaded.EagerItems < carts {
		t.Fatalf("after the load: %d items, loaded %+v: want %d", st.Items, st.Loaded, carts+1)
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	n = crashNode(t, fs, 1, nil)
	for user, want := range adds {
		if v := mustCall[cart.View](t, n, "cart", "get", cart.GetRequest{User: user}); v.Items["late"] != want || v.Items["base"] != 1 {
			t.Fatalf("after a second restart %s's cart is %v, want late %d", user, v.Items, want)
		}
	}
	if v := mustCall[cart.View](t, n, "cart", "get", cart.GetRequest{User: "brand-new"}); v.Items["x"] != 2 {
		t.Fatalf("brand-new's cart is %v", v.Items)
	}
}
