package ricochet

import (
	"fmt"
	"time"
)

// Config configures a Ricochet Engine (and the Node that runs it). Every
// node of a cluster should use the same R, MaxPayload and timing values;
// the protocol still works with mixed values, only less efficiently.
//
// Start from DefaultConfig (a LAN) or DefaultWANConfig and change fields;
// the zero Config is not valid.
type Config struct {
	// R is the number of received data packets XORed into one repair
	// packet (the paper's r). Larger R lowers the repair overhead (C/R)
	// but makes each repair need more packets the receiver already has.
	// Default 8; range [1, 255] (the wire format's entry limit).
	R int
	// C is the number of receivers each repair packet is sent to (the
	// paper's c). Repair overhead is C/R repair packets per data packet
	// received. Default 3; range [1, 64].
	C int
	// BinsPerRegion is the number of repair bins kept per region, filled
	// round-robin ("staggering"): a burst of up to BinsPerRegion
	// consecutive losses puts at most one lost packet in each repair. The
	// price is latency: a bin closes after R*BinsPerRegion packets of its
	// region, so a packet waits for its repair about BinsPerRegion times
	// longer than with one bin. Default 3 (was 4): in the deterministic
	// simulation (ricochettest, 6 nodes, 1% i.i.d. loss, 32 groups at 2000
	// packets/s) LEC's median recovery is 2.3 ms with 3 bins, 3.4 ms with 4,
	// 1.6 ms with 2, and over UDP loopback 4 bins missed LEC p50 <= 1/5 of a
	// fair NAK-only baseline (0.18-0.22 over 3 seeds) where 2 bins made
	// 0.11-0.12; at 5% loss in bursts of mean 3 packets LEC recovers 93% of
	// losses with 3 bins, 96% with 4, 85% with 2 (NAK the rest).
	// Range [1, 64].
	BinsPerRegion int
	// StaggerShuffle fills the bins of each round in a random order
	// (drawn per round, per node) instead of a fixed one. Each round still
	// puts one packet in every bin; the random order decorrelates the
	// repairs different receivers build (see nextBin). Default true.
	StaggerShuffle bool
	// FlushInterval is how long a partly filled bin may wait for more
	// packets before it is sent as a repair over fewer than R packets, so
	// slow groups still get repairs. Default 20 ms; must be > 0. Every
	// flush of a partly filled bin costs a whole repair packet, so overhead
	// stays near C/R only while bins fill (R*BinsPerRegion packets) within
	// this interval: at 2000 pkt/s received, 10 ms flushed most bins half
	// full (0.51 repair packets per data packet against C/R = 0.375) for no
	// gain in median recovery time; 20 ms gave 0.37 (tempest-bench ricochet
	// --flush-interval, one run side by side).
	FlushInterval time.Duration
	// DisableLEC turns lateral error correction off: no repair bins, no
	// repair packets (received ones are ignored); losses are recovered by
	// NAK only. Used for comparison (the "NAK-only" baseline) and tests.
	DisableLEC bool

	// NakTimeout is how long a receiver waits, after it learned a packet
	// is missing, for LEC to recover it before it NAKs the original
	// sender. Default 20 ms; must be > 0.
	NakTimeout time.Duration
	// NakRetries is how many NAKs are sent for one missing packet before
	// it is declared unrecoverable. One NAK round fails when the NAK or the
	// retransmission is lost, with probability about 2*loss; all of them
	// fail with about (2*loss)^NakRetries: at 5% loss 1e-4 per lost packet
	// with 4 tries (a few packets in every run of 60,000 packets to 5
	// receivers), 1e-6 with the default 6. Default 6; range [1, 100].
	NakRetries int
	// NakRetryInterval is the wait after the first NAK for a packet before
	// the next one; the wait doubles after each NAK (exponential backoff)
	// up to NakRetryMax, and the packet is given up that wait after the
	// last NAK. With the LAN defaults NAKs go out 20, 40, 80, 160, 320 and
	// 480 ms after the loss was detected and the packet is declared
	// unrecoverable at 640 ms, so a sender stalled for a couple of hundred
	// ms is still asked when it wakes (a fixed 20 ms, 4 tries, gave up
	// after 100 ms). Default 20 ms; must be > 0.
	NakRetryInterval time.Duration
	// NakRetryMax caps the doubling wait between NAKs for one packet.
	// Default 160 ms; >= NakRetryInterval.
	NakRetryMax time.Duration
	// MaxNakSeqs bounds the sequence numbers listed in one NAK or NakMiss
	// packet; longer lists are split. Default 128; range [1, 1024] (wire limit).
	MaxNakSeqs int
	// RetransmitWindow is how long the sender keeps each packet (fragment)
	// it sent, to answer NAKs: a packet is kept at least this long unless
	// RetransmitBytes forces it out earlier. A NAK for a packet no longer
	// kept is answered by NakMiss and the packet is delivered to the
	// receiver as unrecoverable. Sized by time, not by a count of packets,
	// because what must be survived is a pause (a receiver or its machine
	// stalling for tens of ms, then NAKing) whatever the send rate.
	// It must cover the NAK give-up time (640 ms after detection with the
	// LAN defaults). Default 2 s (LAN), 10 s (WAN); must be > 0.
	RetransmitWindow time.Duration
	// RetransmitBytes caps the retransmission buffer of the whole engine
	// (all groups together), in bytes: each kept packet counts its payload
	// plus RetransmitPacketOverhead. When sending would exceed the cap, the
	// oldest packets (of any group) are dropped first, even if younger
	// than RetransmitWindow. Default 64 MiB, which keeps the full 2 s
	// window up to about 30 MiB/s sent (e.g. 25,000 packets/s of 1200
	// bytes); must be >= MaxPayload + RetransmitPacketOverhead.
	RetransmitBytes int

	// MaxPayload is the largest data payload per packet (fragment), in
	// bytes; larger messages are fragmented. With the wire codec's default
	// 1472-byte datagram, MaxPayload + WireRepairOverhead(R) must be <= 1472
	// so repairs fit too (1200 leaves room for R <= 11). Default 1200;
	// range [1, 65535].
	MaxPayload int
	// MaxMessageSize is the largest message Send accepts, in bytes.
	// Default 1 MiB; range [1, 65535*MaxPayload].
	MaxMessageSize int
	// ReassemblyTimeout bounds how long a partly received message is kept
	// waiting for its missing fragments; it is then dropped and its
	// unresolved fragments reported unrecoverable. Default 2 s; > 0.
	ReassemblyTimeout time.Duration
	// MaxReassemblyBytes bounds the payload bytes held in partly received
	// messages; the oldest partial message is dropped (as above) to stay
	// under it. Default 16 MiB; >= MaxPayload.
	MaxReassemblyBytes int

	// SessionInterval: a sender announces its last sequence number in a
	// group (a Session packet) once it has been idle in that group for
	// this long after sending, so receivers detect losses at the tail of a
	// burst. Default 20 ms; must be > 0.
	SessionInterval time.Duration
	// SessionRepeat: a sender re-announces its last sequence number in
	// every group it has sent to at least this often, even when idle (in
	// case the previous Session was lost). Default 1 s; >= SessionInterval.
	SessionRepeat time.Duration

	// MaxHeldRepairs bounds the repair packets kept because they miss more
	// than one packet (iterative recovery); the oldest is dropped first.
	// Default 1024; >= 0.
	MaxHeldRepairs int
	// RepairExpiry is how long a held repair is kept, and how long the
	// payloads of received packets are cached to XOR them out of repairs
	// that arrive later. Default 500 ms; must be > 0.
	RepairExpiry time.Duration
	// PayloadCache bounds the number of received payloads cached for
	// repair decoding (see RepairExpiry). Default 8192; >= 0.
	PayloadCache int

	// MaxGap bounds the loss window tracked per (group, sender) stream, in
	// sequence numbers: when a stream's highest known sequence number runs
	// more than MaxGap ahead of its oldest unresolved one, the older
	// unresolved packets are declared unrecoverable at once. Keeps memory
	// bounded across long partitions. It must cover the NAK give-up time
	// (640 ms with the LAN defaults) at the highest stream rate: the
	// default 16384 is 1.1 s at 15,000 packets/s (4096 was 270 ms, less
	// than the NAK retries take). Default 16384; >= 1.
	MaxGap int
	// JoinWindow: when this node first hears of a (group, sender) stream
	// at sequence number S, the packets 1..S-1 are treated as lost (and
	// recovered) if S-1 <= JoinWindow; otherwise they are taken to predate
	// this node's membership and are skipped (Stats.JoinSkipped). Default
	// 1024; >= 0.
	JoinWindow int

	// StreamLinger is how long the receive state of a sender that left a
	// group is kept after its last packet, so its late packets and
	// duplicates are still recognised (and not delivered twice). Default
	// 1 min; must be > 0.
	StreamLinger time.Duration

	// TickInterval is how often a Node calls Engine.Tick (the resolution
	// of every timer above). Not used by the Engine itself. Default 1 ms; > 0.
	TickInterval time.Duration
}

// RetransmitPacketOverhead is what each packet kept for retransmission
// counts against Config.RetransmitBytes on top of its payload, in bytes (the
// packet's own bookkeeping), so a stream of tiny packets is bounded too.
const RetransmitPacketOverhead = 64

// DefaultConfig returns the LAN defaults (DefaultLANConfig).
func DefaultConfig() Config { return DefaultLANConfig() }

// DefaultLANConfig returns defaults for a LAN (sub-millisecond round trips):
// R=8, C=3, three staggered bins per region, repairs flushed after 20 ms,
// NAK after 20 ms.
func DefaultLANConfig() Config {
	return Config{
		R:                  8,
		C:                  3,
		BinsPerRegion:      3,
		StaggerShuffle:     true,
		FlushInterval:      20 * time.Millisecond,
		NakTimeout:         20 * time.Millisecond,
		NakRetries:         6,
		NakRetryInterval:   20 * time.Millisecond,
		NakRetryMax:        160 * time.Millisecond,
		MaxNakSeqs:         128,
		RetransmitWindow:   2 * time.Second,
		RetransmitBytes:    64 << 20,
		MaxPayload:         1200,
		MaxMessageSize:     1 << 20,
		ReassemblyTimeout:  2 * time.Second,
		MaxReassemblyBytes: 16 << 20,
		SessionInterval:    20 * time.Millisecond,
		SessionRepeat:      time.Second,
		MaxHeldRepairs:     1024,
		RepairExpiry:       500 * time.Millisecond,
		PayloadCache:       8192,
		MaxGap:             16384,
		JoinWindow:         1024,
		StreamLinger:       time.Minute,
		TickInterval:       time.Millisecond,
	}
}

// DefaultWANConfig returns defaults for round trips of tens of milliseconds:
// the LAN values with longer flush, NAK, session and expiry timers.
func DefaultWANConfig() Config {
	c := DefaultLANConfig()
	c.FlushInterval = 40 * time.Millisecond
	c.NakTimeout = 150 * time.Millisecond
	c.NakRetryInterval = 150 * time.Millisecond
	c.NakRetryMax = 1200 * time.Millisecond
	c.RetransmitWindow = 10 * time.Second // NAKs until 4.8 s after detection
	c.SessionInterval = 100 * time.Millisecond
	c.RepairExpiry = 2 * time.Second
	c.ReassemblyTimeout = 5 * time.Second
	c.TickInterval = 5 * time.Millisecond
	return c
}

// Validate reports the first out-of-range field, wrapped in ErrInvalidConfig.
func (c Config) Validate() error {
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("%w: %s = %v, want %s", ErrInvalidConfig, field, v, want)
	}
	switch {
	case c.R < 1 || c.R > 255:
		return bad("R", c.R, "[1, 255]")
	case c.C < 1 || c.C > 64:
		return bad("C", c.C, "[1, 64]")
	case c.BinsPerRegion < 1 || c.BinsPerRegion > 64:
		return bad("BinsPerRegion", c.BinsPerRegion, "[1, 64]")
	case c.FlushInterval <= 0:
		return bad("FlushInterval", c.FlushInterval, "> 0")
	case c.NakTimeout <= 0:
		return bad("NakTimeout", c.NakTimeout, "> 0")
	case c.NakRetries < 1 || c.NakRetries > 100:
		return bad("NakRetries", c.NakRetries, "[1, 100]")
	case c.NakRetryInterval <= 0:
		return bad("NakRetryInterval", c.NakRetryInterval, "> 0")
	case c.NakRetryMax < c.NakRetryInterval:
		return bad("NakRetryMax", c.NakRetryMax, ">= NakRetryInterval")
	case c.MaxNakSeqs < 1 || c.MaxNakSeqs > 1024:
		return bad("MaxNakSeqs", c.MaxNakSeqs, "[1, 1024]")
	case c.RetransmitWindow <= 0:
		return bad("RetransmitWindow", c.RetransmitWindow, "> 0")
	case c.MaxPayload < 1 || c.MaxPayload > 65535:
		return bad("MaxPayload", c.MaxPayload, "[1, 65535]")
	case c.RetransmitBytes < c.MaxPayload+RetransmitPacketOverhead:
		return bad("RetransmitBytes", c.RetransmitBytes, ">= MaxPayload + RetransmitPacketOverhead")
	case c.MaxMessageSize < 1 || c.MaxMessageSize > 65535*c.MaxPayload:
		return bad("MaxMessageSize", c.MaxMessageSize, "[1, 65535*MaxPayload]")
	case c.ReassemblyTimeout <= 0:
		return bad("ReassemblyTimeout", c.ReassemblyTimeout, "> 0")
	case c.MaxReassemblyBytes < c.MaxPayload:
		return bad("MaxReassemblyBytes", c.MaxReassemblyBytes, ">= MaxPayload")
	case c.SessionInterval <= 0:
		return bad("SessionInterval", c.SessionInterval, "> 0")
	case c.SessionRepeat < c.SessionInterval:
		return bad("SessionRepeat", c.SessionRepeat, ">= SessionInterval")
	case c.MaxHeldRepairs < 0:
		return bad("MaxHeldRepairs", c.MaxHeldRepairs, ">= 0")
	case c.RepairExpiry <= 0:
		return bad("RepairExpiry", c.RepairExpiry, "> 0")
	case c.PayloadCache < 0:
		return bad("PayloadCache", c.PayloadCache, ">= 0")
	case c.MaxGap < 1:
		return bad("MaxGap", c.MaxGap, ">= 1")
	case c.JoinWindow < 0:
		return bad("JoinWindow", c.JoinWindow, ">= 0")
	case c.StreamLinger <= 0:
		return bad("StreamLinger", c.StreamLinger, "> 0")
	case c.TickInterval <= 0:
		return bad("TickInterval", c.TickInterval, "> 0")
	}
	return nil
}

// RepairOverhead is the expected number of repair packets sent per data
// packet received, C/R (higher when slow groups make bins flush early).
func (c Config) RepairOverhead() float64 { return float64(c.C) / float64(c.R) }
