package actors_test

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tempestrt/tempest/actors"
	"github.com/tempestrt/tempest/examples/cart"
	"github.com/tempestrt/tempest/persistence"
)

// These tests hold one op-log write of a clone at the moment it is submitted
// (persistence.TestHooks.BeforeQueue), let the clone go on, and take a
// crash image of the disk while the write is held. A clone's writes must
// reach its log in the order it issued them, so whatever the crash image
// holds must be a consistent prefix of the clone's history.

// crashNode starts a cart-only node on fs with the given hooks.
func crashNode(t *testing.T, fs vfs.FS, clones int, hooks *persistence.TestHooks, mutate ...func(*actors.Config)) *actors.Node {
	t.Helper()
	return startNode(t, "db", append([]func(*actors.Config){func(cfg *actors.Config) {
		cfg.Services = []*actors.Service{cart.Service()}
		cfg.Clones = clones
		cfg.Persistence.FS = fs
		cfg.Persistence.Hooks = hooks
	}}, mutate...)...)
}

// appendHold's hooks hold the first append of a clone's own op with
// sequence number seq, until release is closed. held is closed when the
// hold starts and heldClone names the clone.
type appendHold struct {
	seq       uint64
	once      atomic.Bool
	held      chan struct{}
	release   chan struct{}
	heldClone atomic.Value // string
	snapshots chan string  // clones that submitted a snapshot while holding
}

func newAppendHold(seq uint64) *appendHold {
	return &appendHold{seq: seq, held: make(chan struct{}), release: make(chan struct{}), snapshots: make(chan string, 64)}
}

func (h *appendHold) hooks() *persistence.TestHooks {
	return &persistence.TestHooks{BeforeQueue: func(w persistence.WriteInfo) {
		switch w.Kind {
		case persistence.WriteSnapshot:
			if c, ok := h.heldClone.Load().(string); ok && c == w.Clone {
				select {
				case h.snapshots <- w.Clone:
				default:
				}
			}
		case persistence.WriteAppend:
			for _, r := range w.Records {
				if r.Origin == w.Clone && r.Seq == h.seq && h.once.CompareAndSwap(false, true) {
					h.heldClone.Store(w.Clone)
					close(h.held)
					<-h.release
					return
				}
			}
		}
	}}
}

// addAsync calls cart/add in a goroutine and returns a channel with its error.
func addAsync(n *actors.Node, user, item string, budget time.Duration, wg *sync.WaitGroup) <-chan error {
	done := make(chan error, 1)
	body, _ := json.Marshal(cart.AddRequest{User: user, Item: item, Qty: 1})
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, err := n.Call(context.Background(), "cart", "add", body, budget)
		done <- err
	}()
	return done
}

// ownSeqs reads the crash image's op log of clone and returns the seqs of
// its own records.
func ownSeqs(t *testing.T, fs vfs.FS, clone string) []uint64 {
	t.Helper()
	o := persistence.DefaultOptions("db")
	o.FS = fs
	db, err := persistence.Open(o)
	if err != nil {
		t.Fatalf("open crash image: %v", err)
	}
	defer db.Close()
	var seqs []uint64
	err = db.Clone(clone).Replay(0, func(_ uint64, r persistence.Record) error {
		if r.Origin == clone {
			seqs = append(seqs, r.Seq)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("replay %s: %v", clone, err)
	}
	return seqs
}

// TestOwnOpsReachTheLogInSeqOrder: a clone's op seq 1 is held before it
// reaches the committer; a later update of the same clone (seq 2) must not
// become durable and acknowledged before it. After a crash, the clone's own
// seqs in its log must be 1..k with no hole, and every acknowledged update
// must be there.
func TestOwnOpsReachTheLogInSeqOrder(t *testing.T) {
	fs := vfs.NewCrashableMem()
	h := newAppendHold(1)
	n := crashNode(t, fs, 1, h.hooks())
	var wg sync.WaitGroup
	first := addAsync(n, "alice", "held", 2*time.Second, &wg)
	select {
	case <-h.held:
	case err := <-first:
		t.Fatalf("first add answered before its append was held: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("the first append was never submitted")
	}
	second := <-addAsync(n, "bob", "later", 300*time.Millisecond, &wg)
	crashed := fs.CrashClone(vfs.CrashCloneCfg{})
	close(h.release)
	wg.Wait()
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}

	clone := h.heldClone.Load().(string)
	seqs := ownSeqs(t, crashed, clone)
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("after the crash %s's own ops in its log are %v: seq %d is missing although a later one is durable (second add answered %v)", clone, seqs, i+1, second)
		}
	}
	if second == nil {
		// Acknowledged: it must survive the crash.
		n2 := crashNode(t, crashed, 1, nil)
		v := mustCall[cart.View](t, n2, "cart", "get", cart.GetRequest{User: "bob"})
		if v.Items["later"] != 1 {
			t.Fatalf("acknowledged add lost after the crash: bob's cart is %v", v.Items)
		}
	}
}

// TestSnapshotNeverOvertakesAnOwnOp: a clone's op seq 2 is held before it
// reaches the committer while the clone keeps running and snapshots every
// op. A snapshot written before that op is durable would hold an op that no
// log has and no peer can ever get. After a crash and restart from the image,
// every clone must converge.
func TestSnapshotNeverOvertakesAnOwnOp(t *testing.T) {
	fs := vfs.NewCrashableMem()
	h := newAppendHold(2)
	n := crashNode(t, fs, 2, h.hooks(), func(c *actors.Config) { c.SnapshotEvery = 1 })
	var wg sync.WaitGroup
	// Add until one clone issues its second op, which is then held.
	for i := 0; ; i++ {
		select {
		case <-h.held:
		default:
			if i > 100 {
				t.Fatal("no clone issued a second op in 100 adds")
			}
			done := addAsync(n, "carol", string(rune('a'+i%26)), 300*time.Millisecond, &wg)
			select {
			case <-done:
			case <-h.held:
			}
			continue
		}
		break
	}
	// Give the held clone's heartbeat ticks the chance to snapshot.
	select {
	case <-h.snapshots:
	case <-time.After(300 * time.Millisecond):
	}
	crashed := fs.CrashClone(vfs.CrashCloneCfg{})
	close(h.release)
	wg.Wait()
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}

	n2 := crashNode(t, crashed, 2, nil)
	waitConverged(t, n2, "cart", 3*time.Second)
}

// TestFullOpLogQueueRefusesUpdatesAtOnce: while the disk does not keep up
// (the committer is held), a clone's op-log queue fills; further updates
// are refused 503 overloaded at once — while the committer is still held —
// and queries still answer. When the disk resumes, the queued updates are
// acknowledged.
func TestFullOpLogQueueRefusesUpdatesAtOnce(t *testing.T) {
	var holding atomic.Bool
	release := make(chan struct{})
	hooks := &persistence.TestHooks{BeforeCommit: func() {
		if holding.Load() {
			<-release
		}
	}}
	n := crashNode(t, vfs.NewMem(), 1, hooks, func(c *actors.Config) { c.OpLogQueue = 2 })
	holding.Store(true)
	var wg sync.WaitGroup
	queued := []<-chan error{addAsync(n, "dave", "a", 5*time.Second, &wg)}
	// The first add's group may already be in the committer (held there);
	// add until the queue reports full.
	var refused error
	for i := 0; i < 10 && refused == nil; i++ {
		done := addAsync(n, "dave", string(rune('b'+i)), 5*time.Second, &wg)
		select {
		case err := <-done:
			refused = err
		case <-time.After(200 * time.Millisecond):
			queued = append(queued, done) // queued behind the held commit
		}
	}
	if e := actors.AsError(refused); e == nil || e.Status != 503 || e.Code != "overloaded" {
		t.Fatalf("update with the op-log queue full: got %v, want 503 overloaded while the disk is held", refused)
	}
	if len(queued) > 3 {
		t.Fatalf("%d updates queued before a refusal, with OpLogQueue 2", len(queued))
	}
	mustCall[cart.View](t, n, "cart", "get", cart.GetRequest{User: "dave"}) // queries unaffected
	var full uint64
	for _, c := range n.Status().Clones {
		full += c.OpLogFull
	}
	if full == 0 {
		t.Fatal("status oplog_full = 0 after a refusal")
	}
	close(release)
	holding.Store(false)
	for i, done := range queued {
		if err := <-done; err != nil {
			t.Fatalf("queued update %d: %v", i, err)
		}
	}
	wg.Wait()
}
