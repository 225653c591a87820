package persistence

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The kill -9 test re-executes the test binary as a child process (TestMain
// sees killChildEnv and runs runKillChild instead of the tests). The child
// appends records on the real disk and prints one line per acknowledged
// Append; the parent SIGKILLs it, reopens the database and checks the
// acknowledged records against what the package doc promises.
const (
	killChildEnv = "TEMPEST_PERSISTENCE_KILL_CHILD"
	killDirEnv   = "TEMPEST_PERSISTENCE_KILL_DIR"
)

// runKillChild is the child's main. Modes:
//
//	always-stream:      SyncAlways, 4 goroutines append forever
//	interval-idle:      SyncInterval (50 ms), 100 Appends, then "idle" and sleep
//	interval-long-idle: SyncInterval (1 min), 100 Appends, then "idle" and sleep
//	none-idle:          SyncNone, 100 Appends, then "idle" and sleep
func runKillChild(mode, dir string) {
	o := DefaultOptions(dir)
	switch mode {
	case "always-stream":
	case "interval-idle":
		o.Sync, o.SyncInterval = SyncInterval, 50*time.Millisecond
	case "interval-long-idle":
		o.Sync, o.SyncInterval = SyncInterval, time.Minute
	case "none-idle":
		o.Sync = SyncNone
	default:
		fmt.Printf("ERR unknown mode %q\n", mode)
		os.Exit(2)
	}
	db, err := Open(o)
	if err != nil {
		fmt.Printf("ERR open: %v\n", err)
		os.Exit(2)
	}
	var outMu sync.Mutex
	say := func(s string) { // one write(2) per line: lines never interleave
		outMu.Lock()
		_, _ = os.Stdout.WriteString(s)
		outMu.Unlock()
	}
	appendN := func(origin string, n uint64) {
		c := db.Clone("kill/1")
		for s := uint64(1); s <= n; s++ {
			if _, err := c.Append(context.Background(), rec(origin, s)); err != nil {
				say(fmt.Sprintf("ERR append: %v\n", err))
				os.Exit(2)
			}
			say(fmt.Sprintf("ack %s %d .\n", origin, s))
		}
	}
	if mode == "always-stream" {
		for w := 0; w < 4; w++ {
			go appendN(fmt.Sprintf("w%d", w), 1<<62)
		}
	} else {
		// Let the flusher finish the fsync Open asked for (format marker)
		// and go idle, so that what follows is the steady state.
		time.Sleep(200 * time.Millisecond)
		appendN("w0", 100)
		say("idle\n")
	}
	time.Sleep(30 * time.Second) // the parent kills us long before
	os.Exit(3)
}

func TestKill9(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("needs SIGKILL semantics")
	}
	// What the package doc promises for a process crash.
	cases := []struct {
		mode             string
		minLost, maxLost uint64
	}{
		// SyncAlways: nothing acknowledged is lost, even mid-stream.
		{"always-stream", 0, 0},
		// SyncInterval: at most the last interval; the child idled for 10
		// intervals, so nothing.
		{"interval-idle", 0, 0},
		// SyncInterval with an interval longer than the test: written to the
		// OS at once except, rarely, the last group (one record here).
		{"interval-long-idle", 0, 1},
		// SyncNone: the WAL tail (100 small records < 32 KiB) is still in the
		// process's buffer: at least the last record is lost; typically all
		// are (the flusher is never woken while the child appends).
		{"none-idle", 1, 100},
	}
	for _, tc := range cases {
		t.Run(tc.mode, func(t *testing.T) {
			dir := t.TempDir()
			acked, total, lines := runAndKill(t, tc.mode, dir)
			db := openT(t, DefaultOptions(dir))
			c := db.Clone("kill/1")
			var stored uint64
			for origin, n := range acked {
				got, err := rangeAll(t, c, origin, 1, n)
				if err != nil {
					t.Fatal(err)
				}
				for i, r := range got {
					if r.Seq != uint64(i+1) || !bytes.Equal(r.Data, payload(origin, r.Seq)) {
						t.Fatalf("origin %s: stored records are not a prefix: %+v at %d", origin, r, i)
					}
				}
				stored += uint64(len(got))
			}
			t.Logf("%s: %d acknowledged, %d present after kill -9 (%d output lines)", tc.mode, total, stored, lines)
			if total == 0 {
				t.Fatal("child acknowledged nothing")
			}
			if lost := total - stored; lost < tc.minLost || lost > tc.maxLost {
				t.Fatalf("%s: lost %d of %d acknowledged records in a process crash; the package doc says between %d and %d",
					tc.mode, lost, total, tc.minLost, tc.maxLost)
			}
		})
	}
}

// runAndKill starts the child, SIGKILLs it mid-stream (after 300
// acknowledgements) or 500 ms after it reports idle, and returns the highest
// acknowledged seq per origin.
func runAndKill(t *testing.T, mode, dir string) (acked map[string]uint64, total uint64, lines int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), killChildEnv+"="+mode, killDirEnv+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	kill := func() { once.Do(func() { _ = cmd.Process.Kill() }) } // SIGKILL
	safety := time.AfterFunc(20*time.Second, kill)
	defer safety.Stop()

	acked = map[string]uint64{}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		lines++
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 4 && f[0] == "ack" && f[3] == ".":
			s, err := strconv.ParseUint(f[2], 10, 64)
			if err != nil {
				t.Fatalf("bad line %q", sc.Text())
			}
			if s != acked[f[1]]+1 {
				t.Fatalf("origin %s acknowledged %d after %d", f[1], s, acked[f[1]])
			}
			acked[f[1]] = s
			total++
			if mode == "always-stream" && total == 300 {
				kill()
			}
		case len(f) == 1 && f[0] == "idle":
			time.Sleep(500 * time.Millisecond)
			kill()
		case len(f) > 0 && f[0] == "ERR":
			kill()
			t.Fatalf("child: %s", sc.Text())
		}
	}
	// Lines printed before the kill landed are acknowledgements too: the
	// loop above read them all (the pipe closes when the child dies).
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != -1 {
		t.Fatalf("child was not killed by a signal: %v; stderr:\n%s", err, stderr.String())
	}
	return acked, total, lines
}
