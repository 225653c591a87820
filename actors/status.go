package actors

import (
	"math"
	"runtime/metrics"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/tempestrt/tempest/gateway"
	"github.com/tempestrt/tempest/internal/admission"
	"github.com/tempestrt/tempest/persistence"
	"github.com/tempestrt/tempest/supervisor"
)

// CloneStatus is what a clone's scheduler last published about itself.
type CloneStatus struct {
	Service string `json:"service"`
	Clone   string `json:"clone"`
	Ready   bool   `json:"ready"`
	Applied uint64 `json:"applied_ops"`
	Items   int    `json:"items"` // items of the replica, over its collections
	// ColdItems: of Items, those held in the cold tables (quiet items,
	// outside the garbage collector's view; collections.Store.Tidy).
	ColdItems int `json:"cold_items"`
	// ColdKeyValueBytes: the size of their keys and values.
	ColdKeyValueBytes int64 `json:"cold_key_value_bytes"`
	// ColdArenaBytes: the cold tables' arenas, where those keys and values
	// are; ColdArenaLiveBytes the part of it live entries use
	// (collections.Store.ColdMemory).
	ColdArenaBytes     int64  `json:"cold_arena_bytes"`
	ColdArenaLiveBytes int64  `json:"cold_arena_live_bytes"`
	Digest             string `json:"digest"`
	// CollectionDigests: equal on two clones when that collection converged.
	CollectionDigests map[string]string `json:"collection_digests"`
	StablePoint       string            `json:"stable_point"`
	StableLagMs       int64             `json:"stable_lag_ms"` // how far the stable point trails the clock (-1: nothing stable yet)
	Pending           int               `json:"tentative_ops"` // ops not yet stable
	OwnSeq            uint64            `json:"own_seq"`
	QueueLen          int               `json:"queue_len"`
	Served            uint64            `json:"served"`
	DeadlineMisses    uint64            `json:"deadline_misses"` // requests refused or shed because their deadline could not be met
	ShedInQueue       uint64            `json:"shed_in_queue"`
	ShedBacklog       uint64            `json:"shed_backlog"`   // refused at once because the work queued ahead would not let them finish in time
	Abandoned         uint64            `json:"abandoned"`      // queued requests dropped unrun: a hedge answered first, or the caller gave up
	HeldBack          uint64            `json:"held_back"`      // updates that waited for stability before running
	HandlerPanics     uint64            `json:"handler_panics"` // requests whose handler panicked (answered 500 handler_panic)
	OpLogPending      int               `json:"oplog_pending"`  // op-log records submitted, not yet durable
	OpLogFull         uint64            `json:"oplog_full"`     // updates refused (503 overloaded) because the op-log queue was full
	RejectedOps       uint64            `json:"rejected_ops"`
	RepairedOps       uint64            `json:"repaired_ops"` // ops that arrived by catch-up (repair), not multicast
	// PrunedAsks counts peers' catch-up requests for ops this clone had
	// already pruned: such a peer cannot catch up by ops and needs a state
	// transfer (not built yet).
	PrunedAsks     uint64 `json:"catchup_pruned_asks"`
	RolledBack     uint64 `json:"rolled_back_ops"`  // ops reverted to insert a late arrival before them
	LateOps        uint64 `json:"late_ops"`         // ops that arrived after their stable point (a protocol fault)
	LateMisplaced  uint64 `json:"late_misplaced"`   // late ops that could not be put in their place
	ApplyLatencyUs int64  `json:"apply_latency_us"` // EWMA of handler run time
	// LastSnapshot: the last snapshot this clone made durable since it
	// (re)started; SnapshotInProgress: one is being produced or written.
	LastSnapshot       *SnapshotInfo `json:"last_snapshot,omitempty"`
	SnapshotInProgress bool          `json:"snapshot_in_progress"`
	// BackgroundTurns: every snapshot and lazy-load slice of this
	// incarnation, by its time.
	BackgroundTurns TurnStats `json:"background_turns"`
	// Loaded: how this incarnation of the clone loaded its state at start.
	Loaded        *LoadInfo      `json:"loaded,omitempty"`
	Restarts      int            `json:"restarts"` // restarts of the clone and its child actors
	ActorRestarts map[string]int `json:"actor_restarts,omitempty"`
	UpdatedAt     time.Time      `json:"updated_at"`
}

// TurnStats counts a clone's background slices (snapshot production and
// the lazy load) by their wall and CPU time (turnClock): how often work
// the scheduler does between requests held them up, and for how long. The
// counts only grow: a client reads them twice to see a period.
type TurnStats struct {
	Turns       int64 `json:"turns"`
	WallOver1ms int64 `json:"wall_over_1ms"`
	WallOver5ms int64 `json:"wall_over_5ms"`
	// CPUOver1ms and MaxCPUUs: of the turns whose CPU time is known;
	// CPUUnknown: those ended on another thread than they began.
	CPUOver1ms int64 `json:"cpu_over_1ms"`
	CPUUnknown int64 `json:"cpu_unknown"`
	MaxWallUs  int64 `json:"max_wall_us"`
	MaxCPUUs   int64 `json:"max_cpu_us"`
}

// add counts one turn.
func (t *TurnStats) add(wall, cpu time.Duration, known bool) {
	t.Turns++
	if wall > time.Millisecond {
		t.WallOver1ms++
	}
	if wall > 5*time.Millisecond {
		t.WallOver5ms++
	}
	t.MaxWallUs = max(t.MaxWallUs, wall.Microseconds())
	if !known {
		t.CPUUnknown++
		return
	}
	if cpu > time.Millisecond {
		t.CPUOver1ms++
	}
	t.MaxCPUUs = max(t.MaxCPUUs, cpu.Microseconds())
}

// LoadInfo is how a clone loaded its state when it (re)started: its stored
// state (one part; or, as format 3 stored it, a chain of parts, a full
// snapshot and deltas) and its items, then the op log after it.
type LoadInfo struct {
	SnapshotParts int     `json:"snapshot_parts"`
	SnapshotItems int     `json:"snapshot_items"`
	SnapshotMs    float64 `json:"snapshot_ms"`
	ReplayedOps   int     `json:"replayed_ops"`
	ReplayMs      float64 `json:"replay_ms"`
	TookMs        float64 `json:"took_ms"` // until loaded (serving may wait for the clock, up to 1 s more)
	// Lazy: the state was opened lazily (its header and EagerItems, the
	// items with pending ops, lists and counters; SnapshotItems is then the
	// state's size, not what was loaded): the rest is faulted in on use
	// (Faults lookups found Faulted items) and loaded in paced slices in
	// the background (BackgroundItems, BackgroundBusyMs of scheduler time,
	// done after BackgroundMs when LoadDone; its longest slice took
	// BackgroundMaxTurnUs of wall time and BackgroundMaxTurnCPUUs of CPU
	// time, as SnapshotInfo's turns).
	Lazy                   bool    `json:"lazy"`
	EagerItems             int     `json:"eager_items,omitempty"`
	Faults                 int     `json:"faults,omitempty"`
	Faulted                int     `json:"faulted,omitempty"`
	BackgroundItems        int     `json:"background_items,omitempty"`
	BackgroundBusyMs       float64 `json:"background_busy_ms,omitempty"`
	BackgroundMs           float64 `json:"background_ms,omitempty"`
	BackgroundMaxTurnUs    int64   `json:"background_max_turn_us,omitempty"`
	BackgroundMaxTurnCPUUs int64   `json:"background_max_turn_cpu_us,omitempty"`
	LoadDone               bool    `json:"load_done"`
}

// Status is a node's view of itself, served at GET /v1/status.
type Status struct {
	Node           string                  `json:"node"`
	UptimeSeconds  float64                 `json:"uptime_s"`
	Services       map[string][]MethodInfo `json:"services"`
	Clones         []CloneStatus           `json:"clones"`
	RecentFailures []supervisor.Event      `json:"recent_failures"`
	Deadlines      DeadlineStats           `json:"deadlines"`
	Admission      *admission.Stats        `json:"admission,omitempty"` // the front door; absent when disabled
	RefusalTime    LatencySummary          `json:"refusal_time"`        // headers read to the front door's 503 handed to the write
	// Gateway: service calls the HTTP front end's own loop served and
	// connections it handed to net/http (gateway.FrontEnd), since the
	// node started; absent without a gateway.
	Gateway     *gateway.FrontEndStats `json:"gateway,omitempty"`
	Persistence persistence.Stats      `json:"persistence"`
	// Pebble: the storage engine's own figures (write stalls, compactions,
	// read amplification, cache hit rate, sizes); absent if unreadable.
	Pebble *persistence.PebbleMetrics `json:"pebble,omitempty"`
	// Memory: the Go heap's live objects against the items of every
	// replica on the node.
	Memory       MemoryStats `json:"memory"`
	ChaosEnabled bool        `json:"chaos_enabled"`
}

// DeadlineStats counts the node's 504s. Every one is sent before the
// request's deadline (Config.AnswerLead ahead of it), never after.
type DeadlineStats struct {
	// Timeouts: no answer came from any clone in time.
	Timeouts uint64 `json:"timeouts"`
	// LateAnswers: a success came, but too late to be sent before the
	// deadline, and was answered 504 instead (an update may have applied).
	LateAnswers uint64 `json:"late_answers"`
	// WrittenLate: answers to requests the gateway admitted that were
	// handed to the write after the request's deadline although the node
	// decided them in time: the goroutine that had the answer ran late (a
	// saturated CPU, a GC pause). The node's own count of what its clients
	// see as late; refusals of requests read after their budget had run
	// out are not in it (they were late before the node saw them).
	WrittenLate uint64 `json:"written_late"`
}

// Status reports the node, its clones and recent supervision events.
func (n *Node) Status() Status {
	st := Status{
		Node:           n.cfg.NodeID,
		UptimeSeconds:  time.Since(n.started).Seconds(),
		Services:       n.Services(),
		RecentFailures: n.sup.Events(),
		ChaosEnabled:   n.chaos.Load(),
		Deadlines:      DeadlineStats{Timeouts: n.timeouts.Load(), LateAnswers: n.lateAnswers.Load(), WrittenLate: n.writtenLate.Load()},
		Admission:      n.admissionStats(),
		RefusalTime:    n.refusalTime.summary(),
	}
	if n.gateway != nil {
		gs := n.gateway.stats()
		st.Gateway = &gs
	}
	if n.db != nil {
		st.Persistence = n.db.Stats()
		if pm, err := n.db.PebbleMetrics(); err == nil {
			st.Pebble = &pm
		}
	}
	// Ask every ready scheduler for fresh figures, all at once; a clone that
	// does not answer in time is reported with what it last published.
	type asked struct {
		c *cloneRuntime
		f *actor.Future
	}
	var futures []asked
	for _, name := range n.order {
		for _, c := range n.services[name].clones {
			var f *actor.Future
			if c.ready.Load() && !n.stopped.Load() {
				f = n.system.Root.RequestFuture(c.schedulerPID, &statusRequest{}, 250*time.Millisecond)
			}
			futures = append(futures, asked{c, f})
		}
	}
	for _, a := range futures {
		if a.f != nil {
			_, _ = a.f.Result() // the scheduler has published fresh figures, or timed out
		}
		c := a.c
		c.mu.Lock()
		cs := c.status
		c.mu.Unlock()
		cs.Service, cs.Clone = c.service.svc.Name(), c.id
		cs.Ready = c.ready.Load()
		cs.PrunedAsks = c.prunedAsks.Load()
		cs.ActorRestarts = map[string]int{}
		for _, child := range []string{"", "/scheduler", "/member", "/repair"} {
			if r := n.sup.Restarts("node/services/" + c.id + child); r > 0 {
				cs.ActorRestarts[c.id+child] = r
				cs.Restarts += r
			}
		}
		st.Clones = append(st.Clones, cs)
	}
	st.Memory = memoryStats(st.Clones)
	return st
}

// MemoryStats relates the node's heap to the state it holds, and says what
// the garbage collector costs.
type MemoryStats struct {
	// HeapObjectsBytes: bytes in live and not yet swept heap objects
	// (runtime/metrics /memory/classes/heap/objects:bytes): what the heap
	// holds now, garbage not yet collected included.
	HeapObjectsBytes uint64 `json:"heap_objects_bytes"`
	// HeapLiveBytes: the heap marked live by the last GC
	// (/gc/heap/live:bytes), 0 before the first one.
	HeapLiveBytes uint64 `json:"heap_live_bytes"`
	// Items: the items of every clone's replica, summed; ColdItems those
	// of them in cold tables.
	Items     int `json:"items"`
	ColdItems int `json:"cold_items"`
	// KeyValueBytesPerColdItem: the cold items' keys and values, their
	// encoded size, per item: what BytesPerItem is measured against (the
	// target is at most 3x it).
	KeyValueBytesPerColdItem float64 `json:"key_value_bytes_per_cold_item"`
	// ColdArenaBytes and ColdArenaLiveBytes: the cold tables' arenas and
	// the part of them live entries use, over every clone.
	ColdArenaBytes     int64 `json:"cold_arena_bytes"`
	ColdArenaLiveBytes int64 `json:"cold_arena_live_bytes"`
	// BytesPerItem: HeapObjectsBytes / Items, an upper bound of what an
	// item costs one replica (the heap holds everything else too, garbage
	// not yet collected included: right after a GC, e.g. after
	// /debug/pprof/heap?gc=1, it is the live heap per item); 0 without
	// items.
	BytesPerItem float64 `json:"bytes_per_item_replica"`
	// GCCycles: collections completed since the process started;
	// GCCPUSeconds the CPU time they took (/cpu/classes/gc/total, an
	// estimate by the runtime, mark assists included); GCPercent and
	// MemoryLimitBytes the policy in force (GOGC and GOMEMLIMIT, set by
	// tempest-node's --gc-percent and --memory-limit).
	GCCycles         uint64  `json:"gc_cycles"`
	GCCPUSeconds     float64 `json:"gc_cpu_seconds"`
	GCPercent        int64   `json:"gc_percent"`
	MemoryLimitBytes int64   `json:"memory_limit_bytes"`
}

func memoryStats(clones []CloneStatus) MemoryStats {
	s := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/gc/heap/live:bytes"},
		{Name: "/gc/cycles/total:gc-cycles"},
		{Name: "/cpu/classes/gc/total:cpu-seconds"},
		{Name: "/gc/gogc:percent"},
		{Name: "/gc/gomemlimit:bytes"},
	}
	metrics.Read(s)
	u := func(i int) uint64 {
		if s[i].Value.Kind() == metrics.KindUint64 {
			return s[i].Value.Uint64()
		}
		return 0
	}
	m := MemoryStats{HeapObjectsBytes: u(0), HeapLiveBytes: u(1), GCCycles: u(2),
		GCPercent: int64(u(4)), MemoryLimitBytes: int64(min(u(5), math.MaxInt64))}
	if s[3].Value.Kind() == metrics.KindFloat64 {
		m.GCCPUSeconds = s[3].Value.Float64()
	}
	var kv int64
	for _, c := range clones {
		m.Items += c.Items
		m.ColdItems += c.ColdItems
		kv += c.ColdKeyValueBytes
		m.ColdArenaBytes += c.ColdArenaBytes
		m.ColdArenaLiveBytes += c.ColdArenaLiveBytes
	}
	if m.ColdItems > 0 {
		m.KeyValueBytesPerColdItem = float64(kv) / float64(m.ColdItems)
	}
	if m.Items > 0 {
		m.BytesPerItem = float64(m.HeapObjectsBytes) / float64(m.Items)
	}
	return m
}
