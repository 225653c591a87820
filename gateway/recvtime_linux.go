//go:build linux

package gateway

import (
	"net"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// receivedAgo returns how long ago the kernel last received data on c: for
// a request written in one piece, how long its bytes waited in the socket
// before the gateway read its headers. Linux keeps it per TCP socket
// (tcp_info's last_data_recv) in milliseconds counted in scheduler ticks
// (CONFIG_HZ: 4 ms at 250 Hz), so it is exact only to a tick either way;
// false when c is not a TCP connection or the kernel did not say.
func receivedAgo(c net.Conn) (time.Duration, bool) {
	rc := newRecvClock(c)
	if rc == nil {
		return 0, false
	}
	return rc.ago()
}

// recvClock asks one connection's socket when it last received data,
// without allocating (the front end's loop asks it for every request).
type recvClock struct {
	raw  syscall.RawConn
	info unix.TCPInfo
	err  syscall.Errno
	read func(fd uintptr) // r.readInfo, bound once
}

// newRecvClock returns c's clock, nil if c is not a TCP connection.
func newRecvClock(c net.Conn) *recvClock {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	r := &recvClock{raw: raw}
	r.read = r.readInfo
	return r
}

func (r *recvClock) readInfo(fd uintptr) {
	n := uint32(unsafe.Sizeof(r.info))
	// getsockopt does not block: no need to tell the Go scheduler.
	_, _, r.err = unix.RawSyscall6(unix.SYS_GETSOCKOPT, fd, unix.IPPROTO_TCP, unix.TCP_INFO,
		uintptr(unsafe.Pointer(&r.info)), uintptr(unsafe.Pointer(&n)), 0)
}

// ago is receivedAgo for the clock's connection.
func (r *recvClock) ago() (time.Duration, bool) {
	if err := r.raw.Control(r.read); err != nil || r.err != 0 {
		return 0, false
	}
	return time.Duration(r.info.Last_data_recv) * time.Millisecond, true
}
