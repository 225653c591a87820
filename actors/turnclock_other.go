//go:build !linux

package actors

import "time"

// threadCPUTime: no thread CPU clock here.
func threadCPUTime() (tid int, cpu time.Duration, ok bool) { return 0, 0, false }
