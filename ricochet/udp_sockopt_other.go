//go:build !linux

package ricochet

import (
	"context"
	"net"
)

var bgContext = context.Background()

// multicastListenConfig: outside Linux the multicast socket is opened
// without SO_REUSEADDR (portable code cannot set it before bind through the
// standard library), so only one node per host can use a given
// MulticastPort, and every group joined on the host is delivered to it.
func multicastListenConfig() net.ListenConfig { return net.ListenConfig{} }
