package persistence

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"go.uber.org/zap"
)

// pebble settings for this workload. The store is a write-heavy op log: every
// group commit is a batch of new log and index keys (mostly ascending),
// applied with a WAL fsync; Prune deletes old records (a range deletion over
// the log, point deletions of their index keys); snapshots are rare large
// values in their own key range (keys.go). Reads are rare: a restart's
// snapshot load and replay, catch-up Range scans, the occasional GetMeta,
// MaxSeq and header read. The write path itself reads nothing per record
// (dedup.go). So the settings favour never stalling writes over a low read
// amplification, and make the few point reads cheap with bloom filters.
const (
	// pebbleMemTableSize is 32 MiB (pebble's default is 4 MiB). A bigger
	// memtable means fewer flushes and fewer, larger L0 files, so less
	// compaction work per written byte; and records pruned before their
	// memtable is flushed never cost an L0 file. Cost: up to
	// pebbleMemTableStopWrites memtables of memory, and a longer WAL replay
	// after a crash (at most a few memtables' worth).
	pebbleMemTableSize = 32 << 20
	// pebbleMemTableStopWrites is 4 (default 2): writes stall only when four
	// memtables are queued for flushing, so a flush that is slow (a slow
	// disk, a flush racing a compaction) does not stall group commits, whose
	// fsync latency every caller already waits for.
	pebbleMemTableStopWrites = 4
	// pebbleL0CompactionThreshold is 4 (pebble's default, kept): L0 is
	// compacted once four sublevels pile up. Our flushes carry mostly
	// ascending keys, so they seldom overlap and L0 stays shallow.
	pebbleL0CompactionThreshold = 4
	// pebbleL0StopWrites is 24 (default 12): the hard limit on L0 sublevels
	// before pebble stops writes. A stall blocks every clone's commits, while
	// more L0 sublevels only slow reads, which are rare here and
	// bloom-filtered; so we accept a deeper L0 during a compaction backlog
	// rather than stall.
	pebbleL0StopWrites = 24
	// pebbleBloomBitsPerKey is 10: a bloom filter per sstable on L0 to L5
	// (pebble's default has none anywhere), with about a 1% false-positive
	// rate. A point read (header, origin state, meta, a log record followed
	// from the index by Range) then skips every table above the one holding
	// the key without loading its data block. L6 gets none: pebble v2.1.7
	// never consults L6 filters for a Get (IterOptions.UseL6Filters is off;
	// a key that reaches the bottom level is likely there), and L6 holds most
	// keys, so its filters would only cost space. Cost: ~1.25 bytes of
	// filter per key above L6, and a little CPU at flush and compaction.
	pebbleBloomBitsPerKey = 10
	// pebbleBlobMinValueBytes is 512: values this large or larger are kept
	// out of the sstables, in blob files (pebble's value separation), and
	// the sstables hold a small reference instead. Only snapshot chunks are
	// this large (tens of items each, a few KiB; log records are ~100
	// bytes, index and bookkeeping values under 30). Without it, every
	// compaction that touches the snapshot range rewrites the chunks it
	// covers, and as each clone's snapshot keys sit between the others', a
	// flush carrying one clone's new delta overlaps the other clones' full
	// snapshots: at 1M items a compaction rewrote ~100 MB of unchanged
	// snapshot for a few hundred KiB of new data, a fifth of the node's CPU
	// under load. With separation a compaction moves only keys and
	// references; the chunk bytes are written once, at flush, and a blob
	// file is deleted whole once no table references it (a chain replaced).
	pebbleBlobMinValueBytes = 512
	// pebbleBlobMaxReferenceDepth is 10: a compaction whose output would
	// reference more than this many overlapping blob files rewrites the
	// values into new ones, which bounds how many files a snapshot load
	// reads from (locality). pebbleBlobRewriteMinAge (5 minutes) and
	// pebbleBlobGarbageRatio (0.3) bound the space held by partly dead blob
	// files: once 30% of the blob bytes are unreferenced, files older than
	// five minutes are rewritten. A whole chain is replaced at once, so
	// most dead files die whole and need no rewrite.
	pebbleBlobMaxReferenceDepth = 10
	pebbleBlobRewriteMinAge     = 5 * time.Minute
	pebbleBlobGarbageRatio      = 0.3
)

// DefaultCacheBytes is the size of pebble's block cache when
// Options.CacheBytes is 0: 64 MiB (pebble's default is 8 MiB). It holds the
// uncompressed index, filter and data blocks that reads (replay, catch-up,
// point reads) touch; 64 MiB keeps the index and filter blocks of a
// multi-gigabyte database resident, so a point read costs at most one data
// block from disk.
var DefaultCacheBytes int64 = 64 << 20

// testPebbleOptions, if set by a test, edits the pebble options before Open.
var testPebbleOptions func(*pebble.Options)

// pebbleOptions builds the pebble configuration for o (see the constants
// above for why each value).
func pebbleOptions(o Options, log *zap.Logger, stalls *stallCounter, act *diskActivity) *pebble.Options {
	popts := &pebble.Options{
		FS:                          o.FS,
		Logger:                      pebbleLogger{log.Sugar()},
		FormatMajorVersion:          pebble.FormatNewest,
		CacheSize:                   o.CacheBytes,
		MemTableSize:                pebbleMemTableSize,
		MemTableStopWritesThreshold: pebbleMemTableStopWrites,
		L0CompactionThreshold:       pebbleL0CompactionThreshold,
		L0StopWritesThreshold:       pebbleL0StopWrites,
		EventListener: &pebble.EventListener{
			WriteStallBegin: func(info pebble.WriteStallBeginInfo) {
				stalls.begin()
				log.Warn("pebble write stall", zap.String("reason", info.Reason))
			},
			WriteStallEnd: stalls.end,
			// At debug level, to line background disk work up with
			// latency (pebble's own events; Metrics has the totals).
			FlushBegin: func(pebble.FlushInfo) { act.flushes.Add(1) },
			CompactionBegin: func(pebble.CompactionInfo) {
				act.compactions.Add(1)
			},
			WALCreated: func(pebble.WALCreateInfo) { act.walCreated.Store(time.Now().UnixNano()) },
			FlushEnd: func(info pebble.FlushInfo) {
				act.flushes.Add(-1)
				if ce := log.Check(zap.DebugLevel, "pebble flush"); ce != nil {
					ce.Write(zap.Stringer("info", info), zap.Duration("took", info.TotalDuration))
				}
			},
			CompactionEnd: func(info pebble.CompactionInfo) {
				act.compactions.Add(-1)
				if ce := log.Check(zap.DebugLevel, "pebble compaction"); ce != nil {
					ce.Write(zap.Stringer("info", info), zap.Duration("took", info.TotalDuration))
				}
			},
		},
	}
	popts.Experimental.ValueSeparationPolicy = func() pebble.ValueSeparationPolicy {
		return pebble.ValueSeparationPolicy{
			Enabled:               true,
			MinimumSize:           pebbleBlobMinValueBytes,
			MaxBlobReferenceDepth: pebbleBlobMaxReferenceDepth,
			RewriteMinimumAge:     pebbleBlobRewriteMinAge,
			TargetGarbageRatio:    pebbleBlobGarbageRatio,
		}
	}
	if popts.CacheSize <= 0 {
		popts.CacheSize = DefaultCacheBytes
	}
	for i := range popts.Levels {
		popts.Levels[i].FilterPolicy = bloom.FilterPolicy(pebbleBloomBitsPerKey)
	}
	popts.Levels[len(popts.Levels)-1].FilterPolicy = pebble.NoFilterPolicy
	if o.Sync == SyncInterval {
		iv := o.SyncInterval
		popts.WALMinSyncInterval = func() time.Duration { return iv }
	}
	if testPebbleOptions != nil {
		testPebbleOptions(popts)
	}
	return popts
}

// diskActivity is what pebble is doing in the background, from its events
// (FlushBegin/End and CompactionBegin/End come in pairs), so that a slow
// group commit can say what it ran into (DB.warnSlowCommit).
type diskActivity struct {
	flushes, compactions atomic.Int64 // in progress
	walCreated           atomic.Int64 // when the latest WAL file was created (a memtable rotation), Unix ns
	lastWarn             atomic.Int64 // when the latest slow commit was logged, Unix ns
}

// stallCounter counts pebble's write stalls and their total duration, from
// its WriteStallBegin/End events (which pebble calls in pairs).
type stallCounter struct {
	count atomic.Int64
	mu    sync.Mutex
	start time.Time
	total time.Duration
}

func (s *stallCounter) begin() {
	s.count.Add(1)
	s.mu.Lock()
	s.start = time.Now()
	s.mu.Unlock()
}

func (s *stallCounter) end() {
	s.mu.Lock()
	if !s.start.IsZero() {
		s.total += time.Since(s.start)
		s.start = time.Time{}
	}
	s.mu.Unlock()
}

// duration returns the total stalled time, including a stall in progress.
func (s *stallCounter) duration() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.total
	if !s.start.IsZero() {
		d += time.Since(s.start)
	}
	return d
}

// PebbleMetrics is a small, JSON-friendly summary of pebble's own metrics,
// meant for a node's status page. Counters are cumulative since Open.
type PebbleMetrics struct {
	// WriteStalls is how many times pebble stopped writes (too many
	// memtables queued, or too many L0 sublevels); WriteStallDuration is the
	// total time writes were stopped. Both should stay 0.
	WriteStalls        int64         `json:"write_stalls"`
	WriteStallDuration time.Duration `json:"write_stall_duration_ns"`
	// Flushes and Compactions count memtable flushes and compactions
	// completed; CompactionDebtBytes estimates the bytes still to compact
	// for the LSM to settle.
	Flushes             int64  `json:"flushes"`
	Compactions         int64  `json:"compactions"`
	CompactionDebtBytes uint64 `json:"compaction_debt_bytes"`
	// ReadAmp is the read amplification: L0 sublevels plus non-empty lower
	// levels (what a point read without a filter hit may visit).
	ReadAmp int `json:"read_amp"`
	// L0Files is the number of sstables in L0.
	L0Files int64 `json:"l0_files"`
	// BlockCacheBytes is the block cache's resident size;
	// BlockCacheHitRate its hits / (hits + misses), 0 before any lookup.
	BlockCacheBytes   int64   `json:"block_cache_bytes"`
	BlockCacheHitRate float64 `json:"block_cache_hit_rate"`
	// BloomFilterUsefulRate is the fraction of filter checks that spared a
	// data block read, 0 before any check.
	BloomFilterUsefulRate float64 `json:"bloom_filter_useful_rate"`
	// MemtableBytes is the memory held by memtables; DiskBytes the space
	// the database uses on disk (sstables, WAL, manifests).
	MemtableBytes uint64 `json:"memtable_bytes"`
	DiskBytes     uint64 `json:"disk_bytes"`
	// Tombstones is pebble's estimate of deletion tombstones not yet
	// compacted away (left by Prune).
	Tombstones uint64 `json:"tombstones"`
	// PointReads is Stats.PointReads: the store's own pebble Gets.
	PointReads uint64 `json:"point_reads"`
	// CompactedBytes: sstable bytes written by compactions (all levels),
	// FlushedBytes by memtable flushes, since Open: with WAL bytes, the
	// database's write amplification.
	CompactedBytes uint64 `json:"compacted_bytes"`
	FlushedBytes   uint64 `json:"flushed_bytes"`
	// BlobFiles and BlobBytes: the live blob files holding separated
	// values (snapshot chunks, see pebbleBlobMinValueBytes) and their size
	// on disk; BlobReferencedBytes the (uncompressed) value bytes still
	// referenced, the rest being space a rewrite could reclaim.
	BlobFiles           uint64 `json:"blob_files"`
	BlobBytes           uint64 `json:"blob_bytes"`
	BlobReferencedBytes uint64 `json:"blob_referenced_bytes"`
}

// PebbleMetrics returns pebble's metrics as a PebbleMetrics. It takes
// pebble's metrics lock briefly; call it at status-page rates, not per op.
// It fails with ErrClosed once Close has begun.
func (db *DB) PebbleMetrics() (PebbleMetrics, error) {
	if err := db.acquire(); err != nil {
		return PebbleMetrics{}, err
	}
	defer db.release()
	m := db.pdb.Metrics()
	pm := PebbleMetrics{
		WriteStalls:         db.stalls.count.Load(),
		WriteStallDuration:  db.stalls.duration(),
		Flushes:             m.Flush.Count,
		Compactions:         m.Compact.Count,
		CompactionDebtBytes: m.Compact.EstimatedDebt,
		ReadAmp:             m.ReadAmp(),
		L0Files:             m.Levels[0].TablesCount,
		BlockCacheBytes:     m.BlockCache.Size,
		MemtableBytes:       m.MemTable.Size,
		DiskBytes:           m.DiskSpaceUsage(),
		Tombstones:          m.Keys.TombstoneCount,
		PointReads:          db.st.pointReads.Load(),
	}
	for _, l := range m.Levels {
		pm.CompactedBytes += l.TableBytesCompacted
		pm.FlushedBytes += l.TableBytesFlushed
	}
	pm.BlobFiles, pm.BlobBytes, pm.BlobReferencedBytes = m.BlobFiles.LiveCount, m.BlobFiles.LiveSize, m.BlobFiles.ReferencedValueSize
	if n := m.BlockCache.Hits + m.BlockCache.Misses; n > 0 {
		pm.BlockCacheHitRate = float64(m.BlockCache.Hits) / float64(n)
	}
	if n := m.Filter.Hits + m.Filter.Misses; n > 0 {
		pm.BloomFilterUsefulRate = float64(m.Filter.Hits) / float64(n)
	}
	return pm, nil
}
