package ricochet

import "errors"

// Sentinel errors of the Ricochet engine, the in-memory transport and the
// Node runner. They are wrapped with %w and detail; test them with
// errors.Is. (The wire codec's and UDP transport's errors are in
// wire_errors.go, prefixed ErrWire/ErrUDP.)
var (
	// ErrInvalidConfig: a Config (or FaultConfig) field is out of range.
	ErrInvalidConfig = errors.New("ricochet: invalid configuration")
	// ErrNotMember: this node is not a member of the group it tried to send to.
	ErrNotMember = errors.New("ricochet: not a member of the group")
	// ErrMessageTooLarge: the payload needs more fragments than
	// Config.MaxMessageSize (or the 16-bit fragment count) allows.
	ErrMessageTooLarge = errors.New("ricochet: message too large")
	// ErrClosed: the Node or the in-memory network/transport was closed.
	ErrClosed = errors.New("ricochet: closed")
	// ErrUnknownNode: the in-memory network has no transport for the destination.
	ErrUnknownNode = errors.New("ricochet: unknown node")
)
