package persistence

import (
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"
)

// SyncPolicy says when the write-ahead log is fsynced, and therefore what an
// acknowledged Append can lose. The package documentation states the losses
// of each policy precisely; this is a summary.
type SyncPolicy int

const (
	// SyncAlways (the default) fsyncs every group commit before any Append
	// in it returns. Nothing acknowledged is lost on a process crash or a
	// power loss.
	SyncAlways SyncPolicy = iota
	// SyncInterval hands every group commit to pebble's WAL writer at once
	// (it normally reaches the OS page cache within microseconds) and fsyncs
	// at most once per Options.SyncInterval. A process crash usually loses
	// nothing and at most the last ~100 ms; a power loss loses up to one
	// interval (plus one fsync) of acknowledged Appends.
	SyncInterval
	// SyncNone never fsyncs on its own and leaves recent WAL bytes in a
	// 32 KiB buffer inside the process. Even a process crash (kill -9) can
	// lose acknowledged Appends; a power loss can lose everything since
	// pebble last synced on its own (WAL rotation, Close, DB.Sync).
	SyncNone
)

// String returns "always", "interval" or "none".
func (p SyncPolicy) String() string {
	switch p {
	case SyncAlways:
		return "always"
	case SyncInterval:
		return "interval"
	case SyncNone:
		return "none"
	}
	return fmt.Sprintf("SyncPolicy(%d)", int(p))
}

// ParseSyncPolicy parses the names String returns ("always", "interval",
// "none"), as used by command-line flags.
func ParseSyncPolicy(s string) (SyncPolicy, error) {
	switch s {
	case "always":
		return SyncAlways, nil
	case "interval":
		return SyncInterval, nil
	case "none":
		return SyncNone, nil
	}
	return 0, fmt.Errorf("%w: unknown sync policy %q (want always, interval or none)", ErrInvalidOptions, s)
}

// Defaults used by DefaultOptions. They are variables so that tests and
// tools can shrink or grow them.
var (
	// DefaultSyncInterval is the fsync period of SyncInterval: 10 ms.
	DefaultSyncInterval = 10 * time.Millisecond
	// DefaultMaxBatchRecords caps the records of one group commit: 4096.
	DefaultMaxBatchRecords = 4096
	// DefaultMaxBatchBytes caps the encoded bytes of one group commit:
	// 1 MiB, well below pebble's large-batch threshold (half the 32 MiB
	// memtable, see pebble.go), above which a batch is flushed as its own
	// memtable.
	DefaultMaxBatchBytes = 1 << 20
	// DefaultStateApplyPerGroup: 512 items, under a millisecond of a
	// group commit.
	DefaultStateApplyPerGroup = 512
)

// Options configures a DB. Start from DefaultOptions or InMemoryOptions and
// change fields; Open calls Validate.
type Options struct {
	// Dir is the directory of the node's pebble database; it is created if
	// missing. Required.
	Dir string
	// FS is the file system. Nil means the real disk (vfs.Default). Tests
	// pass vfs.NewMem() or vfs.NewCrashableMem() to simulate crashes.
	FS vfs.FS
	// Sync is the fsync policy. Default SyncAlways.
	Sync SyncPolicy
	// SyncInterval is, under SyncInterval only, the minimum time between
	// two WAL fsyncs; a write is fsynced at most this long after it was
	// acknowledged (plus the fsync itself). Must be > 0 and <= 1 minute when
	// Sync is SyncInterval; ignored otherwise. Default 10 ms.
	SyncInterval time.Duration
	// MaxBatchRecords caps how many records (an Append counts its records,
	// other writes count 1) one group commit takes from the queue. A single
	// larger Append still goes through, alone. Must be >= 1. Default 4096.
	MaxBatchRecords int
	// MaxBatchBytes caps the encoded bytes one group commit takes from the
	// queue; a single larger write still goes through, alone. Must be in
	// [1, 1 GiB]. Default 1 MiB.
	MaxBatchBytes int
	// CacheBytes is the size of pebble's block cache. 0 means
	// DefaultCacheBytes (64 MiB).
	CacheBytes int64
	// StateApplyPerGroup is how many items of an ended delta state one
	// group commit applies to the stored state (see state.go): the rest
	// go in the next groups, so that no commit carries all of a delta's
	// items (a 10,000-item delta in one batch held every clone's writes
	// for ~18 ms: BenchmarkStateDeltaEnd). 0 means
	// DefaultStateApplyPerGroup.
	StateApplyPerGroup int
	// Logger receives pebble's messages and the store's own. Nil means
	// zap.NewNop().
	Logger *zap.Logger
	// Hooks are for tests only: they hold or observe writes at a precise
	// point. Nil in production.
	Hooks *TestHooks
}

// TestHooks let tests hold or observe writes. They are not for production
// use: a hook runs on the hot path of every write.
type TestHooks struct {
	// BeforeQueue runs in the goroutine that submits a write, just before
	// the write is queued for the committer. A hook that blocks holds that
	// write; writes through a Writer queue behind it in submission order.
	BeforeQueue func(WriteInfo)
	// BeforeCommit runs in the committer goroutine before it builds each
	// group commit. A hook that blocks holds every write of the DB.
	BeforeCommit func()
}

// WriteKind names a kind of write in WriteInfo.
type WriteKind string

// Kinds of writes.
const (
	WriteAppend   WriteKind = "append"
	WriteSnapshot WriteKind = "snapshot"
	WritePrune    WriteKind = "prune"
	WriteOther    WriteKind = "other"
)

// WriteInfo describes a write to TestHooks.BeforeQueue.
type WriteInfo struct {
	Clone   string
	Kind    WriteKind
	Records []RecordID // the appended records, for WriteAppend
}

// RecordID identifies a record: its origin and per-origin sequence number.
type RecordID struct {
	Origin string
	Seq    uint64
}

// DefaultOptions returns the production preset for a database in dir:
// SyncAlways, group commits of up to 4096 records / 1 MiB.
func DefaultOptions(dir string) Options {
	return Options{
		Dir:             dir,
		Sync:            SyncAlways,
		SyncInterval:    DefaultSyncInterval,
		MaxBatchRecords: DefaultMaxBatchRecords,
		MaxBatchBytes:   DefaultMaxBatchBytes,
	}
}

// InMemoryOptions returns DefaultOptions on a fresh in-memory file system
// (vfs.NewMem): nothing survives the process, fsync costs nothing. Meant for
// tests of packages that need a DB.
func InMemoryOptions() Options {
	o := DefaultOptions("tempest-data")
	o.FS = vfs.NewMem()
	return o
}

// Validate reports the first invalid field, wrapped in ErrInvalidOptions.
func (o Options) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidOptions}, args...)...)
	}
	switch {
	case o.Dir == "":
		return bad("Dir is empty")
	case o.Sync < SyncAlways || o.Sync > SyncNone:
		return bad("unknown Sync policy %d", int(o.Sync))
	case o.Sync == SyncInterval && (o.SyncInterval <= 0 || o.SyncInterval > time.Minute):
		return bad("SyncInterval %v out of (0, 1m]", o.SyncInterval)
	case o.SyncInterval < 0:
		return bad("SyncInterval %v is negative", o.SyncInterval)
	case o.MaxBatchRecords < 1:
		return bad("MaxBatchRecords %d < 1", o.MaxBatchRecords)
	case o.MaxBatchBytes < 1 || o.MaxBatchBytes > 1<<30:
		return bad("MaxBatchBytes %d out of [1, 1 GiB]", o.MaxBatchBytes)
	case o.CacheBytes < 0:
		return bad("CacheBytes %d is negative", o.CacheBytes)
	case o.StateApplyPerGroup < 0:
		return bad("StateApplyPerGroup %d is negative", o.StateApplyPerGroup)
	}
	return nil
}
