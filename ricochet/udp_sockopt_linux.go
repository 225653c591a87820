//go:build linux

package ricochet

import (
	"context"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

var bgContext = context.Background()

// multicastListenConfig returns a ListenConfig for the shared multicast
// socket: SO_REUSEADDR lets several sockets on the host bind the group port
// (each joined socket receives its own copy of every multicast datagram), and
// IP_MULTICAST_ALL=0 makes the socket receive only the groups it joined
// itself (Linux's default, 1, would deliver every group joined by any socket
// on the host to every socket bound to the port).
func multicastListenConfig() net.ListenConfig {
	return net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
				return
			}
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MULTICAST_ALL, 0)
		})
		if err != nil {
			return err
		}
		return serr
	}}
}
