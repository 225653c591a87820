package ricochet

import "errors"

// Sentinel errors of the wire codec and the UDP transport. (The engine's
// errors live in errors.go; these carry an ErrWire/ErrUDP prefix so the two
// sets never clash.) Callers test them with errors.Is; the codec and the
// transport wrap them with %w and add detail.
var (
	// ErrWireTruncated: the datagram ends before a field it must contain.
	ErrWireTruncated = errors.New("ricochet/wire: truncated datagram")
	// ErrWireBadMagic: the datagram does not start with the Ricochet magic bytes.
	ErrWireBadMagic = errors.New("ricochet/wire: bad magic")
	// ErrWireVersion: the datagram has a wire-format version this build does not speak.
	ErrWireVersion = errors.New("ricochet/wire: unsupported version")
	// ErrWireKind: the kind byte names no known packet kind.
	ErrWireKind = errors.New("ricochet/wire: unknown packet kind")
	// ErrWireAuth: the authentication tag matches none of the cluster keys.
	ErrWireAuth = errors.New("ricochet/wire: authentication failed")
	// ErrWireMalformed: the body is inconsistent (length mismatch, trailing
	// bytes, invalid field values).
	ErrWireMalformed = errors.New("ricochet/wire: malformed body")
	// ErrWireCount: a repeated field (repair entries, NAK sequence numbers)
	// exceeds its bound.
	ErrWireCount = errors.New("ricochet/wire: count out of bounds")
	// ErrWireOversize: the datagram exceeds the configured maximum size
	// (on encode: the packet does not fit; on receive: it was too big).
	ErrWireOversize = errors.New("ricochet/wire: datagram too large")
	// ErrWireConfig: the codec configuration is invalid (no key, short key, bad size).
	ErrWireConfig = errors.New("ricochet/wire: invalid configuration")

	// ErrUDPClosed: the UDP transport was closed.
	ErrUDPClosed = errors.New("ricochet/udp: transport closed")
	// ErrUDPUnknownPeer: no address is known for the destination node.
	ErrUDPUnknownPeer = errors.New("ricochet/udp: unknown peer")
	// ErrUDPConfig: the UDP transport configuration is invalid.
	ErrUDPConfig = errors.New("ricochet/udp: invalid configuration")
	// ErrUDPMulticast: the transport could not set up IP multicast
	// (no interface, join refused, multicast disabled in the config).
	ErrUDPMulticast = errors.New("ricochet/udp: multicast unavailable")
)
