//go:build !linux

package gateway

import (
	"net"
	"time"
)

// receivedAgo: only Linux says when a socket last received data (see
// recvtime_linux.go); elsewhere a request's budget runs from its headers.
func receivedAgo(net.Conn) (time.Duration, bool) { return 0, false }

// recvClock: see recvtime_linux.go.
type recvClock struct{}

func newRecvClock(net.Conn) *recvClock { return nil }

func (*recvClock) ago() (time.Duration, bool) { return 0, false }
