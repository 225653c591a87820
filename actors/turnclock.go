package actors

import (
	"runtime"
	"time"
)

// turnClock times a background slice (a snapshot's, a lazy load's) two
// ways: wall time, and the CPU time of the thread that ran it. They differ
// when the slice was interrupted: by the kernel running another thread on
// the CPU (a node pinned to a CPU that other processes share), by the
// garbage collector, or by the Go scheduler running other goroutines (see
// freshTimeSlice). Wall time is what a request queued behind the slice
// waited; CPU time is close to what the slice's own work cost, the figure
// Config.SnapshotSlice bounds.
//
// The CPU time is read from the thread's clock (CLOCK_THREAD_CPUTIME_ID)
// at both ends. It is an upper bound of the slice's own: if the Go
// scheduler ran other goroutines on that thread in between, their work is
// counted too. If the slice ended on another thread than it began, or the
// platform has no thread clock, it is unknown: stop then reports the wall
// time as the CPU time, and known false. (Locking
// the goroutine to its thread for the slice would make it exact, but a
// snapshot stream's iteration is an iter.Pull coroutine, which must be
// resumed with the thread locking it was created with.)
type turnClock struct {
	wall0 time.Time
	cpu0  time.Duration
	tid   int
	cpuOK bool
}

func startTurn() turnClock {
	tid, cpu, ok := threadCPUTime()
	return turnClock{wall0: time.Now(), cpu0: cpu, tid: tid, cpuOK: ok}
}

// stop returns the slice's wall and CPU time, and whether the CPU time is
// known (else it is the wall time).
func (c turnClock) stop() (wall, cpu time.Duration, known bool) {
	wall = time.Since(c.wall0)
	if c.cpuOK {
		if tid, now, ok := threadCPUTime(); ok && tid == c.tid {
			return wall, min(wall, max(0, now-c.cpu0)), true
		}
	}
	return wall, wall, false
}

// freshTimeSlice yields the processor before a background slice: what
// other goroutines have ready to run (the gateway's handlers, other
// clones' schedulers, the committer) runs before the slice rather than
// while it waits behind it, and the slice starts a Go time slice of its
// own. Measured, tempest-bench state at 1M items on one CPU, two pairs
// without/with: request p99 6.8/6.8 -> 6.3/6.2 ms, p99.9 17.0/15.2 ->
// 13.1/13.5 ms. The slices' own wall-time outliers were not fewer (turns
// over 1 ms: 36/45 -> 53/34 of ~600): their CPU time stayed under 1 ms,
// so what stretched them was the kernel running other threads on the CPU
// (the node's own fsyncs and pebble's writes, in syscalls), not the Go
// scheduler.
func freshTimeSlice() { runtime.Gosched() }
