package persistence

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
)

// DB is one node's store: a pebble database holding the op logs, snapshots
// and metadata of all clones on the node, each in its own key range.
//
// Writes (Append, SaveSnapshot, Prune, PutMeta, DeleteMeta, Drop) are queued
// and executed by a single committer goroutine, which takes whatever has
// queued up while the previous commit was running, turns it into one pebble
// batch and commits it with one WAL write (and, under SyncAlways, one
// fsync). That is group commit: under load one fsync serves many callers,
// and a caller waits at most about two fsyncs. The committer is also the
// only goroutine that assigns log positions and checks for duplicates, so
// those need no locks and cannot race.
//
// Reads (Replay, Range, MaxSeq, LoadSnapshot, GetMeta, LastPos, Clones) go
// straight to pebble from the caller's goroutine and see every write whose
// call has returned.
//
// A DB is safe for concurrent use. Close it exactly when done; Close waits for
// running reads, so it must not be called from inside a Replay or Range
// callback.
type DB struct {
	opts Options
	log  *zap.Logger
	pdb  *pebble.DB

	// fsyncs is pebble's histogram of WAL fsync latencies; its sample count is
	// the number of WAL fsyncs performed.
	fsyncs prometheus.Histogram

	mu      sync.Mutex
	idle    sync.Cond // signalled when refs drops to 0 after closing is set
	closing bool
	refs    int   // reads in progress
	queue   []*op // writes waiting for the committer
	wake    chan struct{}

	committerDone chan struct{}
	reap          chan reaped // SyncInterval: committed batches awaiting their fsync
	reaperDone    chan struct{}

	closeOnce sync.Once
	closeErr  error

	// cache is owned by the committer goroutine, and so is applying: the
	// clones with a delta state being applied (state.go).
	cache    map[string]*cloneCache
	applying map[string]bool

	// testHookCommit, if set, runs in the committer before each group is
	// built. Tests use it to hold the committer.
	testHookCommit atomic.Pointer[func()]

	st       counters
	stalls   *stallCounter // pebble's write stalls (PebbleMetrics)
	activity *diskActivity // pebble's background work, for slow commits' warnings
}

type counters struct {
	commits, ops, appends, records, dups, bytes, syncedCommits atomic.Uint64
	walNudges, pointReads                                      atomic.Uint64
	pendingSyncs                                               atomic.Int64
	lastLatency, totalLatency, maxLatency                      atomic.Int64
	slowCommits                                                atomic.Uint64
}

// Open opens (creating if needed) the database in o.Dir.
func Open(o Options) (*DB, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = zap.NewNop()
	}
	if o.FS == nil {
		o.FS = vfs.Default
	}
	stalls, activity := new(stallCounter), new(diskActivity)
	popts := pebbleOptions(o, log, stalls, activity)
	pdb, err := pebble.Open(o.Dir, popts)
	if err != nil {
		return nil, fmt.Errorf("persistence: open %s: %w", o.Dir, err)
	}
	if err := checkFormat(pdb, log); err != nil {
		return nil, errors.Join(err, pdb.Close())
	}
	db := &DB{
		opts:          o,
		log:           log,
		pdb:           pdb,
		stalls:        stalls,
		activity:      activity,
		fsyncs:        pdb.Metrics().LogWriter.FsyncLatency,
		wake:          make(chan struct{}, 1),
		committerDone: make(chan struct{}),
		cache:         make(map[string]*cloneCache),
		applying:      make(map[string]bool),
	}
	db.idle.L = &db.mu
	if o.Sync == SyncInterval {
		db.reap = make(chan reaped, 4096)
		db.reaperDone = make(chan struct{})
		go db.runReaper()
	}
	go db.runCommitter()
	log.Info("persistence opened", zap.String("dir", o.Dir), zap.Stringer("sync", o.Sync))
	return db, nil
}

// checkFormat writes the format marker into a new database, or verifies it,
// upgrading a format-1 database in place (upgradeV1) and a format-2 or -3
// one by rewriting its marker (their 18- and 26-byte clone headers still
// decode, as chains: see keys.go).
func checkFormat(pdb *pebble.DB, log *zap.Logger) error {
	v, closer, err := pdb.Get(formatKey)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		it, err := pdb.NewIter(nil)
		if err != nil {
			return err
		}
		nonEmpty := it.First()
		if err := errors.Join(it.Error(), it.Close()); err != nil {
			return err
		}
		if nonEmpty {
			return fmt.Errorf("%w: database has data but no format marker", ErrIncompatible)
		}
		return pdb.Set(formatKey, formatValue, pebble.Sync)
	case err != nil:
		return err
	}
	marker := bytes.Clone(v)
	_ = closer.Close()
	switch {
	case bytes.Equal(marker, formatValue):
		return nil
	case bytes.Equal(marker, formatValueV3), bytes.Equal(marker, formatValueV2):
		if err := pdb.Set(formatKey, formatValue, pebble.Sync); err != nil {
			return fmt.Errorf("persistence: upgrading format %s to 4: %w", marker[len(marker)-1:], err)
		}
		log.Info("persistence: upgraded the database to format 4 (marker only)", zap.ByteString("from", marker))
		return nil
	case bytes.Equal(marker, formatValueV1):
		if err := upgradeV1(pdb, log); err != nil {
			return fmt.Errorf("persistence: upgrading format 1 to 4: %w", err)
		}
		return nil
	}
	return fmt.Errorf("%w: format marker %q, want %q (or %q, %q or %q, which are upgraded)", ErrIncompatible, marker, formatValue, formatValueV3, formatValueV2, formatValueV1)
}

// upgradeV1 moves every clone's snapshot from its format-1 key inside the
// clone range to chunk 0 of its generation in the snapshot range (keys.go),
// and writes the current (format-4) marker, all in one synced batch: a crash
// leaves either format 1 untouched or format 4 complete (format 1's headers
// are format 2's, which format 4 reads). It reads one key per clone.
func upgradeV1(pdb *pebble.DB, log *zap.Logger) error {
	b := pdb.NewBatch()
	defer b.Close()
	it, err := pdb.NewIter(&pebble.IterOptions{LowerBound: []byte{tagClone}, UpperBound: []byte{tagClone + 1}})
	if err != nil {
		return err
	}
	moved := 0
	for valid := it.First(); valid; {
		p, err := decodeKey(it.Key())
		if err != nil {
			return errors.Join(err, it.Close())
		}
		prefix := clonePrefix(p.clone)
		if it.SeekGE(legacySnapKey(prefix)) && bytes.Equal(it.Key(), legacySnapKey(prefix)) {
			v, err := it.ValueAndErr()
			if err != nil {
				return errors.Join(err, it.Close())
			}
			pos, _, err := decodeSnapshot(v)
			if err != nil {
				return errors.Join(fmt.Errorf("clone %s: %w", p.clone, err), it.Close())
			}
			if err := errors.Join(b.Set(snapChunkKey(prefix, pos, 0), v, nil), b.Delete(legacySnapKey(prefix), nil)); err != nil {
				return errors.Join(err, it.Close())
			}
			moved++
		}
		valid = it.SeekGE(cloneEnd(prefix))
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return err
	}
	if err := b.Set(formatKey, formatValue, nil); err != nil {
		return err
	}
	if err := pdb.Apply(b, pebble.Sync); err != nil {
		return err
	}
	log.Info("persistence: upgraded the database from format 1 to 4", zap.Int("snapshots_moved", moved))
	return nil
}

// get is the only way this package makes a pebble point read (Get): it
// counts the read in Stats.PointReads, so tests can check how many reads an
// operation costs (a point read into an sstable decodes at least an index and
// a data block, which is what made the write path slow on a large replica).
func (db *DB) get(r pebble.Reader, key []byte) ([]byte, io.Closer, error) {
	db.st.pointReads.Add(1)
	return r.Get(key)
}

// Close stops accepting writes, commits every write already queued, waits
// for running reads, and closes pebble (which flushes and fsyncs the WAL,
// so after a clean Close nothing is lost under any policy). Writes submitted
// after Close began, and all later calls, get ErrClosed. Close is idempotent:
// later calls return the first call's result. It leaves no goroutine behind.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		db.mu.Lock()
		db.closing = true
		db.mu.Unlock()
		db.signal()
		<-db.committerDone

		db.mu.Lock()
		for db.refs > 0 {
			db.idle.Wait()
		}
		db.mu.Unlock()

		// pebble's Close syncs the WAL, which also releases every
		// SyncInterval batch still waiting for its fsync in the reaper.
		err := db.pdb.Close()
		if db.reap != nil {
			close(db.reap)
			<-db.reaperDone
		}
		if err != nil {
			db.closeErr = fmt.Errorf("persistence: close: %w", err)
		}
		db.log.Info("persistence closed", zap.Error(err))
	})
	return db.closeErr
}

// acquire registers a read; it fails once Close has begun.
func (db *DB) acquire() error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.closing {
		return ErrClosed
	}
	db.refs++
	return nil
}

func (db *DB) release() {
	db.mu.Lock()
	db.refs--
	if db.refs == 0 && db.closing {
		db.idle.Broadcast()
	}
	db.mu.Unlock()
}

// Sync fsyncs the WAL: when it returns nil, every write whose call returned
// before Sync was called survives a power loss, whatever the policy. Under
// SyncInterval it waits for the next interval's fsync (at most
// Options.SyncInterval); under SyncAlways it is never needed.
func (db *DB) Sync() error {
	if err := db.acquire(); err != nil {
		return err
	}
	defer db.release()
	if err := db.pdb.LogData(nil, pebble.Sync); err != nil {
		return fmt.Errorf("persistence: sync: %w", err)
	}
	return nil
}

// Clone returns the namespace of one clone (an id such as "cart/2"). It is
// cheap and does not touch the disk; the handle stays valid until the DB is
// closed, across Drop. An invalid id (empty or longer than MaxIDLen bytes)
// yields a handle whose every method returns ErrInvalidID.
func (db *DB) Clone(id string) *CloneLog {
	c := &CloneLog{db: db, id: id}
	if !validID(id) {
		c.err = fmt.Errorf("%w: clone id of %d bytes", ErrInvalidID, len(id))
		return c
	}
	c.prefix = clonePrefix(id)
	return c
}

// Clones returns, sorted, the ids of all clones that have any data (a log
// record, snapshot, metadata or bookkeeping): what a node restores at start.
func (db *DB) Clones() ([]string, error) {
	if err := db.acquire(); err != nil {
		return nil, err
	}
	defer db.release()
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte{tagClone}, UpperBound: []byte{tagClone + 1}})
	if err != nil {
		return nil, err
	}
	var ids []string
	for valid := it.First(); valid; {
		p, err := decodeKey(it.Key())
		if err != nil {
			return nil, errors.Join(err, it.Close())
		}
		ids = append(ids, p.clone)
		valid = it.SeekGE(cloneEnd(clonePrefix(p.clone)))
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, err
	}
	slices.Sort(ids)
	return ids, nil
}

// Stats is a snapshot of the store's counters since Open.
type Stats struct {
	// Policy is the fsync policy ("always", "interval", "none").
	Policy string `json:"policy"`
	// Commits is the number of group commits: each is at most one pebble
	// batch and, under SyncAlways, one fsync.
	Commits uint64 `json:"commits"`
	// Ops is the number of writes (Append, SaveSnapshot, Prune, PutMeta,
	// DeleteMeta, Drop calls) those commits served.
	Ops uint64 `json:"ops"`
	// Appends is the number of Append calls that succeeded.
	Appends uint64 `json:"appends"`
	// Records is the number of records stored (duplicates excluded).
	Records uint64 `json:"records"`
	// Duplicates is the number of records skipped as already stored.
	Duplicates uint64 `json:"duplicates"`
	// Bytes is the size of the committed pebble batches (keys, values and
	// batch headers), in bytes.
	Bytes uint64 `json:"bytes"`
	// SyncedCommits is the number of commits that asked for a WAL fsync
	// (all of them under SyncAlways and SyncInterval; pebble coalesces the
	// requests under SyncInterval).
	SyncedCommits uint64 `json:"synced_commits"`
	// WALSyncs is the number of fsyncs pebble's WAL writer actually
	// performed, including those of Sync, WAL rotation and Close.
	WALSyncs uint64 `json:"wal_syncs"`
	// PendingSyncs is, under SyncInterval, the number of acknowledged
	// commits not yet fsynced: what a power loss now could lose.
	PendingSyncs int64 `json:"pending_syncs"`
	// WALNudges is, under SyncInterval, how many times the committer
	// re-signalled pebble's WAL flusher after going idle (see the package
	// doc): tiny LogData records, one to three per idle period.
	WALNudges uint64 `json:"wal_nudges"`
	// PointReads is the number of pebble point reads (Get) the store made,
	// for reads (LoadSnapshot, GetMeta, Range, MaxSeq, ...) and writes alike.
	// The write path makes none per record: duplicates are detected from
	// memory (see cloneCache), so this grows with reads, not with appends.
	PointReads uint64 `json:"point_reads"`
	// MeanBatchOps is Ops/Commits: how many callers one commit served.
	MeanBatchOps float64 `json:"mean_batch_ops"`
	// MeanBatchRecords is (Records+Duplicates)/Commits.
	MeanBatchRecords float64 `json:"mean_batch_records"`
	// LastCommitLatency is how long the last commit's pebble write took,
	// including its fsync under SyncAlways.
	LastCommitLatency time.Duration `json:"last_commit_latency_ns"`
	// MeanCommitLatency is the mean of the same over all commits.
	MeanCommitLatency time.Duration `json:"mean_commit_latency_ns"`
	// MaxCommitLatency is the longest of the same; SlowCommits counts the
	// commits that took longer than SlowCommit: while one lasts, every
	// update waiting for durability waits with it (a disk that stalls an
	// fsync, the WAL's fsync behind other files' writeback).
	MaxCommitLatency time.Duration `json:"max_commit_latency_ns"`
	SlowCommits      uint64        `json:"slow_commits"`
}

// SlowCommit is the commit latency from which Stats.SlowCommits counts a
// commit: a quarter of the 200 ms budgets the benchmarks give requests.
const SlowCommit = 50 * time.Millisecond

// Stats returns the current counters. It is cheap and works after Close.
func (db *DB) Stats() Stats {
	s := Stats{
		Policy:            db.opts.Sync.String(),
		Commits:           db.st.commits.Load(),
		Ops:               db.st.ops.Load(),
		Appends:           db.st.appends.Load(),
		Records:           db.st.records.Load(),
		Duplicates:        db.st.dups.Load(),
		Bytes:             db.st.bytes.Load(),
		SyncedCommits:     db.st.syncedCommits.Load(),
		PendingSyncs:      db.st.pendingSyncs.Load(),
		WALNudges:         db.st.walNudges.Load(),
		PointReads:        db.st.pointReads.Load(),
		WALSyncs:          histCount(db.fsyncs),
		LastCommitLatency: time.Duration(db.st.lastLatency.Load()),
		MaxCommitLatency:  time.Duration(db.st.maxLatency.Load()),
		SlowCommits:       db.st.slowCommits.Load(),
	}
	if s.Commits > 0 {
		s.MeanBatchOps = float64(s.Ops) / float64(s.Commits)
		s.MeanBatchRecords = float64(s.Records+s.Duplicates) / float64(s.Commits)
		s.MeanCommitLatency = time.Duration(db.st.totalLatency.Load() / int64(s.Commits))
	}
	return s
}

func histCount(h prometheus.Histogram) uint64 {
	if h == nil {
		return 0
	}
	var m dto.Metric
	if err := h.Write(&m); err != nil || m.Histogram == nil {
		return 0
	}
	return m.Histogram.GetSampleCount()
}

// pebbleLogger routes pebble's log lines to zap.
type pebbleLogger struct{ s *zap.SugaredLogger }

func (l pebbleLogger) Infof(format string, args ...any)  { l.s.Infof(format, args...) }
func (l pebbleLogger) Errorf(format string, args ...any) { l.s.Errorf(format, args...) }

// Fatalf must not return (pebble calls it when continuing would corrupt
// data, e.g. a failed WAL write). It logs and panics rather than calling
// os.Exit so that deferred handlers and the stack trace survive.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	l.s.Errorf("pebble fatal: "+format, args...)
	_ = l.s.Sync()
	panic(fmt.Sprintf("pebble: "+format, args...))
}
