package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// httpResult is what `tempest-bench http` reports in closed-loop mode.
type httpResult struct {
	Target      string         `json:"target"`
	Fsync       string         `json:"fsync"`
	Concurrency int            `json:"concurrency"`
	DurationS   float64        `json:"duration_s"`
	Updates     opStats        `json:"updates"`
	Queries     opStats        `json:"queries"`
	Errors      map[string]int `json:"errors"`
}

// opStats is one kind of request: its latency summary and rate.
type opStats struct {
	latencySummary
	PerSecond float64 `json:"per_s"`
}

// httpFlags are the flags of `tempest-bench http`, both modes.
type httpFlags struct {
	target   targetFlags
	duration time.Duration
	conc     int
	queries  float64
	users    int
	budgetMs int
	seed     uint64
	asJSON   bool

	// open loop
	rate         float64
	findCapacity bool
	capacity     float64
	overload     string
	stepDuration time.Duration
	startRate    float64
	maxRate      float64
	cpuProfile   string
	confirm      bool
	maxOthersCPU float64
	maxConns     int
}

// runHTTP measures the HTTP gateway: of a node it starts in-process with the
// `tempest-node dev` configuration, of one it starts as a separate process
// (--node-process, --cpus), or of a running node given by --addr. Without
// --rate/--find-capacity/--capacity it is a closed loop (--concurrency
// clients, each sending its next request when the previous one is
// answered); with them it is an open loop (http_openloop.go).
func runHTTP(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("http", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f httpFlags
	fs.StringVar(&f.target.addr, "addr", "", "gateway of a running node (default: start a dev node in-process)")
	fs.DurationVar(&f.duration, "duration", 10*time.Second, "how long to send load (open loop: of each --rate or --overload run)")
	fs.IntVar(&f.conc, "concurrency", 32, "concurrent clients (closed loop only)")
	fs.Float64Var(&f.queries, "queries", 0.5, "fraction of requests that are cart/get queries (rest: cart/add updates)")
	fs.IntVar(&f.users, "users", 1000, "distinct carts")
	fs.IntVar(&f.budgetMs, "timeout-ms", 1000, "Tempest-Timeout-Ms of each request, the budget (default 30 in open loop)")
	fs.StringVar(&f.target.fsync, "fsync", "always", "fsync policy of the node started: always | interval | none")
	fs.IntVar(&f.target.clones, "clones", 3, "clones per service of the node started")
	fs.Uint64Var(&f.seed, "seed", 1, "random seed for the request mix")
	fs.BoolVar(&f.asJSON, "json", false, "print JSON instead of text")
	fs.BoolVar(&f.target.process, "node-process", false, "run the node as a separate process (go build ./cmd/tempest-node, then tempest-node dev)")
	fs.StringVar(&f.target.cpus, "cpus", "", "pin with taskset: node=LIST,gen=LIST (LIST: a CPU or a range a-b, e.g. node=0,gen=1); implies --node-process")
	fs.StringVar(&f.target.nodeBinary, "node-binary", "", "a built tempest-node to run instead of building ./cmd/tempest-node")
	fs.Float64Var(&f.rate, "rate", 0, "open loop: requests per second, sent on a fixed schedule whatever the server does")
	fs.BoolVar(&f.findCapacity, "find-capacity", false, "open loop: search the highest rate at which 99.9% of requests are answered 2xx within budget")
	fs.Float64Var(&f.capacity, "capacity", 0, "open loop: the node's capacity in requests/s, if known (instead of --find-capacity)")
	fs.StringVar(&f.overload, "overload", "", "open loop: comma-separated multiples of the capacity to run at, e.g. 1,2,3")
	fs.DurationVar(&f.stepDuration, "step-duration", 4*time.Second, "open loop: length of each --find-capacity step")
	fs.Float64Var(&f.startRate, "start-rate", 250, "open loop: first rate of the --find-capacity ramp")
	fs.Float64Var(&f.maxRate, "max-rate", 100000, "open loop: highest rate --find-capacity tries")
	fs.BoolVar(&f.confirm, "confirm", true, "open loop: --find-capacity runs a failing rate a second time and counts it failed only if both fail")
	fs.Float64Var(&f.maxOthersCPU, "max-others-cpu", 0.25, "open loop: a run during which other processes used more than this many CPUs (from /proc/stat) is run again, up to 3 times; 0: never")
	fs.IntVar(&f.maxConns, "max-conns", defaultMaxConns, "open loop: the generator's connections to the node, at most (a bounded pool, as a good client keeps; a request finding all busy waits for one, and the wait counts)")
	fs.StringVar(&f.cpuProfile, "cpuprofile", "", "write the bench process's CPU profile (the generator; with an in-process node, the node too) to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if f.cpuProfile != "" {
		pf, err := os.Create(f.cpuProfile)
		if err != nil {
			return err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("http: unexpected arguments %q", fs.Args())
	}
	budgetSet := false
	fs.Visit(func(fl *flag.Flag) { budgetSet = budgetSet || fl.Name == "timeout-ms" })
	if f.rate > 0 || f.findCapacity || f.capacity > 0 || f.overload != "" {
		if !budgetSet {
			f.budgetMs = 30
		}
		return runOpenLoop(f, stdout, stderr)
	}
	return runClosedLoop(f, stdout, stderr)
}

// runClosedLoop measures updates/s and latency with --concurrency clients
// each waiting for its answer before sending again.
func runClosedLoop(f httpFlags, stdout, stderr io.Writer) error {
	if f.conc < 1 || f.queries < 0 || f.queries > 1 || f.users < 1 || f.duration <= 0 {
		return errors.New("http: need --concurrency >= 1, --queries in [0,1], --users >= 1, --duration > 0")
	}
	tgt, err := startTarget(context.Background(), f.target, stderr)
	if err != nil {
		return err
	}
	defer tgt.close()
	target := tgt.addr
	res := httpResult{Target: tgt.desc, Fsync: f.target.fsync, Concurrency: f.conc, Errors: map[string]int{}}
	if f.target.addr != "" {
		res.Fsync = "(of the target)"
	}
	transport := &http.Transport{
		MaxIdleConnsPerHost: f.conc,
		DialContext:         (&net.Dialer{Timeout: time.Second}).DialContext,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 10 * time.Second}

	var (
		mu        sync.Mutex
		updLat    []time.Duration
		qryLat    []time.Duration
		sent      atomic.Int64
		wg        sync.WaitGroup
		ctx, stop = context.WithTimeout(context.Background(), f.duration)
	)
	defer stop()
	start := time.Now()
	for w := range f.conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(f.seed, uint64(w)))
			for ctx.Err() == nil {
				user := fmt.Sprintf("user-%d", rng.IntN(f.users))
				isQuery := rng.Float64() < f.queries
				method, body := "add", fmt.Sprintf(`{"user":%q,"item":"item-%d","qty":1}`, user, rng.IntN(20))
				if isQuery {
					method, body = "get", fmt.Sprintf(`{"user":%q}`, user)
				}
				req, _ := http.NewRequest(http.MethodPost, "http://"+target+"/v1/services/cart/"+method, strings.NewReader(body))
				req.Header.Set("Tempest-Timeout-Ms", fmt.Sprint(f.budgetMs))
				t0 := time.Now()
				resp, err := client.Do(req)
				lat := time.Since(t0)
				sent.Add(1)
				code := ""
				if err != nil {
					code = "transport: " + err.Error()
				} else {
					if resp.StatusCode != http.StatusOK {
						var e struct {
							Error struct{ Code string } `json:"error"`
						}
						_ = json.NewDecoder(resp.Body).Decode(&e)
						code = fmt.Sprintf("%d %s", resp.StatusCode, e.Error.Code)
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				mu.Lock()
				switch {
				case code != "":
					res.Errors[code]++
				case isQuery:
					qryLat = append(qryLat, lat)
				default:
					updLat = append(updLat, lat)
				}
				mu.Unlock()
			}
		}()
	}
	progress := time.NewTicker(time.Second)
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
loop:
	for {
		select {
		case <-finished:
			break loop
		case <-progress.C:
			fmt.Fprintf(stderr, "\rhttp bench: %5.1fs, %d requests", time.Since(start).Seconds(), sent.Load())
		}
	}
	progress.Stop()
	fmt.Fprintln(stderr)
	elapsed := time.Since(start)
	res.DurationS = elapsed.Seconds()
	res.Updates = summarize(updLat, elapsed)
	res.Queries = summarize(qryLat, elapsed)
	if f.asJSON {
		return writeJSON(stdout, res)
	}
	fmt.Fprintf(stdout, "target      %s\nclients     %d, %.1fs\n", res.Target, res.Concurrency, res.DurationS)
	for _, row := range []struct {
		name string
		s    opStats
	}{{"updates", res.Updates}, {"queries", res.Queries}} {
		fmt.Fprintf(stdout, "%-11s %7d  %8.0f/s  p50 %6.2f ms  p90 %6.2f ms  p99 %6.2f ms  max %7.2f ms\n",
			row.name, row.s.Count, row.s.PerSecond, row.s.P50Ms, row.s.P90Ms, row.s.P99Ms, row.s.MaxMs)
	}
	for code, n := range res.Errors {
		fmt.Fprintf(stdout, "error       %s: %d\n", code, n)
	}
	return nil
}

func summarize(lat []time.Duration, elapsed time.Duration) opStats {
	return opStats{latencySummary: summarizeLatency(lat), PerSecond: float64(len(lat)) / elapsed.Seconds()}
}
