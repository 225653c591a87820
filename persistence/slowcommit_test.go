package persistence

import (
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// slowSyncFS delays every Sync of its WAL files: a disk whose fsync
// stalls.
type slowSyncFS struct {
	vfs.FS
	delay time.Duration
}

type slowSyncFile struct {
	vfs.File
	delay time.Duration
}

func (f slowSyncFile) Sync() error {
	time.Sleep(f.delay)
	return f.File.Sync()
}

func (f slowSyncFile) SyncData() error {
	time.Sleep(f.delay)
	return f.File.SyncData()
}

func (f slowSyncFile) SyncTo(length int64) (fullSync bool, err error) {
	time.Sleep(f.delay)
	return f.File.SyncTo(length)
}

func (fs slowSyncFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return slowSyncFile{File: f, delay: fs.delay}, nil
}

func (fs slowSyncFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	return fs.wrap(name, f, err)
}

func (fs slowSyncFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, category)
	return fs.wrap(newname, f, err)
}

// TestSlowCommitsCounted: a commit whose WAL fsync stalls is counted in
// Stats (SlowCommits, MaxCommitLatency), which is how a node's status tells
// a disk stall from its own work.
func TestSlowCommitsCounted(t *testing.T) {
	o := memOptions()
	o.FS = slowSyncFS{FS: o.FS, delay: 2 * SlowCommit}
	o.Sync = SyncAlways
	core, logs := observer.New(zap.WarnLevel)
	o.Logger = zap.New(core)
	db := openT(t, o)
	c := db.Clone("svc/1")
	before := db.Stats()
	mustAppend(t, c, rec("a", 1))
	mustAppend(t, c, rec("a", 2))
	st := db.Stats()
	if st.SlowCommits-before.SlowCommits < 2 || st.MaxCommitLatency < 2*SlowCommit {
		t.Fatalf("two commits with a %v fsync: slow commits %d (before %d), longest %v", 2*SlowCommit, st.SlowCommits, before.SlowCommits, st.MaxCommitLatency)
	}
	// Logged, once a second at most, with what pebble was doing.
	warned := logs.FilterMessage("slow group commit").All()
	if len(warned) != 1 {
		t.Fatalf("%d warnings of slow commits for two within a second, want 1: %v", len(warned), warned)
	}
	f := warned[0].ContextMap()
	if took, _ := f["took"].(time.Duration); took < 2*SlowCommit {
		t.Fatalf("slow commit warning %v: want took >= %v", f, 2*SlowCommit)
	}
	for _, k := range []string{"batch_bytes", "flushes_in_progress", "compactions_in_progress", "wal_created_ago"} {
		if _, ok := f[k]; !ok {
			t.Fatalf("slow commit warning %v: no %s", f, k)
		}
	}
}
