package actors

import (
	"sync/atomic"
	"time"

	"github.com/tempestrt/tempest/persistence"
	"github.com/tempestrt/tempest/proto/tempestpb"
)

// Messages between the runtime's actors. They never leave the process, so
// they are plain Go structs (protoactor requires protobuf only for remote
// messages).

// callRequest asks a scheduler to run a method. The answer goes to reply,
// exactly once, without blocking (the channel has room for every answer
// the caller can get). A channel rather than a protoactor future: a future
// cannot be cancelled, so a hedged call would leave a goroutine waiting on
// the losing future until its timeout, past Node.Stop.
type callRequest struct {
	method   string
	body     []byte
	deadline time.Time
	arrived  time.Time
	reply    chan<- callResult
	// settled is set by Node.Call once it has its answer or gave up; it is
	// shared by every copy of the request (hedge, retry). A scheduler drops
	// a settled request instead of running it: a hedge that lost the race,
	// or a caller that is gone, must not take capacity from live requests.
	settled *atomic.Bool
}

// callResult is the answer to a callRequest, or (ack) the scheduler's
// notice that it admitted the request and expects to answer by expect.
type callResult struct {
	body   []byte
	err    error
	ack    bool
	expect time.Time
	at     time.Time // when the answer was sent
	// started is when the handler started (zero if it never ran): Node.Call
	// feeds the queueing delay, started - arrival, to the front door.
	started time.Time
}

// drain tells a scheduler to run the next ready request from its queue.
type drain struct{}

// tick drives a scheduler's periodic work: heartbeat, compaction, snapshot,
// status refresh, and release of held-back updates.
type tick struct{}

// repairTick drives a repair agent's catch-up round: with one random peer,
// or with every peer (right after the clone's scheduler started).
type repairTick struct{ all bool }

// inbound is a payload from the group transport, as received by the member.
type inbound struct {
	from    string
	payload []byte
}

// deliverOps hands ops received from peers to the scheduler.
type deliverOps struct {
	ops    []*tempestpb.Op
	source opSource
}

// opSource says how ops reached a clone, for status.
type opSource int

const (
	sourceMulticast opSource = iota
	sourceCatchup
)

// deliverHeartbeat hands a peer's heartbeat to the scheduler.
type deliverHeartbeat struct{ hb *tempestpb.Heartbeat }

// broadcast asks the member to send an encoded GroupMessage to every other clone.
type broadcast struct{ payload []byte }

// unicast asks the member to send an encoded GroupMessage to one clone.
type unicast struct {
	to      string
	payload []byte
}

// persisted tells a scheduler that one of its own updates is durable: how
// long the answer waited for the op log after the handler ran
// (schedq.ObserveTail).
type persisted struct {
	method string
	tail   time.Duration
}

// snapshotSaved tells a scheduler that the snapshot it submitted is durable
// and covers the op log up to pos.
type snapshotSaved struct{ pos uint64 }

// clockPassed tells a starting scheduler that the physical clock has passed
// its recovered clock (see schedulerActor.start): it may serve.
type clockPassed struct{}

// catchupRequest hands a peer's catch-up request to the repair agent.
type catchupRequest struct{ req *tempestpb.CatchupRequest }

// summaryRequest asks the scheduler for its version vector; it answers with
// *summary.
type summaryRequest struct{}

type summary struct{ have map[string]uint64 }

// persistFailed tells a scheduler that its op log could not store ops it had
// already applied; the scheduler crashes so that its restart reloads a state
// that matches the disk.
// w is the Writer that failed: a restarted scheduler ignores the failures of
// its dead incarnation's Writer.
type persistFailed struct {
	w   *persistence.Writer
	err error
}

// crash makes the receiving actor panic: the chaos API's way to kill an
// actor so that its supervisor restarts it.
type crash struct{ reason string }

// chaosPanic is the panic value of a crash, so logs and supervision events
// show that the failure was injected.
type chaosPanic struct{ reason string }

func (c chaosPanic) String() string { return "chaos: " + c.reason }

// statusRequest asks a scheduler to publish fresh figures into its clone's
// status; it answers *statusPublished once done.
type statusRequest struct{}

type statusPublished struct{}
