package collections

import (
	"cmp"
	"fmt"
	"math"
	"time"

	"github.com/tempestrt/tempest/proto/tempestpb"
)

// Timestamp is a hybrid logical clock reading: physical milliseconds since
// the Unix epoch plus a logical counter that orders events within one
// millisecond (or while the clock is held back by a faster peer).
//
// Timestamps are compared lexicographically (WallMs, then Logical). Ops are
// ordered by (Timestamp, Origin, Seq): see OpID and Store.
type Timestamp struct {
	WallMs  uint64
	Logical uint32
}

// TimestampOf returns the timestamp carried by op.
func TimestampOf(op *tempestpb.Op) Timestamp {
	return Timestamp{WallMs: op.GetWallMs(), Logical: op.GetLogical()}
}

// Compare returns -1, 0 or +1 as t is before, equal to or after u.
func (t Timestamp) Compare(u Timestamp) int {
	if c := cmp.Compare(t.WallMs, u.WallMs); c != 0 {
		return c
	}
	return cmp.Compare(t.Logical, u.Logical)
}

// Less reports whether t is strictly before u.
func (t Timestamp) Less(u Timestamp) bool { return t.Compare(u) < 0 }

// IsZero reports whether t is the zero timestamp (nothing known).
func (t Timestamp) IsZero() bool { return t.WallMs == 0 && t.Logical == 0 }

// Time returns the physical part of t.
func (t Timestamp) Time() time.Time {
	return time.UnixMilli(int64(min(t.WallMs, math.MaxInt64)))
}

// String formats t as "2006-01-02T15:04:05.000Z+logical" (UTC), or "0".
func (t Timestamp) String() string {
	if t.IsZero() {
		return "0"
	}
	if t.WallMs > maxSaneWallMs {
		return fmt.Sprintf("%dms+%d", t.WallMs, t.Logical)
	}
	return fmt.Sprintf("%s+%d", t.Time().UTC().Format("2006-01-02T15:04:05.000Z"), t.Logical)
}

// Pack maps t onto one uint64, wall<<16 | min(logical, 0xffff), for use as
// a scheduler watermark. It is monotone (t <= u implies Pack(t) <= Pack(u))
// but not injective: logical counters above 0xffff saturate, and wall
// clocks beyond 2^48 ms (year 10889) saturate to MaxUint64.
func (t Timestamp) Pack() uint64 {
	const maxWall = 1<<48 - 1
	if t.WallMs > maxWall {
		return math.MaxUint64
	}
	return t.WallMs<<16 | uint64(min(t.Logical, 0xffff))
}

// maxSaneWallMs bounds every clock reading the HLC accepts, trusted or not
// (2^47 ms is the year 6429): far beyond any real clock, far below the
// overflow of Pack or of WallMs+1.
const maxSaneWallMs = 1 << 47

// DefaultMaxDrift is how far ahead of the local physical clock a remote
// timestamp may drag the HLC (HLC.MaxDrift's default).
//
// Why a cap, and why 10 s: the HLC follows remote clocks so that an op a
// replica issues after seeing another is ordered after it. Following
// without bound lets one node with a wrong clock (or one corrupt op with
// wall_ms = 2^60) drag every replica's clock — and hence every future op
// and the stable point — arbitrarily far into the future, permanently.
// With the cap, a replica's clock runs at most MaxDrift ahead of its own
// physical time. What is given up, only for peers whose clocks are more
// than MaxDrift ahead: an op issued after observing one of their ops may
// be ordered before it (every replica still computes the same order, so
// convergence and per-item sequential consistency are unaffected), and
// their ops stay tentative until the other replicas' clocks pass them. Ten
// seconds is two orders of magnitude above NTP-synchronised skew, so
// healthy clusters never hit the cap.
const DefaultMaxDrift = 10 * time.Second

// HLC is a hybrid logical clock (Kulkarni et al., 2014). Readings are
// strictly increasing, never behind the physical clock, and after
// Observe(ts) later than ts (subject to MaxDrift).
//
// An HLC is not safe for concurrent use; the Store that owns it is driven
// by one goroutine.
type HLC struct {
	now  func() time.Time
	last Timestamp

	// MaxDrift caps how far Observe may move the clock ahead of physical
	// time (see DefaultMaxDrift). Zero or negative: no cap (still bounded
	// by year 6429).
	MaxDrift time.Duration

	clamped uint64
}

// NewHLC returns a clock reading now (time.Now if nil), with MaxDrift =
// DefaultMaxDrift.
func NewHLC(now func() time.Time) *HLC {
	if now == nil {
		now = time.Now
	}
	return &HLC{now: now, MaxDrift: DefaultMaxDrift}
}

func (h *HLC) physical() uint64 {
	ms := h.now().UnixMilli()
	if ms < 0 {
		return 0
	}
	return min(uint64(ms), maxSaneWallMs)
}

// Now returns a new reading, strictly after every earlier reading and
// every observed timestamp, and not before the physical clock.
func (h *HLC) Now() Timestamp {
	pt := h.physical()
	switch {
	case pt > h.last.WallMs:
		h.last = Timestamp{WallMs: pt}
	case h.last.Logical == math.MaxUint32:
		h.last = Timestamp{WallMs: h.last.WallMs + 1}
	default:
		h.last.Logical++
	}
	return h.last
}

// Observe moves the clock to at least ts, so later readings are after ts.
// A ts more than MaxDrift ahead of physical time is clamped to physical
// time + MaxDrift; Observe then reports true (and Clamped counts it).
func (h *HLC) Observe(ts Timestamp) (clamped bool) {
	if h.MaxDrift > 0 {
		limit := h.physical() + uint64(h.MaxDrift.Milliseconds())
		if ts.WallMs > limit {
			ts, clamped = Timestamp{WallMs: limit}, true
		}
	}
	if ts.WallMs > maxSaneWallMs {
		ts, clamped = Timestamp{WallMs: maxSaneWallMs}, true
	}
	if clamped {
		h.clamped++
	}
	if h.last.Less(ts) {
		h.last = ts
	}
	return clamped
}

// observeTrusted is Observe without the drift cap, for the replica's own
// past readings (its own ops or heartbeats coming back from the log or a
// peer): later own ops must be after them whatever the physical clock says.
func (h *HLC) observeTrusted(ts Timestamp) {
	if ts.WallMs > maxSaneWallMs {
		ts = Timestamp{WallMs: maxSaneWallMs}
		h.clamped++
	}
	if h.last.Less(ts) {
		h.last = ts
	}
}

// Last returns the latest reading or observation (no tick).
func (h *HLC) Last() Timestamp { return h.last }

// Restore moves the clock to at least ts (a reading saved before a
// restart). Like a trusted Observe: no drift cap.
func (h *HLC) Restore(ts Timestamp) { h.observeTrusted(ts) }

// Clamped counts observations clamped by MaxDrift (or the sanity bound).
func (h *HLC) Clamped() uint64 { return h.clamped }
