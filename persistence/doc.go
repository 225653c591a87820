// Package persistence stores the bytes of a node's service clones, their op
// logs, snapshots and metadata, in one pebble database
// (github.com/cockroachdb/pebble/v2) per node. It does not interpret what it
// stores: a Record is an (origin, seq) identity and opaque Data.
//
// # Model
//
// DB is the node's store; DB.Clone(id) gives a CloneLog, the key namespace of
// one clone ("cart/2"). A clone's log is a sequence of records at positions
// 1, 2, 3, ... assigned by the store. Append is idempotent on (origin, seq),
// so at-least-once delivery from peers and retries after a crash are safe.
// A Writer stores the clone's state covering the log up to a position, one
// key per item (StateBegin, StateItems, StateEnd: in full, or as a delta on
// the stored one; see state.go); Prune then removes the covered records. A
// restarting clone opens it (OpenState: an item at a time, or in one scan)
// and calls Replay(pos, ...), then catches up from peers, who serve it with
// Range (records of one origin by seq) after comparing MaxSeq. Snapshots as
// opaque chunks (SaveSnapshot, Writer.SnapshotBegin, read with
// LoadSnapshot, SnapshotChunks, SnapshotChain) are what format 3 stored:
// they still load, and a state replaces them.
//
// # Group commit
//
// All writes go through one committer goroutine per DB. While it commits a
// batch, new writes queue up; it then takes them all (up to
// Options.MaxBatchRecords / MaxBatchBytes) into the next pebble batch, which
// is written to the WAL once and, under SyncAlways, fsynced once. Each caller
// returns when the batch holding its write is durable under the policy. Under
// load one fsync thus serves many Appends from many goroutines and clones
// (Stats shows the ratio); an idle store commits a lone Append at once.
//
// # Fsync policy and what each setting can lose
//
// The policy is Options.Sync. "Process crash" means the process dies (kill -9,
// panic, OOM kill) while the OS keeps running; "power loss" means the OS dies
// too (power cut, kernel panic, VM reset), losing the OS page cache. What
// pebble v2.1.7 does, read from its record.LogWriter and commit pipeline: a
// commit copies the batch into the WAL writer's current 32 KiB block, a
// buffer inside the process. A separate flusher goroutine write(2)s buffered
// WAL data to the file, and fsyncs it, only when it is signalled: when a
// commit asks for a sync (pebble.Sync), when a block fills up, or when the
// WAL is closed (rotation to a new memtable, DB close). A pebble.NoSync commit
// therefore returns with its bytes possibly still in process memory: contrary
// to the common belief (and to a write(2) without fsync), it does NOT survive
// kill -9 for certain. pebble's own doc comment on WriteOptions.Sync says so.
//
// SyncAlways (default): every group commit is applied with pebble.Sync, which
// writes the WAL and fsyncs it before Apply returns; no Append in the group
// returns before that. Process crash: nothing acknowledged is lost. Power
// loss: nothing acknowledged is lost (given a disk that honours fsync). Cost:
// one fsync per group (about 0.5-1 ms on the development VM's disk, tens of
// ms on some cloud volumes), shared by every Append in the group.
//
// SyncInterval: each group is applied with pebble.Sync but without waiting
// for the fsync (pebble's ApplyNoSyncWait), and pebble's WALMinSyncInterval is
// set to Options.SyncInterval. The commit asks for a sync, so the flusher is
// signalled and normally write(2)s the group to the WAL file at once; the
// fsync itself is delayed so that at most one happens per interval. Append
// returns once the group is in the memtable and handed to the flusher, before
// the write(2). pebble v2.1.7's flusher can miss wake-ups while fsyncs are
// being rate-limited: its guard against lost signals only looks at the sync
// queue, which reads as empty while blocked, so a commit that signals between
// the flusher's "any work?" check and its wait leaves its bytes in process
// memory; under a loaded race-detector run CI saw 19 consecutive groups stay
// there until the interval ended. The committer therefore nudges the flusher
// (a tiny LogData record with a sync request) 1, 10 and 100 ms into every
// idle period; a signal that arrives while the flusher waits always wakes it,
// and it then writes everything buffered (Stats.WALNudges counts them).
// Process crash: loses at most the groups acknowledged in the last ~100 ms
// before it, and in practice none. Power loss: loses up to SyncInterval plus
// one fsync's duration of acknowledged Appends (Stats.PendingSyncs counts the
// groups at risk). DB.Sync waits for the next interval's fsync.
//
// SyncNone: groups are applied with pebble.NoSync and nothing is fsynced
// explicitly. Process crash: loses the acknowledged Appends whose WAL bytes
// are still in the flusher's in-process buffer, i.e. the WAL written since the
// last 32 KiB block boundary or the last time the flusher ran: up to 32 KiB,
// the last few hundred small records, however long ago they were
// acknowledged (the test suite's kill -9 of a child that has been idle for
// 500 ms after 100 small Appends typically finds none of them). Power loss:
// loses everything written since pebble last fsynced the WAL on its own: at
// WAL rotation (every memtable, 4 MiB of writes with pebble's defaults),
// DB.Sync or Close; Linux usually writes dirty pages back within about 30 s,
// but with no ordering and no guarantee. Use it only for data that peers can
// re-send (catch-up repairs a clone that lost its tail), or for benchmarks.
//
// Under every policy a clean Close fsyncs the WAL, so nothing is lost, and
// DB.Sync makes everything acknowledged before it durable. Snapshots,
// metadata, Prune and Drop are group-committed writes with the same
// durability as Append. After any crash the database reopens to a prefix of
// the commit order (pebble replays the WAL up to the first torn or missing
// record): a lost group never leaves a hole before a surviving one, and a
// group is never half applied.
//
// # Layout
//
// Keys are binary and big-endian; each clone's keys form one contiguous range
// (see keys.go): 0x01 | u16 len(id) | id | kind | suffix, with kinds header,
// log (| u64 pos), index (| u16 len(origin) | origin | u64 seq -> u64 pos),
// origin state and meta (| key). Snapshots, large values, are in a range of
// their own after every clone's, so they never share an sstable block with
// keys that point reads look up: 0x02 | u16 len(id) | id | u64 generation |
// u32 chunk. A clone's stored snapshot is a chain of generations: a full
// base, then zero or more deltas (Writer.SnapshotDeltaBegin; read with
// CloneLog.SnapshotChain); a full snapshot's end replaces the whole chain, a
// delta's end extends it, each in one batch with the clone's header, so a
// crash leaves the previous chain whole. Or, since format 4, it is a state
// (state.go): one key per item, 0x03 | u16 len(id) | id | u32 epoch | u16
// len(collection) | collection | item, written by Writer.StateBegin,
// StateItems and StateEnd (a delta applied at its end in one batch, a full
// state under a new epoch that its end makes current) and read an item at a
// time or in one scan from a consistent view (CloneLog.OpenState). Format
// version 4; Open upgrades a version-1, -2 or -3 database in place. Record and snapshot values carry a
// version byte and a CRC-32C; every decoder rejects malformed bytes with
// ErrCorrupt and has a Fuzz target.
//
// # Duplicate detection and pebble settings
//
// Append's "already stored?" is answered from memory (dedup.go): per clone
// and origin, the seqs in the log as ranges, the pruned ranges, and capped
// seq-to-position runs; the write path makes no pebble read per record.
// pebble is configured for a write-heavy log (pebble.go): bloom filters on
// L0-L5, 32 MiB memtables, writes stopped only at 4 queued memtables or 24
// L0 sublevels, a 64 MiB block cache (Options.CacheBytes). Stats.PointReads
// counts the store's pebble Gets; DB.PebbleMetrics summarises pebble's own
// metrics (stalls, flushes, compactions, read amplification, cache hit rate,
// memtable and disk bytes) for a status page.
package persistence
