package actors_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tempestrt/tempest/actors"
	"github.com/tempestrt/tempest/examples/cart"
	"github.com/tempestrt/tempest/persistence"
)

// TestCrashMidSnapshotLosesNoAcknowledgedOp: a clone holding thousands of
// carts writes its snapshot as a stream of small chunks, a slice per
// scheduler turn, while updates keep coming. The machine crashes (a crash
// image of the disk) in the middle of a snapshot, after some of its chunks
// and before its end. Restarted from the image, the clone must load (the
// previous snapshot and the log, not the partial one) and hold every
// update acknowledged before the crash.
func TestCrashMidSnapshotLosesNoAcknowledgedOp(t *testing.T) {
	fs := vfs.NewCrashableMem()
	var (
		armed      atomic.Bool
		snapWrites atomic.Int64
		crashed    atomic.Pointer[vfs.MemFS]
		imaged     atomic.Bool
		imageTaken = make(chan struct{})
	)
	// Once armed (a first snapshot is durable and adds were acknowledged),
	// the image is taken at the 20th snapshot write: chunks of a snapshot
	// a couple of hundred chunks long, not its end.
	const crashAt = 20
	hooks := &persistence.TestHooks{BeforeQueue: func(w persistence.WriteInfo) {
		if w.Kind != persistence.WriteSnapshot || !armed.Load() {
			return
		}
		if snapWrites.Add(1) == crashAt {
			crashed.Store(fs.CrashClone(vfs.CrashCloneCfg{}))
			imaged.Store(true)
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
	for lo := 0; lo < carts; lo += 500 {
		var req cart.AddManyRequest
		for i := lo; i < lo+500; i++ {
			req.Adds = append(req.Adds, cart.AddRequest{User: fmt.Sprintf("u%d", i), Item: "base", Qty: 1})
		}
		mustCall[cart.AddManyResponse](t, n, "cart", "addmany", req)
	}
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
	if st.Pebble == nil || st.Pebble.MemtableBytes == 0 {
		t.Fatalf("status has no pebble figures: %+v", st.Pebble)
	}
	if st.Clones[0].Items < carts || st.Memory.Items < carts || st.Memory.BytesPerItem <= 0 {
		t.Fatalf("status items %d, memory %+v: want the %d carts counted", st.Clones[0].Items, st.Memory, carts)
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
			if i == 100 {
				armed.Store(true)
			}
			continue
		}
		break
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	image := crashed.Load()

	// The image holds a complete chunked snapshot and a partial one.
	{
		o := persistence.DefaultOptions("db")
		o.FS = image
		db, err := persistence.Open(o)
		if err != nil {
			t.Fatal(err)
		}
		pos, ok, chunks, err := db.Clone("cart/1").SnapshotChunks()
		if err != nil || !ok {
			t.Fatalf("crash image: snapshot %v %v", ok, err)
		}
		count := 0
		for _, err := range chunks {
			if err != nil {
				t.Fatalf("crash image: reading the snapshot at %d: %v", pos, err)
			}
			count++
		}
		if count < 3 {
			t.Fatalf("the stored snapshot has %d chunks: not a chunked one", count)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}

	n2 := crashNode(t, image, 1, nil, chunked)
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
