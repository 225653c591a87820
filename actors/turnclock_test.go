package actors

import (
	"runtime"
	"testing"
	"time"
)

// TestTurnClockCountsOnlyTheSlicesCPU: a turn that waits (here, sleeps,
// on a locked thread so that the thread does not change) has a wall time
// of the wait and a CPU time of its own work only; a turn that works has
// CPU time. Not a timing benchmark: the bounds are wide.
func TestTurnClockCountsOnlyTheSlicesCPU(t *testing.T) {
	if _, _, ok := threadCPUTime(); !ok {
		t.Skip("no thread CPU clock on " + runtime.GOOS)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c := startTurn()
	time.Sleep(30 * time.Millisecond)
	wall, cpu, known := c.stop()
	if !known {
		t.Fatal("CPU time unknown on a locked thread")
	}
	if wall < 30*time.Millisecond || cpu > 15*time.Millisecond {
		t.Fatalf("a turn asleep for 30 ms: wall %v, cpu %v: want wall >= 30 ms and cpu well below it", wall, cpu)
	}
	c = startTurn()
	x := 0
	for start := time.Now(); time.Since(start) < 5*time.Millisecond; x++ {
	}
	wall, cpu, _ = c.stop()
	if cpu <= 0 || cpu > wall+time.Millisecond {
		t.Fatalf("a turn spinning for 5 ms (%d rounds): wall %v, cpu %v: want 0 < cpu <= wall", x, wall, cpu)
	}
}
