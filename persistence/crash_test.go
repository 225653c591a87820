package persistence

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Crash tests use pebble's crash-simulating memory FS. fs.CrashClone returns
// the file system as it could look after a power loss at that instant: all
// fsynced data, plus (with UnsyncedDataPercent > 0) a random subset of the
// unsynced 4 KiB blocks and directory entries. UnsyncedDataPercent: 100 keeps
// everything written to the "OS", which is what survives a process crash.

func crashOptions(fs vfs.FS, p SyncPolicy) Options {
	o := DefaultOptions("db")
	o.FS = fs
	o.Sync = p
	return o
}

// countStored reopens a crashed FS and returns how many of origin's records
// 1..n are present (checking they form a prefix with correct payloads).
func countStored(t *testing.T, fs vfs.FS, clone, origin string, n uint64) uint64 {
	t.Helper()
	db, err := Open(crashOptions(fs, SyncAlways))
	if err != nil {
		t.Fatalf("reopen after crash: %v", err)
	}
	defer db.Close()
	got, err := rangeAll(t, db.Clone(clone), origin, 1, n)
	if err != nil {
		t.Fatalf("Range after crash: %v", err)
	}
	for i, r := range got {
		if r.Seq != uint64(i+1) || string(r.Data) != string(payload(origin, r.Seq)) {
			t.Fatalf("after crash: record %d is %+v: not a prefix of the acknowledged ones", i, r)
		}
	}
	return uint64(len(got))
}

// TestCrashSyncAlwaysKeepsAcknowledged crashes the FS while 16 goroutines
// append to 4 clones: every Append that returned nil before the crash must
// be present afterwards, with or without stray unsynced blocks.
func TestCrashSyncAlwaysKeepsAcknowledged(t *testing.T) {
	for _, unsynced := range []int{0, 50} {
		t.Run(fmt.Sprintf("unsynced=%d%%", unsynced), func(t *testing.T) {
			seed := uint64(time.Now().UnixNano())
			t.Logf("seed %d", seed)
			fs := vfs.NewCrashableMem()
			db := openT(t, crashOptions(fs, SyncAlways))

			const goroutines = 16
			var mu sync.Mutex
			acked := make([]uint64, goroutines) // per goroutine: last acknowledged seq
			total := 0
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for g := 0; g < goroutines; g++ {
				wg.Go(func() {
					c := db.Clone(fmt.Sprintf("c/%d", g%4))
					for s := uint64(1); ; s++ {
						select {
						case <-stop:
							return
						default:
						}
						if _, err := c.Append(context.Background(), rec(fmt.Sprintf("g%d", g), s)); err != nil {
							t.Error(err)
							return
						}
						mu.Lock()
						acked[g] = s
						total++
						mu.Unlock()
					}
				})
			}
			for {
				mu.Lock()
				n := total
				mu.Unlock()
				if n >= 400 {
					break
				}
				time.Sleep(time.Millisecond)
			}
			// Crash while appends are in flight. Holding mu freezes the
			// acknowledged set: an Append acknowledged after this point may
			// or may not survive and is not checked.
			mu.Lock()
			before := append([]uint64(nil), acked...)
			crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: unsynced, RNG: rand.New(rand.NewPCG(seed, seed))})
			mu.Unlock()
			close(stop)
			wg.Wait()

			db2, err := Open(crashOptions(crashed, SyncAlways))
			if err != nil {
				t.Fatalf("seed %d: reopen after crash: %v", seed, err)
			}
			defer db2.Close()
			for g, s := range before {
				checkContiguous(t, db2.Clone(fmt.Sprintf("c/%d", g%4)), fmt.Sprintf("g%d", g), s)
			}
		})
	}
}

// TestCrashSyncNone shows what the package doc says of SyncNone: an
// acknowledged Append is not even written to the OS (pebble keeps it in an
// in-process WAL buffer), so both a power loss and a process crash lose it;
// DB.Sync (or Close) makes everything durable.
func TestCrashSyncNone(t *testing.T) {
	fs := vfs.NewCrashableMem()
	db := openT(t, crashOptions(fs, SyncNone))
	// Let pebble's WAL flusher finish the fsync Open asked for and go idle:
	// while it is still running it also writes whatever was buffered
	// meanwhile, which would blur the steady-state behaviour shown here.
	time.Sleep(200 * time.Millisecond)
	c := db.Clone("c")
	const n = 20
	for s := uint64(1); s <= n; s++ {
		mustAppend(t, c, rec("o", s))
	}
	time.Sleep(50 * time.Millisecond) // a flusher that wrote on its own would have done it by now
	power := countStored(t, fs.CrashClone(vfs.CrashCloneCfg{}), "c", "o", n)
	process := countStored(t, fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: rand.New(rand.NewPCG(1, 1))}), "c", "o", n)
	t.Logf("SyncNone: %d of %d acknowledged records survive a power loss, %d a process crash", power, n, process)
	if power == n {
		t.Fatalf("all %d unsynced records survived a power loss: the doc's loss claim for SyncNone is wrong", n)
	}
	if process == n {
		t.Fatalf("all %d records survived a process crash: pebble wrote NoSync commits to the OS at once; update the doc", n)
	}
	if err := db.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := countStored(t, fs.CrashClone(vfs.CrashCloneCfg{}), "c", "o", n); got != n {
		t.Fatalf("after DB.Sync: %d of %d records survive a power loss", got, n)
	}
	if st := db.Stats(); st.SyncedCommits != 0 {
		t.Fatalf("SyncNone requested %d fsyncs", st.SyncedCommits)
	}
}

// TestCrashSyncInterval: with a long interval, acknowledged Appends are not
// yet fsynced (a power loss loses them) but are already written to the OS (a
// process crash keeps them); Close does not wait for the interval; with a
// short interval they become durable on their own.
func TestCrashSyncInterval(t *testing.T) {
	const n = 20
	t.Run("long", func(t *testing.T) {
		fs := vfs.NewCrashableMem()
		o := crashOptions(fs, SyncInterval)
		o.SyncInterval = time.Minute
		db, err := Open(o)
		if err != nil {
			t.Fatal(err)
		}
		c := db.Clone("c")
		for s := uint64(1); s <= n; s++ {
			mustAppend(t, c, rec("o", s))
		}
		power := countStored(t, fs.CrashClone(vfs.CrashCloneCfg{}), "c", "o", n)
		if power == n {
			t.Fatalf("all %d records fsynced within a 1-minute interval", n)
		}
		// "Written at once": every group reaches the OS without waiting for
		// the interval, also when pebble's flusher missed its wake-ups (the
		// committer's nudges bound that to ~100 ms of idleness). Poll: the
		// flusher runs asynchronously.
		var process uint64
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			process = countStored(t, fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: rand.New(rand.NewPCG(1, 1))}), "c", "o", n)
			if process == n {
				break
			}
		}
		t.Logf("SyncInterval(1m): %d of %d survive a power loss, %d a process crash; pending syncs %d", power, n, process, db.Stats().PendingSyncs)
		if process < n {
			t.Fatalf("only %d of %d acknowledged records reached the OS within 2 s", process, n)
		}
		if db.Stats().WALNudges == 0 {
			t.Fatal("WALNudges = 0 after an idle period under SyncInterval")
		}
		if db.Stats().PendingSyncs == 0 {
			t.Fatal("PendingSyncs = 0 with unsynced commits")
		}
		start := time.Now()
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 30*time.Second {
			t.Fatalf("Close waited %v for the sync interval", d)
		}
		if p := db.Stats().PendingSyncs; p != 0 {
			t.Fatalf("PendingSyncs = %d after Close", p)
		}
		if got := countStored(t, fs.CrashClone(vfs.CrashCloneCfg{}), "c", "o", n); got != n {
			t.Fatalf("after Close: %d of %d durable", got, n)
		}
	})
	t.Run("short", func(t *testing.T) {
		fs := vfs.NewCrashableMem()
		o := crashOptions(fs, SyncInterval)
		o.SyncInterval = 5 * time.Millisecond
		db := openT(t, o)
		c := db.Clone("c")
		for s := uint64(1); s <= n; s++ {
			mustAppend(t, c, rec("o", s))
		}
		for deadline := time.Now().Add(10 * time.Second); db.Stats().PendingSyncs > 0; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d commits still unsynced after 10 s with a 5 ms interval", db.Stats().PendingSyncs)
			}
		}
		if got := countStored(t, fs.CrashClone(vfs.CrashCloneCfg{}), "c", "o", n); got != n {
			t.Fatalf("%d of %d records durable after their interval fsync", got, n)
		}
		mustAppend(t, c, rec("o", n+1))
		if err := db.Sync(); err != nil {
			t.Fatal(err)
		}
		if got := countStored(t, fs.CrashClone(vfs.CrashCloneCfg{}), "c", "o", n+1); got != n+1 {
			t.Fatalf("DB.Sync under SyncInterval: %d of %d durable", got, n+1)
		}
	})
}

// TestCrashSnapshotMetaPruneDurable: the other writes are group-committed
// with the same guarantee as Append under SyncAlways.
func TestCrashSnapshotMetaPruneDurable(t *testing.T) {
	fs := vfs.NewCrashableMem()
	db := openT(t, crashOptions(fs, SyncAlways))
	c := db.Clone("c")
	for s := uint64(1); s <= 10; s++ {
		mustAppend(t, c, rec("o", s))
	}
	if err := c.SaveSnapshot([]byte("snap@8"), 8); err != nil {
		t.Fatal(err)
	}
	if err := c.Prune(8); err != nil {
		t.Fatal(err)
	}
	if err := c.PutMeta("k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := db.Clone("gone").PutMeta("k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := db.Clone("gone").Drop(); err != nil {
		t.Fatal(err)
	}
	db2, err := Open(crashOptions(fs.CrashClone(vfs.CrashCloneCfg{}), SyncAlways))
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	c2 := db2.Clone("c")
	data, pos, ok, err := c2.LoadSnapshot()
	if err != nil || !ok || pos != 8 || string(data) != "snap@8" {
		t.Fatalf("snapshot after crash: %q %d %v %v", data, pos, ok, err)
	}
	if got := replayAll(t, c2, pos); len(got) != 2 || got[0].pos != 9 {
		t.Fatalf("log after crash: %+v", got)
	}
	if err := c2.Replay(0, func(uint64, Record) error { return nil }); err == nil {
		t.Fatal("prune lost in crash")
	}
	if v, ok, _ := c2.GetMeta("k"); !ok || string(v) != "v" {
		t.Fatal("meta lost in crash")
	}
	if ids, _ := db2.Clones(); len(ids) != 1 || ids[0] != "c" {
		t.Fatalf("Clones after crash = %v (Drop lost?)", ids)
	}
}
