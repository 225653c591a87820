package persistence

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// completion is one Writer callback, in the order the callbacks ran.
type completion struct {
	what string
	pos  uint64
	err  error
}

type completions struct {
	mu  sync.Mutex
	got []completion
}

func (c *completions) cb(what string) func(uint64, error) {
	return func(pos uint64, err error) {
		c.mu.Lock()
		c.got = append(c.got, completion{what, pos, err})
		c.mu.Unlock()
	}
}

// holdCommitter makes the committer wait before building each group until
// release is closed; entered receives a value each time it waits.
func holdCommitter(db *DB) (entered chan struct{}, release func()) {
	entered = make(chan struct{}, 16)
	ch := make(chan struct{})
	hook := func() {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-ch
	}
	db.testHookCommit.Store(&hook)
	return entered, func() { db.testHookCommit.Store(nil); close(ch) }
}

// waitQueued waits until n writes wait in the committer's queue.
func waitQueued(db *DB, n int) {
	for {
		db.mu.Lock()
		queued := len(db.queue)
		db.mu.Unlock()
		if queued >= n {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// TestWriterKeepsOrderAndSnapshotCoversWhatPrecedesIt: appends, a snapshot
// and more appends submitted through one Writer, while another clone's
// writes interleave, complete in submission order; the snapshot covers
// exactly the records submitted before it; the Writer's records share group
// commits with the other clone's.
func TestWriterKeepsOrderAndSnapshotCoversWhatPrecedesIt(t *testing.T) {
	db := openT(t, memOptions())
	c, other := db.Clone("c"), db.Clone("other")
	w := c.NewWriter(1000)
	var got completions

	entered, release := holdCommitter(db)
	if err := w.Append([]Record{rec("o", 1)}, got.cb("a1")); err != nil {
		t.Fatal(err)
	}
	<-entered // the committer holds a group with a1; the rest queues up
	otherDone := make(chan error, 1)
	go func() { _, err := other.Append(t.Context(), rec("x", 1)); otherDone <- err }()
	waitQueued(db, 1)
	for i := uint64(2); i <= 5; i++ {
		if err := w.Append([]Record{rec("o", i)}, got.cb(fmt.Sprint("a", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Snapshot([]byte("state after 5"), got.cb("snap")); err != nil {
		t.Fatal(err)
	}
	for i := uint64(6); i <= 8; i++ {
		if err := w.Append([]Record{rec("o", i)}, got.cb(fmt.Sprint("a", i))); err != nil {
			t.Fatal(err)
		}
	}
	if p := w.Pending(); p != 9 {
		t.Fatalf("Pending = %d with 8 records and a snapshot submitted, want 9", p)
	}
	commitsBefore := db.Stats().Commits
	release()
	w.Wait()
	if err := <-otherDone; err != nil {
		t.Fatal(err)
	}
	if p := w.Pending(); p != 0 {
		t.Fatalf("Pending = %d after Wait", p)
	}
	want := []string{"a1", "a2", "a3", "a4", "a5", "snap", "a6", "a7", "a8"}
	if len(got.got) != len(want) {
		t.Fatalf("completions %+v, want %v", got.got, want)
	}
	var last uint64
	for i, g := range got.got {
		if g.what != want[i] || g.err != nil {
			t.Fatalf("completion %d is %+v, want %s without error (all: %+v)", i, g, want[i], got.got)
		}
		if g.pos < last {
			t.Fatalf("completion %s at position %d after position %d", g.what, g.pos, last)
		}
		last = g.pos
	}
	data, pos, ok, err := c.LoadSnapshot()
	if err != nil || !ok || string(data) != "state after 5" {
		t.Fatalf("LoadSnapshot = %q, %d, %v, %v", data, pos, ok, err)
	}
	if pos != got.got[4].pos {
		t.Fatalf("snapshot covers position %d, want %d (the fifth record's)", pos, got.got[4].pos)
	}
	after := replayAll(t, c, pos)
	if len(after) != 3 || after[0].r.Seq != 6 {
		t.Fatalf("records after the snapshot: %+v, want seqs 6..8", after)
	}
	if commits := db.Stats().Commits - commitsBefore; commits > 2 {
		t.Fatalf("%d group commits for the queued writes of two clones; want them grouped (<= 2: the held one and one more)", commits)
	}
}

// TestWriterBreaksAtFirstFailure: a write that fails in the committer fails
// every later write of the same Writer (none stored, so no hole), while other
// clones' writes go on.
func TestWriterBreaksAtFirstFailure(t *testing.T) {
	db := openT(t, memOptions())
	c := db.Clone("c")
	w := c.NewWriter(1000)
	var got completions

	entered, release := holdCommitter(db)
	if err := w.Append([]Record{rec("o", 1)}, got.cb("a1")); err != nil {
		t.Fatal(err)
	}
	<-entered
	// Prune without a snapshot covering it fails in the committer.
	if err := w.Prune(1, got.cb("prune")); err != nil {
		t.Fatal(err)
	}
	if err := w.Append([]Record{rec("o", 2)}, got.cb("a2")); err != nil {
		t.Fatal(err)
	}
	release()
	w.Wait()
	if len(got.got) != 3 || got.got[0].err != nil || !errors.Is(got.got[1].err, ErrNotCovered) {
		t.Fatalf("completions %+v: want a1 stored, prune failing with ErrNotCovered", got.got)
	}
	if !errors.Is(got.got[2].err, ErrWriterBroken) || !errors.Is(got.got[2].err, ErrNotCovered) {
		t.Fatalf("append behind the failed prune: %v, want ErrWriterBroken wrapping the cause", got.got[2].err)
	}
	if m, _ := c.MaxSeq("o"); m != 1 {
		t.Fatalf("MaxSeq = %d: the append behind the failure must not be stored", m)
	}
	if err := w.Append([]Record{rec("o", 3)}, got.cb("a3")); !errors.Is(err, ErrWriterBroken) {
		t.Fatalf("Append on a broken Writer = %v, want ErrWriterBroken", err)
	}
	// A new Writer (the clone reloaded) works.
	w2 := c.NewWriter(10)
	if err := w2.Append([]Record{rec("o", 2)}, got.cb("again")); err != nil {
		t.Fatal(err)
	}
	w2.Wait()
	if g := got.got[len(got.got)-1]; g.what != "again" || g.err != nil {
		t.Fatalf("new Writer: %+v", g)
	}
}

// TestWriterFullAndClosed: Full reports the bound; a Writer on a closed DB
// refuses at once and is broken.
func TestWriterFullAndClosed(t *testing.T) {
	db := openT(t, memOptions())
	w := db.Clone("c").NewWriter(3)
	entered, release := holdCommitter(db)
	var got completions
	if err := w.Append([]Record{rec("o", 1)}, got.cb("a1")); err != nil {
		t.Fatal(err)
	}
	<-entered
	if w.Full() {
		t.Fatal("Full with 1 of 3 pending")
	}
	if err := w.Append([]Record{rec("o", 2), rec("o", 3)}, got.cb("a2")); err != nil {
		t.Fatal(err)
	}
	if !w.Full() {
		t.Fatalf("not Full with %d of 3 pending", w.Pending())
	}
	release()
	w.Wait()
	if w.Full() || w.Pending() != 0 {
		t.Fatalf("after completion: Full %v, Pending %d", w.Full(), w.Pending())
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Append([]Record{rec("o", 4)}, got.cb("late")); !errors.Is(err, ErrClosed) || !errors.Is(err, ErrWriterBroken) {
		t.Fatalf("Append after Close = %v, want ErrWriterBroken wrapping ErrClosed", err)
	}
	if len(got.got) != 2 {
		t.Fatalf("callbacks %+v: the refused append must not call back", got.got)
	}
}
