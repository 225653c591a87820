//go:build linux

package gateway

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// receivedAgo returns how long ago the kernel last received data on c: for
// a request written in one piece, how long its bytes waited in the socket
// before the gateway read its headers. Linux keeps it per TCP socket
// (tcp_info's last_data_recv) in milliseconds counted in scheduler ticks
// (CONFIG_HZ: 4 ms at 250 Hz), so it is exact only to a tick either way;
// false when c is not a TCP connection or the kernel did not say.
func receivedAgo(c net.Conn) (time.Duration, bool) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return 0, false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return 0, false
	}
	var info *unix.TCPInfo
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil || gerr != nil {
		return 0, false
	}
	return time.Duration(info.Last_data_recv) * time.Millisecond, true
}
