// Package group defines the group transport: how the clones of one service
// exchange messages (ops, heartbeats, catch-up). The actor layer talks only to
// this interface, so the in-process implementation (memgroup) used by
// `tempest-node dev` and by tests, and the Ricochet multicast used in a
// cluster, are interchangeable.
//
// Delivery is unreliable and unordered by contract: a payload may be lost,
// delayed, reordered or duplicated. The layers above tolerate all four
// (collections order and deduplicate ops; catch-up repairs losses).
package group

import "errors"

// Receiver is called for each payload that reaches a member. It runs on the
// transport's goroutine, so it must hand the payload off quickly (e.g. send it
// to an actor) and must not retain payload after returning unless it copied it.
type Receiver func(from string, payload []byte)

// Transport joins members to groups.
type Transport interface {
	// Join makes member a member of group; recv gets what other members send.
	// Joining twice with the same (group, member) fails with ErrAlreadyJoined.
	Join(group, member string, recv Receiver) (Endpoint, error)
}

// Endpoint is one member's handle on its group.
type Endpoint interface {
	// Broadcast sends payload to every other current member of the group.
	Broadcast(payload []byte) error
	// Send sends payload to one member of the group.
	Send(to string, payload []byte) error
	// Members lists the current members of the group, self included, sorted.
	Members() []string
	// Leave removes the member; the endpoint is unusable afterwards.
	Leave() error
}

// Sentinel errors of group transports.
var (
	ErrAlreadyJoined = errors.New("group: member already joined")
	ErrClosed        = errors.New("group: endpoint or transport closed")
	ErrUnknownMember = errors.New("group: unknown member")
	ErrTooLarge      = errors.New("group: payload too large")
)
