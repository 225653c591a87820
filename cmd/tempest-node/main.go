// Command tempest-node runs a Tempest node.
//
//	tempest-node dev [flags]   one node, 3 clones of each example service,
//	                           HTTP gateway on 127.0.0.1:8080
//
// Run `tempest-node dev -h` for the flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/tempestrt/tempest/actors"
	"github.com/tempestrt/tempest/examples/cart"
	"github.com/tempestrt/tempest/examples/chat"
	"github.com/tempestrt/tempest/persistence"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "tempest-node:", err)
		os.Exit(1)
	}
}

const usage = `usage: tempest-node <command> [flags]

commands:
  dev    run one node with 3 clones of each example service (cart, chat)
         and the HTTP gateway on 127.0.0.1:8080
`

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command")
	}
	switch args[0] {
	case "dev":
		return dev(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

func dev(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	httpAddr := fs.String("http", "127.0.0.1:8080", "HTTP gateway address (port 0 picks one)")
	dataDir := fs.String("data-dir", "", "data directory (default: a new temp dir, removed on exit)")
	clones := fs.Int("clones", 3, "clones of each service")
	chaos := fs.Bool("chaos", false, "enable the chaos API: POST /v1/admin/kill")
	fsync := fs.String("fsync", "always", "op log fsync policy: always | interval | none (see persistence docs)")
	logLevel := fs.String("log-level", "info", "debug | info | warn | error")
	minProcs := fs.Int("min-procs", 4, "raise GOMAXPROCS to at least this many unless the GOMAXPROCS variable is set: with one or two Ps, a P blocked in an fsync or busy with a GC or compaction slice holds up every request (ARCHITECTURE.md, \"The Go runtime\"); 0 leaves it alone")
	debugAddr := fs.String("debug-addr", "", "serve Go's profiler (/debug/pprof/: cpu, heap, goroutine, trace) on this address, e.g. 127.0.0.1:6060; off by default")
	gcPercent := fs.Int("gc-percent", defaultGCPercent, "GOGC of the node unless the GOGC variable is set: a GC cycle when the heap has grown by this percent of what is live (higher: fewer cycles, more memory; see cmd/tempest-node/gc.go)")
	memLimit := fs.String("memory-limit", "auto", "soft memory limit (GOMEMLIMIT) unless the GOMEMLIMIT variable is set: auto (75% of the cgroup limit or RAM), off, or a size like 8GiB")
	admission := fs.Bool("admission", true, "the front door: refuse at once (503 overloaded) what the node cannot serve in time; false only to compare (an overloaded node without it collapses)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	level, err := zapcore.ParseLevel(*logLevel)
	if err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	logCfg := zap.NewDevelopmentConfig()
	logCfg.Level = zap.NewAtomicLevelAt(level)
	logCfg.OutputPaths = []string{"stderr"}
	log, err := logCfg.Build()
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()

	if before, after := raiseProcs(*minProcs); after != before {
		log.Info("raised GOMAXPROCS", zap.Int("from", before), zap.Int("to", after), zap.Int("cpus", runtime.NumCPU()))
	}

	gc, err := tuneGC(*gcPercent, *memLimit)
	if err != nil {
		return err
	}
	log.Info("gc policy", zap.Int("gc_percent", gc.Percent), zap.Int64("memory_limit_bytes", gc.LimitBytes),
		zap.String("limit_source", gc.LimitSource), zap.Bool("from_env", gc.FromEnv))

	dir := *dataDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "tempest-dev-*"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	cfg := actors.DefaultConfig(dir)
	cfg.NodeID = "dev"
	cfg.Clones = *clones
	cfg.HTTPAddr = *httpAddr
	cfg.Gateway.EnableChaos = *chaos
	cfg.DisableAdmission = !*admission
	cfg.Services = []*actors.Service{cart.Service(), chat.Service()}
	cfg.Logger = log
	if cfg.Persistence.Sync, err = persistence.ParseSyncPolicy(*fsync); err != nil {
		return fmt.Errorf("--fsync: %w", err)
	}
	if *debugAddr != "" {
		// Before Start: a slow start (a large state loading) is when a
		// profile is wanted.
		stopDebug, err := serveDebug(*debugAddr, log)
		if err != nil {
			return err
		}
		defer stopDebug()
	}
	node, err := actors.Start(cfg)
	if err != nil {
		return err
	}
	addr := node.HTTPAddr()
	fmt.Fprintf(stdout, `tempest-node dev: %d clones each of cart, chat; data in %s
  gateway  http://%s
  try      curl -s -XPOST http://%s/v1/services/cart/add -d '{"user":"ann","item":"apple","qty":2}'
           curl -s -XPOST http://%s/v1/services/cart/get -d '{"user":"ann"}'
           curl -s http://%s/v1/status
`, *clones, dir, addr, addr, addr, addr)
	if *chaos {
		fmt.Fprintf(stdout, "  chaos    curl -s -XPOST http://%s/v1/admin/kill -d '{\"actor\":\"cart/1/scheduler\"}'\n", addr)
	}
	fmt.Fprintln(stdout, "ctrl-c to stop")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	fmt.Fprintln(stdout, "stopping...")
	done := make(chan error, 1)
	go func() { done <- node.Stop() }()
	select {
	case err := <-done:
		return err
	case <-time.After(15 * time.Second):
		return errors.New("stop timed out")
	}
}

// serveDebug serves net/http/pprof on its own listener, apart from the
// gateway: profiling a node must not go through the front door it studies.
func serveDebug(addr string, log *zap.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--debug-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Info("profiler listening", zap.String("addr", "http://"+ln.Addr().String()+"/debug/pprof/"))
	return func() { _ = srv.Close() }, nil
}

// raiseProcs raises GOMAXPROCS to min unless the GOMAXPROCS variable says
// otherwise. Go sizes GOMAXPROCS to the CPUs the process may use (its
// affinity or cgroup quota), so a node given one CPU gets one P. With one
// P, a goroutine blocked in fsync keeps the P until sysmon takes it back
// (sysmon backs off to 10 ms sleeps when idle), and a CPU-bound goroutine
// (a pebble compaction, a GC worker, a long handler) runs for up to Go's
// 10 ms time slice before others get a turn: either holds every request,
// refusals included, for milliseconds. With more Ps than CPUs the other Ps
// keep serving and the kernel interleaves the threads at its own, finer
// granularity. Measured with one pinned CPU at 3x overload: GOMAXPROCS 1
// served about half the on-time goodput of GOMAXPROCS 4 and answered some
// requests late; see the closing note of issue 7.
func raiseProcs(min int) (before, after int) {
	before = runtime.GOMAXPROCS(0)
	if min <= 0 || before >= min || os.Getenv("GOMAXPROCS") != "" {
		return before, before
	}
	runtime.GOMAXPROCS(min)
	return before, min
}
