package ricochet

import (
	"fmt"
	"time"
)

// NodeID names a Ricochet endpoint. The layer above maps its node names to
// IDs (they are small on the wire and cheap to compare).
type NodeID uint32

// GroupID names a multicast group (in Tempest: the clones of one service).
type GroupID uint32

// PacketID identifies one data packet: each (group, sender) pair numbers its
// packets 1, 2, 3, ... with no gaps, which is how receivers detect loss.
type PacketID struct {
	Group  GroupID
	Sender NodeID
	Seq    uint64
}

func (id PacketID) String() string { return fmt.Sprintf("g%d/n%d#%d", id.Group, id.Sender, id.Seq) }

// Kind is the type of a Ricochet packet.
type Kind uint8

const (
	// KindData carries (a fragment of) an application payload.
	KindData Kind = 1
	// KindRepair carries the XOR of several data payloads (lateral error correction).
	KindRepair Kind = 2
	// KindNak asks a sender to retransmit packets the receiver could not recover.
	KindNak Kind = 3
	// KindSession announces a sender's highest sequence number in a group so
	// receivers detect losses at the tail of a burst (nothing follows to reveal the gap).
	KindSession Kind = 4
	// KindNakMiss answers a NAK for packets no longer in the retransmission buffer.
	KindNakMiss Kind = 5
)

func (k Kind) String() string {
	switch k {
	case KindData:
		return "data"
	case KindRepair:
		return "repair"
	case KindNak:
		return "nak"
	case KindSession:
		return "session"
	case KindNakMiss:
		return "nak-miss"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Data is one data packet. Payloads larger than one datagram are split into
// fragments with consecutive sequence numbers: fragment i of n has Seq =
// first+i, so the receiver finds the whole message from any fragment.
type Data struct {
	ID         PacketID
	FragIndex  uint16 // 0-based index of this fragment
	FragCount  uint16 // number of fragments of the message (1 when not fragmented)
	Retransmit bool   // sent by the original sender in answer to a NAK
	Payload    []byte
}

// RepairEntry describes one data packet folded into a repair packet: enough to
// rebuild the whole Data once its payload is recovered by XOR.
type RepairEntry struct {
	ID        PacketID
	FragIndex uint16
	FragCount uint16
	Length    uint32 // payload length before padding
}

// Repair is the XOR of the payloads of Entries, each padded with zeros to the
// longest. A receiver missing exactly one of them recovers it at once.
type Repair struct {
	Entries []RepairEntry
	XOR     []byte
}

// Nak asks Sender for the listed sequence numbers of Group.
type Nak struct {
	Group  GroupID
	Sender NodeID
	Seqs   []uint64
}

// Session announces that Sender has sent every sequence number up to LastSeq in Group.
type Session struct {
	Group   GroupID
	Sender  NodeID
	LastSeq uint64
}

// NakMiss tells a receiver that the listed packets are gone from the
// sender's retransmission buffer: they are unrecoverable by Ricochet and
// must be repaired by the layer above (gossip).
type NakMiss struct {
	Group  GroupID
	Sender NodeID
	Seqs   []uint64
}

// Packet is one datagram. From is the node that sent this datagram (for a
// repair, the receiver that built it; for data, the original sender or the
// retransmitter). Exactly one body pointer matching Kind is set.
type Packet struct {
	Kind    Kind
	From    NodeID
	Data    *Data
	Repair  *Repair
	Nak     *Nak
	Session *Session
	NakMiss *NakMiss
}

// Inbound is a packet received by a Transport, already decoded and authenticated.
type Inbound struct {
	Packet *Packet
	At     time.Time
}

// Transport moves packets between Ricochet nodes. Implementations: the UDP
// transport (IP multicast or unicast fan-out) and the in-memory transport
// with fault hooks used by deterministic tests and simulation.
type Transport interface {
	// Unicast sends p to one node.
	Unicast(to NodeID, p *Packet) error
	// Multicast sends p to every node in members (self excluded by the caller):
	// as one IP multicast datagram when group g has a multicast address,
	// otherwise by unicast fan-out.
	Multicast(g GroupID, members []NodeID, p *Packet) error
	// Inbound yields received packets until Close.
	Inbound() <-chan Inbound
	// Close releases the transport; Inbound is closed afterwards.
	Close() error
}
