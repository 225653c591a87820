package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
)

// The node's garbage-collector policy. A node's heap is mostly its replicas.
// While their items were Go objects, marking them was a cycle's cost and
// grew with the state: at 1M cart items x 3 replicas (~780 MB live, one
// pinned CPU, 2,000 requests/s) Go's default GOGC=100 took a quarter of the
// node's CPU, and the node ran GOGC=400 to space the cycles out. Quiet items
// now live in the collections' cold tables, which hold no pointers
// (collections/cold.go): a cycle marks the hot items, buffers and the
// runtime's own, not the state. Measured with tempest-bench state at 1M
// items (30 s, 2,000/s, one pinned CPU, one run each): GOGC 400, 200 and 100
// gave p99 6.2, 5.2 and 5.5 ms and 352, 347 and 337 us of CPU per request,
// with RSS 1,794, 1,132 and 802 MB. So the node keeps Go's default, and the
// flag stays for a heap that is mostly something else. The soft memory
// limit (GOMEMLIMIT) makes the GC run earlier when the heap would otherwise
// outgrow what the machine can give.
const (
	// defaultGCPercent is the node's GOGC (see above).
	defaultGCPercent = 100
	// memoryLimitShare is the part of the memory the process may use (its
	// cgroup's limit, else the machine's RAM) that --memory-limit=auto
	// sets as GOMEMLIMIT: the rest is for what the Go heap does not count
	// (pebble's block cache and memtables are allocated outside it, thread
	// stacks, the kernel's page cache for the data directory).
	memoryLimitShare = 0.75
)

// gcPolicy is what tuneGC set.
type gcPolicy struct {
	Percent     int   // GOGC in force
	LimitBytes  int64 // GOMEMLIMIT in force, 0: none
	FromEnv     bool  // GOGC or GOMEMLIMIT came from the environment
	LimitSource string
}

// tuneGC applies --gc-percent and --memory-limit unless the GOGC or
// GOMEMLIMIT variables are set (the runtime has applied those already).
// limit is "auto", "off" or a size such as 12GiB, 800MB, 1073741824.
func tuneGC(percent int, limit string) (gcPolicy, error) {
	var p gcPolicy
	if os.Getenv("GOGC") != "" {
		p.FromEnv = true
		s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
		metrics.Read(s)
		p.Percent = int(s[0].Value.Uint64())
	} else {
		if percent <= 0 {
			return p, fmt.Errorf("--gc-percent %d: must be > 0", percent)
		}
		debug.SetGCPercent(percent)
		p.Percent = percent
	}
	if os.Getenv("GOMEMLIMIT") != "" {
		p.FromEnv = true
		p.LimitBytes = debug.SetMemoryLimit(-1) // -1 reads it
		p.LimitSource = "GOMEMLIMIT"
		return p, nil
	}
	b, src, err := memoryLimit(limit, availableMemory())
	if err != nil {
		return p, err
	}
	p.LimitSource = src
	if b > 0 {
		debug.SetMemoryLimit(b)
		p.LimitBytes = b
	}
	return p, nil
}

// memoryLimit resolves --memory-limit against the memory available (0:
// unknown) to a GOMEMLIMIT in bytes (0: none).
func memoryLimit(flag string, available int64) (int64, string, error) {
	switch strings.ToLower(strings.TrimSpace(flag)) {
	case "off", "none", "0":
		return 0, "off", nil
	case "auto", "":
		if available <= 0 {
			return 0, "auto: available memory unknown, none set", nil
		}
		return int64(float64(available) * memoryLimitShare), fmt.Sprintf("auto: %.0f%% of %d bytes", memoryLimitShare*100, available), nil
	}
	b, err := parseBytes(flag)
	if err != nil {
		return 0, "", fmt.Errorf("--memory-limit %q: %w", flag, err)
	}
	return b, "flag", nil
}

// parseBytes reads a size: digits with an optional unit B, KB, MB, GB, TB
// (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024).
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	num, unit := s[:i], strings.ToLower(strings.TrimSpace(s[i:]))
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("not a positive size")
	}
	mult := map[string]float64{"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
		"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("unknown unit %q (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)", unit)
	}
	if v*mult >= 1<<62 {
		return 0, fmt.Errorf("too large")
	}
	return int64(v * mult), nil
}

// availableMemory is the memory the process may use: its cgroup's limit
// (v2 memory.max, v1 memory.limit_in_bytes) when there is one, else the
// machine's RAM (/proc/meminfo MemTotal); 0 when neither can be read.
func availableMemory() int64 {
	ram := memTotal()
	for _, f := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil || v <= 0 { // "max": no limit
			continue
		}
		if ram == 0 || v < ram { // v1 reports a huge number for no limit
			return v
		}
	}
	return ram
}

func memTotal() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}
