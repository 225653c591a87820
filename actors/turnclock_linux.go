package actors

import (
	"time"

	"golang.org/x/sys/unix"
)

// threadCPUTime is the calling OS thread's id and CPU time.
func threadCPUTime() (tid int, cpu time.Duration, ok bool) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0, 0, false
	}
	return unix.Gettid(), time.Duration(ts.Nano()), true
}
