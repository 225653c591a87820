package actors

import (
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/tempestrt/tempest/collections"
	"github.com/tempestrt/tempest/internal/admission"
	"github.com/tempestrt/tempest/internal/group"
	"github.com/tempestrt/tempest/internal/schedq"
	"github.com/tempestrt/tempest/persistence"
	"github.com/tempestrt/tempest/supervisor"
)

// Config configures a node. Start with DefaultConfig or TestConfig and set
// the fields you need.
type Config struct {
	// NodeID names the node in logs and status.
	NodeID string
	// DataDir is where the node's pebble database lives. Required.
	DataDir string
	// Services are the services this node runs.
	Services []*Service
	// Clones is how many clones of each service the node runs (>= 1).
	Clones int
	// Transport connects the clones of a service. nil = a new in-process
	// transport (memgroup) owned and closed by the node.
	Transport group.Transport
	// HTTPAddr is where the HTTP gateway listens ("" = no gateway; port 0
	// picks a free port, see Node.HTTPAddr).
	HTTPAddr string
	// Gateway configures the HTTP gateway.
	Gateway GatewayOptions
	// HedgeWithoutAck is how long Node.Call waits for the first clone to
	// acknowledge a query (admission normally takes microseconds) before it
	// hedges to a second clone; capped at a third of the budget. See
	// Node.Call. Default 20 ms.
	HedgeWithoutAck time.Duration
	// AnswerLead is how long before a request's deadline Node.Call gives up
	// and answers 504 deadline_exceeded: the time the gateway needs to write
	// the answer, so that the 504 (and any success that came in time) leaves
	// the node before the deadline, never after. A success that reaches
	// Node.Call later than that is answered 504 too. Default 1 ms.
	AnswerLead time.Duration
	// DefaultDeadline applies to requests that carry no deadline and whose
	// method sets none.
	DefaultDeadline time.Duration
	// MaxDeadline caps the deadline a client may ask for.
	MaxDeadline time.Duration
	// HeartbeatInterval is how often each clone multicasts a heartbeat so
	// that stability advances while it is idle, and how often the scheduler
	// compacts and refreshes its status.
	HeartbeatInterval time.Duration
	// RepairInterval is how often each clone's repair agent asks a random
	// peer for ops it is missing.
	RepairInterval time.Duration
	// CatchupMaxOps bounds the ops in one catch-up reply.
	CatchupMaxOps int
	// SnapshotEvery is how many applied ops between snapshots of a clone's
	// state: it bounds the op log a restart replays, whatever the state's
	// size. Default 10 000.
	//
	// A snapshot is written as the clone's stored state, one key per item
	// (ARCHITECTURE.md, "Persistence layout"): the first one full, then
	// deltas holding only the items changed since the previous one, each
	// applied to the stored state at its end, so that its cost follows the
	// changes, not the state. A restart loads the state, then replays the
	// log after it.
	SnapshotEvery int
	// SnapshotSlice bounds the scheduler time one turn spends producing a
	// snapshot: a snapshot is a stream of chunks (collections.SnapshotStream)
	// made a slice at a time between requests, never in one long turn.
	// A turn stops at the first chunk that ends past the slice, so its
	// length is at most the slice plus one chunk's work. Default 500 µs.
	SnapshotSlice time.Duration
	// SnapshotCPUShare and SnapshotBurst pace snapshot production: the
	// schedulers of a node together spend at most SnapshotCPUShare of one
	// CPU's time on it, averaged over SnapshotBurst (a snapshot short
	// enough to fit in the burst is not slowed at all). Each slice is
	// short, but unpaced a full snapshot of a large state is seconds of
	// CPU taken from requests, and the front door then refuses them (see
	// pacer.go). Once the log a restart would replay (ops since the begin
	// of the last durable snapshot) exceeds snapshotUnpacedAfter x
	// SnapshotEvery, the snapshot in progress is no longer paced, so that
	// log stays bounded. Defaults 0.1 and 50 ms; a share of 1 turns
	// pacing off.
	SnapshotCPUShare float64
	SnapshotBurst    time.Duration
	// SnapshotChunkBytes and SnapshotChunkItems bound one snapshot chunk
	// (one database value, one state-transfer message): 64 KiB and 64
	// items by default (a single larger item gets a chunk of its own; 64
	// cart-sized items take about 0.4 ms to capture and encode).
	SnapshotChunkBytes int
	SnapshotChunkItems int
	// OpLogQueue bounds, per clone, the op-log records (own and peers' ops;
	// a snapshot or prune counts 1) submitted and not yet durable. While it
	// is full the clone refuses new updates at admission (503 overloaded, at
	// once) instead of growing memory; queries are not affected. Default
	// 4096: many group commits' worth, so it fills only when the disk falls
	// behind for a sustained spell.
	OpLogQueue int
	// ReadyTimeout bounds how long Start waits for every clone to load its
	// state from disk (it logs who is still loading every 5 s). Default 10
	// minutes: a replica of millions of items takes tens of seconds.
	ReadyTimeout time.Duration
	// LogRetain is how many op-log records a clone keeps behind its latest
	// snapshot, to serve catch-up to peers that fell behind.
	LogRetain uint64
	// Admission configures the node's front door: the concurrency limit,
	// driven by measured queueing delay, that refuses requests (503
	// overloaded, with Retry-After) before their body is read. See
	// internal/admission.
	Admission admission.Config
	// DisableAdmission turns the front door off (every request goes to a
	// clone's queue). For comparisons only: without it an overloaded node
	// collapses.
	DisableAdmission bool
	// Scheduler configures each clone's request queue.
	Scheduler schedq.Config
	// Supervision configures restart backoff and budgets of every supervisor.
	Supervision supervisor.BackoffConfig
	// Persistence configures the node's database (Dir is set from DataDir).
	Persistence persistence.Options
	// DeadLetterThrottle is protoactor's dead-letter log throttle window. Its
	// goroutine outlives Stop by up to this long, so tests shorten it.
	DeadLetterThrottle time.Duration
	// OnStable, if set, is called by each clone's store for every op, in
	// order, as it becomes stable (test hook for the per-item order
	// checker, see collections/check). replica is the clone id plus an
	// incarnation number ("cart/1#2") because a restarted clone replays.
	OnStable func(replica, collection string, item []byte, op collections.OpID)
	// Logger receives the node's logs (protoactor's too). nil = zap.NewNop().
	Logger *zap.Logger
}

// DefaultConfig is a configuration for a node serving real traffic.
func DefaultConfig(dataDir string) Config {
	return Config{
		NodeID:             "node-1",
		DataDir:            dataDir,
		Clones:             3,
		DefaultDeadline:    time.Second,
		HedgeWithoutAck:    20 * time.Millisecond,
		AnswerLead:         time.Millisecond,
		MaxDeadline:        time.Minute,
		HeartbeatInterval:  20 * time.Millisecond,
		RepairInterval:     time.Second,
		CatchupMaxOps:      4096,
		SnapshotEvery:      10000,
		SnapshotSlice:      500 * time.Microsecond,
		SnapshotCPUShare:   0.1,
		SnapshotBurst:      50 * time.Millisecond,
		SnapshotChunkBytes: 64 << 10,
		SnapshotChunkItems: 64,
		LogRetain:          100000,
		OpLogQueue:         4096,
		ReadyTimeout:       10 * time.Minute,
		Gateway:            DefaultGatewayOptions(),
		Scheduler:          schedq.DefaultConfig(),
		Admission:          admission.DefaultConfig(),
		Supervision:        supervisor.DefaultBackoffConfig(),
		Persistence:        persistence.DefaultOptions(dataDir),
		DeadLetterThrottle: time.Second,
	}
}

// TestConfig is DefaultConfig with short timers so tests run fast.
func TestConfig(dataDir string) Config {
	c := DefaultConfig(dataDir)
	c.HeartbeatInterval = 5 * time.Millisecond
	c.RepairInterval = 50 * time.Millisecond
	c.SnapshotEvery = 500
	c.ReadyTimeout = 30 * time.Second // a test's replicas are small: fail fast
	// Generous: a clone that falls further behind than its peers' retention
	// needs a state transfer, which is not built yet (see repair.go).
	c.LogRetain = 50000
	c.Supervision = supervisor.TestBackoffConfig()
	c.DeadLetterThrottle = 10 * time.Millisecond
	return c
}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("DataDir is required"))
	}
	if len(c.Services) == 0 {
		errs = append(errs, errors.New("no services"))
	}
	seen := map[string]bool{}
	for _, s := range c.Services {
		if s == nil {
			errs = append(errs, errors.New("nil service"))
			continue
		}
		if seen[s.Name()] {
			errs = append(errs, fmt.Errorf("service %q listed twice", s.Name()))
		}
		seen[s.Name()] = true
	}
	if c.Clones < 1 || c.Clones > 64 {
		errs = append(errs, fmt.Errorf("Clones %d not in [1,64]", c.Clones))
	}
	if c.AnswerLead < 0 || c.AnswerLead >= c.Scheduler.Margin {
		errs = append(errs, fmt.Errorf("AnswerLead %v must be in [0, Scheduler.Margin %v)", c.AnswerLead, c.Scheduler.Margin))
	}
	if c.HedgeWithoutAck <= 0 {
		errs = append(errs, fmt.Errorf("HedgeWithoutAck must be > 0, got %v", c.HedgeWithoutAck))
	}
	if c.DefaultDeadline <= 0 || c.MaxDeadline < c.DefaultDeadline {
		errs = append(errs, fmt.Errorf("deadlines: default %v must be > 0 and <= max %v", c.DefaultDeadline, c.MaxDeadline))
	}
	if c.HeartbeatInterval <= 0 || c.RepairInterval <= 0 {
		errs = append(errs, errors.New("HeartbeatInterval and RepairInterval must be > 0"))
	}
	if c.OpLogQueue < 1 {
		errs = append(errs, fmt.Errorf("OpLogQueue must be >= 1, got %d", c.OpLogQueue))
	}
	if c.ReadyTimeout <= 0 {
		errs = append(errs, fmt.Errorf("ReadyTimeout must be > 0, got %v", c.ReadyTimeout))
	}
	if c.CatchupMaxOps < 1 || c.SnapshotEvery < 1 {
		errs = append(errs, errors.New("CatchupMaxOps and SnapshotEvery must be >= 1"))
	}
	if c.SnapshotSlice <= 0 || c.SnapshotChunkBytes < 1 || c.SnapshotChunkItems < 1 {
		errs = append(errs, fmt.Errorf("SnapshotSlice %v, SnapshotChunkBytes %d and SnapshotChunkItems %d must be positive", c.SnapshotSlice, c.SnapshotChunkBytes, c.SnapshotChunkItems))
	}
	if !(c.SnapshotCPUShare > 0 && c.SnapshotCPUShare <= 1) || c.SnapshotBurst < 0 {
		errs = append(errs, fmt.Errorf("SnapshotCPUShare must be in (0, 1] (got %v) and SnapshotBurst >= 0 (got %v)", c.SnapshotCPUShare, c.SnapshotBurst))
	}
	if err := c.Admission.Validate(); err != nil && !c.DisableAdmission {
		errs = append(errs, fmt.Errorf("admission: %w", err))
	}
	if err := c.Scheduler.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("scheduler: %w", err))
	}
	if err := c.Supervision.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("supervision: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("actors: invalid config: %w", err)
	}
	return nil
}
