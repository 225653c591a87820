package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tempestrt/tempest/actors"
	"github.com/tempestrt/tempest/examples/cart"
	"github.com/tempestrt/tempest/examples/chat"
	"github.com/tempestrt/tempest/persistence"
)

// targetFlags say which node `tempest-bench http` loads.
type targetFlags struct {
	addr       string // a running node; nothing started
	fsync      string
	clones     int
	process    bool   // start tempest-node dev as a separate process
	cpus       string // node=LIST,gen=LIST
	nodeBinary string // instead of go build
}

// target is the node under load.
type target struct {
	addr string
	desc string
	// cpu returns the CPU seconds (user+system) the node has used so far,
	// and ok=false when it cannot be read (a node given by --addr).
	cpu func() (float64, bool)
	// cpuSource says where cpu reads from.
	cpuSource string
	// genCPU, when the node is a separate process, reads the generator's
	// own CPU seconds; nil otherwise (they are the same process).
	genCPU func() float64
	// proc is the node's process when the bench started one, else nil.
	proc  *nodeProcess
	close func()
}

// cpuPins is the parsed --cpus.
type cpuPins struct{ node, gen string }

// parseCPUs parses "node=0,gen=1". Each LIST is a CPU number or a range
// "a-b" (taskset's syntax without commas); either key may be left out.
func parseCPUs(s string) (cpuPins, error) {
	var p cpuPins
	if s == "" {
		return p, nil
	}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || !validCPUList(v) {
			return p, fmt.Errorf("--cpus: %q is not key=CPU or key=a-b (want e.g. node=0,gen=1)", part)
		}
		switch k {
		case "node":
			p.node = v
		case "gen":
			p.gen = v
		default:
			return p, fmt.Errorf("--cpus: unknown key %q (want node= and gen=)", k)
		}
	}
	return p, nil
}

func validCPUList(v string) bool {
	lo, hi, isRange := strings.Cut(v, "-")
	a, err := strconv.Atoi(lo)
	if err != nil || a < 0 {
		return false
	}
	if !isRange {
		return true
	}
	b, err := strconv.Atoi(hi)
	return err == nil && b >= a
}

// cpuListSet expands a validated LIST into a CPU set.
func cpuListSet(v string) (unix.CPUSet, int) {
	var set unix.CPUSet
	lo, hi, isRange := strings.Cut(v, "-")
	a, _ := strconv.Atoi(lo)
	b := a
	if isRange {
		b, _ = strconv.Atoi(hi)
	}
	for c := a; c <= b; c++ {
		set.Set(c)
	}
	return set, b - a + 1
}

// pinSelf moves every thread of this process to the CPUs of list (new
// threads inherit the mask of the thread that creates them) and sets
// GOMAXPROCS to their number.
func pinSelf(list string) error {
	set, n := cpuListSet(list)
	for range 2 { // a second pass catches a thread created during the first
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("pin generator to CPUs %s: %w", list, err)
			}
		}
	}
	runtime.GOMAXPROCS(n)
	return nil
}

// rusageSelf is this process's CPU seconds, user+system.
func rusageSelf() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// userHZ is the unit of /proc/<pid>/stat's times (USER_HZ, 100 on Linux).
const userHZ = 100

// parseProcStatCPU returns utime+stime, in seconds, from a /proc/<pid>/stat
// line. The command name (field 2) may hold spaces and parentheses, so
// fields are counted after its last ')'.
func parseProcStatCPU(stat string) (float64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("no ')' in /proc stat")
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return float64(u+s) / userHZ, nil
}

// parseSystemBusy returns the busy CPU seconds of the whole machine (every
// field of /proc/stat's "cpu" line but idle and iowait), from its text.
func parseSystemBusy(stat string) (float64, error) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, errors.New("no cpu line in /proc/stat")
	}
	var busy uint64
	for i, v := range f[1:min(len(f), 9)] { // user nice system idle iowait irq softirq steal
		if i == 3 || i == 4 {
			continue
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, err
		}
		busy += n
	}
	return float64(busy) / userHZ, nil
}

// systemBusy reads the machine's busy CPU seconds; ok=false if it cannot.
func systemBusy() (float64, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	s, err := parseSystemBusy(string(b))
	return s, err == nil
}

func procCPU(pid int) (float64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	s, err := parseProcStatCPU(string(b))
	return s, err == nil
}

// startTarget starts (or names) the node to load. close undoes everything
// it did: stops the node, removes temp dirs.
func startTarget(ctx context.Context, tf targetFlags, stderr io.Writer) (*target, error) {
	pins, err := parseCPUs(tf.cpus)
	if err != nil {
		return nil, err
	}
	if tf.addr != "" {
		if tf.process || tf.cpus != "" {
			return nil, errors.New("--addr names a running node: --node-process and --cpus start one")
		}
		return &target{addr: tf.addr, desc: tf.addr, cpu: func() (float64, bool) { return 0, false },
			cpuSource: "unknown (node given by --addr)", close: func() {}}, nil
	}
	if _, err := persistence.ParseSyncPolicy(tf.fsync); err != nil {
		return nil, fmt.Errorf("--fsync: %w", err)
	}
	if tf.process || tf.cpus != "" {
		return startNodeProcess(ctx, tf, pins, stderr)
	}
	dir, err := os.MkdirTemp("", "tempest-bench-http-*")
	if err != nil {
		return nil, err
	}
	cfg := actors.DefaultConfig(dir)
	cfg.NodeID = "bench"
	cfg.Clones = tf.clones
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Services = []*actors.Service{cart.Service(), chat.Service()}
	cfg.Persistence.Sync, _ = persistence.ParseSyncPolicy(tf.fsync)
	node, err := actors.Start(cfg)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &target{
		addr:      node.HTTPAddr(),
		desc:      "in-process tempest-node dev (" + fmt.Sprint(tf.clones) + " clones, fsync " + tf.fsync + ")",
		cpu:       func() (float64, bool) { return rusageSelf(), true },
		cpuSource: "rusage of the bench process: node AND generator",
		close: func() {
			_ = node.Stop()
			os.RemoveAll(dir)
		},
	}, nil
}

// startNodeProcess builds ./cmd/tempest-node (unless --node-binary) into a
// temp dir and runs `tempest-node dev` there, under taskset when pinned,
// then pins this process to the generator's CPUs.
func startNodeProcess(ctx context.Context, tf targetFlags, pins cpuPins, stderr io.Writer) (_ *target, err error) {
	var tasksetPath string
	if pins.node != "" {
		if tasksetPath, err = exec.LookPath("taskset"); err != nil {
			return nil, errors.New("--cpus node=...: taskset is not installed (util-linux); install it or drop --cpus")
		}
	}
	dir, err := os.MkdirTemp("", "tempest-bench-node-*")
	if err != nil {
		return nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	bin := tf.nodeBinary
	if bin == "" {
		bin = filepath.Join(dir, "tempest-node")
		fmt.Fprintln(stderr, "http bench: go build ./cmd/tempest-node ...")
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/tempestrt/tempest/cmd/tempest-node")
		if out, err := build.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build ./cmd/tempest-node (run from the module, or give --node-binary): %v\n%s", err, out)
		}
	}
	debugAddr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	np := &nodeProcess{bin: bin, tasksetPath: tasksetPath, cpus: pins.node,
		dataDir: filepath.Join(dir, "data"), logPath: filepath.Join(dir, "node.log"), debugAddr: debugAddr,
		args: []string{"--clones", fmt.Sprint(tf.clones), "--fsync", tf.fsync, "--debug-addr", debugAddr}}
	addr, err := np.start(ctx)
	if err != nil {
		return nil, err
	}
	stop := np.stop
	pid := np.pid()
	desc := fmt.Sprintf("tempest-node dev as a separate process (pid %d, %d clones, fsync %s)", pid, tf.clones, tf.fsync)
	if pins.node != "" {
		desc += ", node on CPU " + pins.node
	}
	if pins.gen != "" {
		if err := pinSelf(pins.gen); err != nil {
			stop()
			return nil, err
		}
		desc += fmt.Sprintf(", generator on CPU %s (GOMAXPROCS %d)", pins.gen, runtime.GOMAXPROCS(0))
	}
	return &target{
		addr:      addr,
		desc:      desc,
		cpu:       func() (float64, bool) { return procCPU(pid) },
		cpuSource: fmt.Sprintf("/proc/%d/stat utime+stime of the node process", pid),
		genCPU:    rusageSelf,
		proc:      np,
		close: func() {
			stop()
			cleanup()
		},
	}, nil
}

// nodeProcess is a `tempest-node dev` child process whose data directory
// outlives it: it can be stopped, killed with SIGKILL and started again on
// the same data (the restart measurement of `tempest-bench state`).
type nodeProcess struct {
	bin, tasksetPath, cpus string // cpus: taskset's list, "" unpinned
	dataDir, logPath       string
	args                   []string // after dev --http --data-dir --log-level
	// debugAddr: the node's profiler listener (--debug-addr), used to
	// force a GC before its heap is measured.
	debugAddr string

	cmd    *exec.Cmd
	exited chan struct{}
}

// start launches the node and waits until it prints its gateway address.
func (p *nodeProcess) start(ctx context.Context) (addr string, err error) {
	logFile, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return "", err
	}
	defer logFile.Close() // the child has its own descriptor
	args := append([]string{"dev", "--http", "127.0.0.1:0", "--data-dir", p.dataDir, "--log-level", "warn"}, p.args...)
	var cmd *exec.Cmd
	if p.cpus != "" {
		cmd = exec.Command(p.tasksetPath, append([]string{"-c", p.cpus, p.bin}, args...)...) // taskset execs: same pid
	} else {
		cmd = exec.Command(p.bin, args...)
	}
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the bench
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	exited := make(chan struct{})
	p.cmd, p.exited = cmd, exited
	addrCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "gateway  http://"); ok {
				select {
				case addrCh <- a:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		_ = cmd.Wait()
		close(exited)
	}()
	select {
	case addr = <-addrCh:
		return addr, nil
	case <-exited:
		log, _ := os.ReadFile(p.logPath)
		return "", fmt.Errorf("tempest-node exited before serving: %v\n%s", cmd.ProcessState, tail(log, 2000))
	case <-time.After(5 * time.Minute):
		p.kill9()
		return "", errors.New("tempest-node did not print its gateway address within 5 minutes")
	case <-ctx.Done():
		p.stop()
		return "", ctx.Err()
	}
}

func (p *nodeProcess) pid() int { return p.cmd.Process.Pid }

// stop asks the node to stop (SIGTERM) and kills it after 10 s.
func (p *nodeProcess) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		p.kill9()
	}
}

// kill9 kills the node with SIGKILL and waits until it is gone.
func (p *nodeProcess) kill9() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// freeLoopbackAddr picks a free TCP port on 127.0.0.1 (for a listener the
// node opens itself; the port is free when picked, and nothing else on
// this machine is expected to race for it).
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
