package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"
)

// `tempest-bench state`: does the cost of a request grow with the state a
// service holds? For each --items size it starts a fresh node process,
// preloads that many carts through the service API (cart/addmany, batched),
// runs the open-loop load of `http --rate` over all of them, then kills the
// node with SIGKILL and measures how long it takes to serve again.

type stateFlags struct {
	target       targetFlags
	items        []int
	rate         float64
	duration     time.Duration
	queries      float64
	budgetMs     int
	batch        int
	settle       time.Duration
	seed         uint64
	asJSON       bool
	maxOthersCPU float64
}

// stateRun is the figures of one --items size.
type stateRun struct {
	Items    int     `json:"items"`
	PreloadS float64 `json:"preload_s"`
	// PreloadItemsPerS: carts loaded per second through cart/addmany.
	PreloadItemsPerS float64 `json:"preload_items_per_s"`
	// The open-loop run over every cart (its stall_seconds: seconds with
	// more than 1% of their requests missed).
	Load openRun `json:"load"`
	// RSS of the node process: empty (just started), after the preload,
	// after the load.
	RSSEmptyBytes   int64 `json:"rss_empty_bytes"`
	RSSPreloadBytes int64 `json:"rss_preload_bytes"`
	RSSAfterBytes   int64 `json:"rss_after_bytes"`
	// RSSPerItemReplicaBytes: (RSS after preload - empty) / (items x
	// clones). An upper bound of what one item costs one replica (it
	// includes garbage not yet collected).
	RSSPerItemReplicaBytes float64 `json:"rss_per_item_replica_bytes"`
	// HeapPerItemReplicaBytes: the node's own figure after the preload
	// and a forced GC (/v1/status memory: heap objects / items of every
	// replica, right after /debug/pprof/heap?gc=1: the live heap).
	HeapPerItemReplicaBytes float64 `json:"heap_per_item_replica_bytes"`
	// KeyValueBytesPerItem: what an item is, its key and value encoded
	// (status memory.key_value_bytes_per_cold_item, after the preload):
	// the measure of the per-item figures (the target: at most 3x).
	KeyValueBytesPerItem float64 `json:"key_value_bytes_per_item"`
	// ColdFraction: of the item-replicas after the preload, those in cold
	// tables; the rest are Go objects (tentative ops, or changed since the
	// clone's latest snapshot began: the next delta's members), which cost
	// several times more.
	ColdFraction float64 `json:"cold_fraction"`
	// HeapEmptyBytes and HeapPreloadBytes: the node's live heap (status
	// memory.heap_objects_bytes right after a forced GC) just started and
	// after the preload; HeapMarginalPerItemReplicaBytes is their
	// difference over the items of every replica: what an item adds, the
	// node's fixed costs (runtime, pebble's caches and memtables, buffers)
	// left out. Those weigh in HeapPerItemReplicaBytes at small sizes
	// (tens of MB over 300,000 item-replicas at 100k items).
	HeapEmptyBytes                  uint64  `json:"heap_empty_bytes"`
	HeapPreloadBytes                uint64  `json:"heap_preload_bytes"`
	HeapMarginalPerItemReplicaBytes float64 `json:"heap_marginal_per_item_replica_bytes"`
	// HeapAfterLoadPerItemReplicaBytes: the same as HeapPerItemReplicaBytes
	// after the open-loop run (a forced GC first): the items the load
	// changed went hot and cold again, leaving dead entries in the cold
	// tables' arenas until their evacuation. ArenaOverLiveAfterLoad: those
	// arenas' size over what their entries use (status
	// memory.cold_arena_bytes / cold_arena_live_bytes) then.
	HeapAfterLoadPerItemReplicaBytes float64 `json:"heap_after_load_per_item_replica_bytes"`
	ArenaOverLiveAfterLoad           float64 `json:"arena_over_live_after_load"`
	// SettleS: after the preload, the wait until no cart clone had a
	// snapshot in progress and pebble owed no more than 64 MiB of
	// compaction (at most --settle): the load then measures the steady
	// state, not the bulk load's aftermath. Settled says whether it did.
	SettleS float64 `json:"settle_s"`
	Settled bool    `json:"settled"`
	// Snapshot: the last snapshot of a cart clone as /v1/status reports it
	// (absent when the node does not report one).
	Snapshot map[string]any `json:"last_snapshot,omitempty"`
	// PebbleDuringLoad: what the storage engine did during the open-loop
	// run (/v1/status pebble: flushes, compactions, bytes flushed and
	// compacted, write stalls, as differences; read amplification and
	// compaction debt at its end).
	PebbleDuringLoad map[string]float64 `json:"pebble_during_load,omitempty"`
	// BackgroundTurnsDuringLoad: the cart clones' snapshot (and lazy-load)
	// slices during the open-loop run (/v1/status background_turns, summed
	// over the clones, as differences): turns, those over 1 and 5 ms of
	// wall time and over 1 ms of CPU time, those of unknown CPU time; and
	// max_wall_us and max_cpu_us, the longest of any clone since the node
	// started (the preload included: a maximum cannot be differenced).
	BackgroundTurnsDuringLoad map[string]int64 `json:"background_turns_during_load,omitempty"`
	// CommitsDuringLoad: the node's group commits during the run, and of
	// them the slow ones (/v1/status persistence slow_commits: over 50 ms,
	// fsync included: every update waiting for durability waited as
	// long); max_commit_latency_ms is the longest since the node started.
	CommitsDuringLoad map[string]float64 `json:"commits_during_load,omitempty"`
	// RestartS: from starting the killed node's process again until every
	// clone is ready; RestoredOK: sampled carts were all there.
	RestartS   float64 `json:"restart_s"`
	RestoredOK bool    `json:"restored_ok"`
	// RestartLoad: how the slowest cart clone loaded after the restart
	// (/v1/status loaded: snapshot parts and items, ops replayed
	// from the log after it, and the time of each).
	RestartLoad map[string]any `json:"restart_load,omitempty"`
	// Error: what stopped this size's measurement, if anything (the other
	// sizes are still measured).
	Error string `json:"error,omitempty"`
}

type stateResult struct {
	Mode     string     `json:"mode"` // "state"
	Target   string     `json:"target"`
	RatePerS float64    `json:"rate_per_s"`
	Queries  float64    `json:"queries_fraction"`
	BudgetMs int        `json:"budget_ms"`
	Runs     []stateRun `json:"runs"`
}

func runState(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("state", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f stateFlags
	items := fs.String("items", "1000,100000,1000000", "comma-separated state sizes (carts) to measure, each on a fresh node")
	fs.Float64Var(&f.rate, "rate", 2000, "open-loop requests per second over all carts")
	fs.DurationVar(&f.duration, "duration", time.Minute, "length of the open-loop run of each size")
	fs.Float64Var(&f.queries, "queries", 0.1, "fraction of requests that are cart/get queries (rest: cart/add)")
	fs.IntVar(&f.budgetMs, "timeout-ms", 200, "Tempest-Timeout-Ms of each request, the budget")
	fs.IntVar(&f.batch, "batch", 500, "carts per cart/addmany request of the preload")
	fs.DurationVar(&f.settle, "settle", 2*time.Minute, "after the preload, wait at most this long for the node to finish its snapshots and compactions before the load (0: do not wait)")
	fs.StringVar(&f.target.fsync, "fsync", "always", "fsync policy of the node: always | interval | none")
	fs.IntVar(&f.target.clones, "clones", 3, "clones per service")
	fs.StringVar(&f.target.cpus, "cpus", "", "pin with taskset: node=LIST,gen=LIST (e.g. node=0,gen=1)")
	fs.StringVar(&f.target.nodeBinary, "node-binary", "", "a built tempest-node to run instead of building ./cmd/tempest-node")
	fs.Uint64Var(&f.seed, "seed", 1, "random seed for the request mix")
	fs.BoolVar(&f.asJSON, "json", false, "print JSON instead of text")
	fs.Float64Var(&f.maxOthersCPU, "max-others-cpu", 0, "warn when other processes used more than this many CPUs during a load run (0: never)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("state: unexpected arguments %q", fs.Args())
	}
	for _, s := range strings.Split(*items, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("state: --items %q: each size must be a positive integer", *items)
		}
		f.items = append(f.items, n)
	}
	switch {
	case f.rate <= 0 || f.duration <= 0 || f.budgetMs <= 0:
		return errors.New("state: need --rate > 0, --duration > 0, --timeout-ms > 0")
	case f.queries < 0 || f.queries > 1:
		return errors.New("state: --queries must be in [0,1]")
	case f.batch < 1 || f.batch > 1000:
		return errors.New("state: --batch must be in [1, 1000] (cart.MaxBatch)")
	}
	f.target.process = true
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res := stateResult{Mode: "state", RatePerS: f.rate, Queries: f.queries, BudgetMs: f.budgetMs, Runs: []stateRun{}}
	for _, n := range f.items {
		r, desc, err := measureState(ctx, f, n, stderr)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			r.Error = err.Error()
			fmt.Fprintf(stderr, "state bench: %d items: %v\n", n, err)
		}
		if desc != "" {
			res.Target = desc
		}
		res.Runs = append(res.Runs, r)
	}
	if f.asJSON {
		return writeJSON(stdout, res)
	}
	printState(stdout, res)
	return nil
}

// measureState measures one size on a node of its own.
func measureState(ctx context.Context, f stateFlags, n int, stderr io.Writer) (stateRun, string, error) {
	r := stateRun{Items: n}
	tgt, err := startTarget(ctx, f.target, stderr)
	if err != nil {
		return r, "", err
	}
	defer tgt.close()
	p := tgt.proc
	r.RSSEmptyBytes = procRSS(p.pid())
	forceGC(p.debugAddr)
	if empty := readFigures(tgt.addr); empty != nil {
		r.HeapEmptyBytes = empty.Memory.HeapObjectsBytes
	}

	t0 := time.Now()
	if err := preload(ctx, tgt.addr, n, f.batch, stderr); err != nil {
		return r, "", fmt.Errorf("preload: %w", err)
	}
	r.PreloadS = time.Since(t0).Seconds()
	r.PreloadItemsPerS = float64(n) / r.PreloadS
	r.RSSPreloadBytes = procRSS(p.pid())
	r.RSSPerItemReplicaBytes = float64(r.RSSPreloadBytes-r.RSSEmptyBytes) / float64(n*f.target.clones)
	t0 = time.Now()
	r.Settled = settleNode(ctx, tgt.addr, f.settle, stderr)
	r.SettleS = time.Since(t0).Seconds()
	forceGC(p.debugAddr)
	if mem := readFigures(tgt.addr); mem != nil {
		r.HeapPerItemReplicaBytes = mem.Memory.BytesPerItem
		r.KeyValueBytesPerItem = mem.Memory.KeyValuePerItem
		if mem.Memory.Items > 0 {
			r.ColdFraction = float64(mem.Memory.ColdItems) / float64(mem.Memory.Items)
		}
		r.HeapPreloadBytes = mem.Memory.HeapObjectsBytes
		if mem.Memory.Items > 0 && r.HeapEmptyBytes > 0 {
			r.HeapMarginalPerItemReplicaBytes = (float64(r.HeapPreloadBytes) - float64(r.HeapEmptyBytes)) / float64(mem.Memory.Items)
		}
	}

	budget := time.Duration(f.budgetMs) * time.Millisecond
	l := newLoader(tgt, budget, f.queries, n, defaultMaxConns, f.seed, stderr)
	defer l.close()
	before := readFigures(tgt.addr)
	load, err := l.run(ctx, f.rate, f.duration, fmt.Sprintf("%d items: %.0f/s", n, f.rate))
	if err != nil {
		return r, "", err
	}
	r.RSSAfterBytes = procRSS(p.pid())
	forceGC(p.debugAddr) // for the heap figures; the counters are read in the same status
	after := readFigures(tgt.addr)
	if after != nil {
		m := after.Memory
		r.HeapAfterLoadPerItemReplicaBytes = m.BytesPerItem
		if m.ArenaLiveBytes > 0 {
			r.ArenaOverLiveAfterLoad = float64(m.ArenaBytes) / float64(m.ArenaLiveBytes)
		}
	}
	r.PebbleDuringLoad = pebbleDelta(before.pebble(), after.pebble())
	r.BackgroundTurnsDuringLoad = turnsDelta(before.cartTurns(), after.cartTurns())
	r.CommitsDuringLoad = commitsDelta(before.persistence(), after.persistence())
	r.Snapshot = after.cartSnapshot()
	if f.maxOthersCPU > 0 && load.OthersCPUUtil != nil && *load.OthersCPUUtil > f.maxOthersCPU {
		fmt.Fprintf(stderr, "state bench: other processes used %.2f CPUs during the %d-item run: its figures are disturbed\n", *load.OthersCPUUtil, n)
	}
	r.Load = load
	desc := tgt.desc

	fmt.Fprintf(stderr, "state bench: %d items: kill -9 and restart\n", n)
	p.kill9()
	t1 := time.Now()
	addr, err := p.start(ctx)
	if err != nil {
		return r, desc, fmt.Errorf("restart: %w", err)
	}
	if err := waitAllReady(ctx, addr, 10*time.Minute, stderr); err != nil {
		return r, desc, fmt.Errorf("restart: %w", err)
	}
	r.RestartS = time.Since(t1).Seconds()
	r.RestartLoad = slowestLoad(addr)
	r.RestoredOK, err = sampleCarts(addr, n, 100)
	if err != nil {
		return r, desc, fmt.Errorf("after restart: %w", err)
	}
	return r, desc, nil
}

// preload loads carts user-0 .. user-(n-1) with item-0 through cart/addmany,
// four batches in flight, retrying what is refused (503) after the time the
// node asks for.
func preload(ctx context.Context, addr string, n, batch int, stderr io.Writer) error {
	url := "http://" + addr + "/v1/services/cart/addmany"
	client := &http.Client{Timeout: time.Minute}
	defer client.CloseIdleConnections()
	var (
		next, done atomic.Int64
		wg         sync.WaitGroup
		errOnce    sync.Once
		firstErr   error
	)
	stopProgress := progressLine(stderr, "preload", func() string {
		return fmt.Sprintf("%d of %d carts", done.Load(), n)
	})
	defer stopProgress()
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				lo := int(next.Add(int64(batch))) - batch
				if lo >= n {
					return
				}
				hi := min(lo+batch, n)
				var body bytes.Buffer
				body.WriteString(`{"adds":[`)
				for i := lo; i < hi; i++ {
					if i > lo {
						body.WriteByte(',')
					}
					fmt.Fprintf(&body, `{"user":"user-%d","item":"item-0","qty":1}`, i)
				}
				body.WriteString(`]}`)
				if err := postRetrying(ctx, client, url, body.Bytes()); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				done.Add(int64(hi - lo))
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// postRetrying posts body until a 200, waiting out 503s and 504s (an add
// repeated after a 504 only raises a quantity: the cart exists either way).
func postRetrying(ctx context.Context, client *http.Client, url string, body []byte) error {
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Tempest-Timeout-Ms", "20000")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusOK:
			return nil
		case (resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusGatewayTimeout) && attempt < 50:
			wait := 50 * time.Millisecond
			if ms, err := strconv.Atoi(resp.Header.Get("Tempest-Retry-After-Ms")); err == nil && ms > 0 {
				wait = time.Duration(ms) * time.Millisecond
			}
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return ctx.Err()
			}
		default:
			return fmt.Errorf("cart/addmany: %s: %s", resp.Status, tail(raw, 300))
		}
	}
}

// waitAllReady polls /v1/status until every clone is ready.
func waitAllReady(ctx context.Context, addr string, limit time.Duration, stderr io.Writer) error {
	deadline := time.Now().Add(limit)
	var ready, total atomic.Int64
	stop := progressLine(stderr, "restart", func() string {
		return fmt.Sprintf("%d of %d clones ready", ready.Load(), total.Load())
	})
	defer stop()
	for {
		var st struct {
			Clones []struct {
				Ready bool `json:"ready"`
			} `json:"clones"`
		}
		if err := getJSON(addr, "/v1/status", &st); err == nil && len(st.Clones) > 0 {
			n := 0
			for _, c := range st.Clones {
				if c.Ready {
					n++
				}
			}
			ready.Store(int64(n))
			total.Store(int64(len(st.Clones)))
			if n == len(st.Clones) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not every clone ready after %v", limit)
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// sampleCarts reads k carts spread over the n loaded ones and reports
// whether each still holds its preloaded item.
func sampleCarts(addr string, n, k int) (bool, error) {
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	for j := range k {
		user := fmt.Sprintf("user-%d", j*n/k)
		resp, err := client.Post("http://"+addr+"/v1/services/cart/get", "application/json", strings.NewReader(`{"user":"`+user+`"}`))
		if err != nil {
			return false, err
		}
		var v struct {
			Items map[string]int64 `json:"items"`
		}
		err = json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			return false, fmt.Errorf("cart/get %s: %s %v", user, resp.Status, err)
		}
		if v.Items["item-0"] < 1 {
			return false, nil
		}
	}
	return true, nil
}

// statusFigures is what the state bench reads of one /v1/status: its
// memory (empty, after the preload, after the load) and the counters
// around its load. Its methods answer nil on a nil *statusFigures (the
// status could not be read).
type statusFigures struct {
	Memory      nodeMemory     `json:"memory"` // right after forceGC: the live heap
	Pebble      map[string]any `json:"pebble"`
	Persistence map[string]any `json:"persistence"`
	Clones      []struct {
		Service      string           `json:"service"`
		Turns        map[string]int64 `json:"background_turns"`
		LastSnapshot map[string]any   `json:"last_snapshot"`
	} `json:"clones"`
}

// readFigures reads /v1/status once (nil if it cannot be read).
func readFigures(addr string) *statusFigures {
	st := &statusFigures{}
	if getJSON(addr, "/v1/status", st) != nil {
		return nil
	}
	return st
}

// pebble is the status's pebble object.
func (st *statusFigures) pebble() map[string]any {
	if st == nil {
		return nil
	}
	return st.Pebble
}

// persistence is the numbers of the status's persistence object.
func (st *statusFigures) persistence() map[string]float64 {
	if st == nil || st.Persistence == nil {
		return nil
	}
	out := map[string]float64{}
	for k, v := range st.Persistence {
		if f, ok := v.(float64); ok {
			out[k] = f
		}
	}
	return out
}

// cartTurns is the background_turns objects of the cart clones.
func (st *statusFigures) cartTurns() []map[string]int64 {
	if st == nil {
		return nil
	}
	var out []map[string]int64
	for _, c := range st.Clones {
		if c.Service == "cart" && c.Turns != nil {
			out = append(out, c.Turns)
		}
	}
	return out
}

// cartSnapshot is the last_snapshot object of the first cart clone that
// reports one.
func (st *statusFigures) cartSnapshot() map[string]any {
	if st == nil {
		return nil
	}
	for _, c := range st.Clones {
		if c.Service == "cart" && c.LastSnapshot != nil {
			return c.LastSnapshot
		}
	}
	return nil
}

// pebbleDelta is what pebble did between two of its status objects: the
// counters' differences, and the gauges' values at the end.
func pebbleDelta(before, after map[string]any) map[string]float64 {
	if before == nil || after == nil {
		return nil
	}
	out := map[string]float64{}
	for _, k := range []string{"flushes", "compactions", "flushed_bytes", "compacted_bytes", "write_stalls", "write_stall_duration_ns", "point_reads"} {
		a, _ := after[k].(float64)
		b, _ := before[k].(float64)
		out[k] = a - b
	}
	for _, k := range []string{"read_amp", "compaction_debt_bytes", "l0_files", "disk_bytes"} {
		out[k], _ = after[k].(float64)
	}
	return out
}

// commitsDelta is the group commits between two persistence objects,
// and the slow ones; max_commit_latency_ms is after's, since the node
// started (see stateRun.CommitsDuringLoad).
func commitsDelta(before, after map[string]float64) map[string]float64 {
	if before == nil || after == nil {
		return nil
	}
	return map[string]float64{
		"commits":               after["commits"] - before["commits"],
		"slow_commits":          after["slow_commits"] - before["slow_commits"],
		"max_commit_latency_ms": after["max_commit_latency_ns"] / 1e6,
	}
}

// turnsDelta sums the clones' background turn counters of after minus
// before, and takes the largest of their maxima in after (see
// stateRun.BackgroundTurnsDuringLoad). Nil if either is missing or the
// clones differ (one restarted).
func turnsDelta(before, after []map[string]int64) map[string]int64 {
	if len(before) == 0 || len(before) != len(after) {
		return nil
	}
	out := map[string]int64{}
	for i := range after {
		for k, v := range after[i] {
			if strings.HasPrefix(k, "max_") {
				out[k] = max(out[k], v)
			} else {
				out[k] += v - before[i][k]
			}
		}
	}
	return out
}

// slowestLoad returns the loaded object of the cart clone that took the
// longest to load, from /v1/status (nil if none reports one).
func slowestLoad(addr string) map[string]any {
	var st struct {
		Clones []map[string]any `json:"clones"`
	}
	if getJSON(addr, "/v1/status", &st) != nil {
		return nil
	}
	var worst map[string]any
	for _, c := range st.Clones {
		l, ok := c["loaded"].(map[string]any)
		if c["service"] != "cart" || !ok {
			continue
		}
		if t, _ := l["took_ms"].(float64); worst == nil || t > worst["took_ms"].(float64) {
			worst = l
		}
	}
	return worst
}

func getJSON(addr, path string, v any) error {
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://" + addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// procRSS is a process's resident set size in bytes (0 if unreadable).
func procRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	return parseVmRSS(string(b))
}

// parseVmRSS reads the VmRSS line ("VmRSS:     1234 kB") of /proc/<pid>/status.
func parseVmRSS(status string) int64 {
	for line := range strings.Lines(status) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err == nil {
					return kb * 1024
				}
			}
		}
	}
	return 0
}

// progressLine prints label and what() on stderr every second until stopped.
func progressLine(stderr io.Writer, label string, what func() string) (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				fmt.Fprintf(stderr, "\r%s: %s in %.1fs%20s\n", label, what(), time.Since(start).Seconds(), "")
				return
			case <-t.C:
				fmt.Fprintf(stderr, "\r%s: %4.0fs, %s", label, time.Since(start).Seconds(), what())
			}
		}
	}()
	return func() { close(done); <-finished }
}

func printState(w io.Writer, res stateResult) {
	fmt.Fprintf(w, "target    %s\n", res.Target)
	fmt.Fprintf(w, "load      open loop at %.0f/s over every cart, %.0f%% cart/get, budget %d ms\n", res.RatePerS, res.Queries*100, res.BudgetMs)
	fmt.Fprintln(w, "stall: a second in which more than 1% of the requests due missed (not 2xx within budget)")
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "items\tpreload\tsettle\tgoodput/s\tmissed\tp50/p99/p99.9/max ms (2xx)\tstall s (longest)\tworst s missed\tnode cpu/req\tRSS MB\tB/item/replica (RSS, heap, heap over empty)\tsnapshot\trestart\trestored\t")
	for _, r := range res.Runs {
		cpu := "n/a"
		if r.Load.NodeCPUSPerRequest != nil {
			cpu = fmt.Sprintf("%.0f µs", *r.Load.NodeCPUSPerRequest*1e6)
		}
		snap := "n/a"
		if r.Snapshot != nil {
			kind := "full"
			if d, _ := r.Snapshot["delta"].(bool); d {
				kind = "delta"
			}
			snap = fmt.Sprintf("%s %v items %v B %.0f ms", kind, r.Snapshot["items"], r.Snapshot["bytes"], r.Snapshot["duration_ms"])
		}
		restart := fmt.Sprintf("%.2fs", r.RestartS)
		if l := r.RestartLoad; l != nil {
			lazy := ""
			if b, _ := l["lazy"].(bool); b {
				lazy = fmt.Sprintf(" opened lazily, %v eager", l["eager_items"])
			}
			restart += fmt.Sprintf(" (snapshot %v items%s %.1fs, log %v ops %.1fs)", l["snapshot_items"], lazy,
				num(l["snapshot_ms"])/1000, l["replayed_ops"], num(l["replay_ms"])/1000)
		}
		missed := r.Load.Sent - r.Load.OnTime2xx
		settled := fmt.Sprintf("%.0fs", r.SettleS)
		if !r.Settled {
			settled += " (not settled)"
		}
		fmt.Fprintf(tw, "%d\t%.1fs (%.0f/s)\t%s\t%.0f\t%d of %d\t%.1f/%.1f/%.1f/%.1f\t%d (%d)\t%.1f%%\t%s\t%.0f\t%.0f, %.0f, %.0f\t%s\t%s\t%v\t\n",
			r.Items, r.PreloadS, r.PreloadItemsPerS, settled, r.Load.GoodputPerS, missed, r.Load.Sent,
			r.Load.OK.P50Ms, r.Load.OK.P99Ms, r.Load.OK.P999Ms, r.Load.OK.MaxMs,
			r.Load.StallSeconds, r.Load.LongestStallS, r.Load.WorstSecondMissFraction*100, cpu,
			float64(r.RSSAfterBytes)/(1<<20), r.RSSPerItemReplicaBytes, r.HeapPerItemReplicaBytes, r.HeapMarginalPerItemReplicaBytes, snap, restart, r.RestoredOK)
	}
	_ = tw.Flush()
	for _, r := range res.Runs {
		if p := r.PebbleDuringLoad; p != nil {
			fmt.Fprintf(w, "%d items: pebble during the load: %.0f flushes (%.0f MB), %.0f compactions (%.0f MB written), %.0f write stalls, read amp %.0f at the end\n",
				r.Items, p["flushes"], p["flushed_bytes"]/1e6, p["compactions"], p["compacted_bytes"]/1e6, p["write_stalls"], p["read_amp"])
		}
		if c := r.CommitsDuringLoad; c != nil {
			fmt.Fprintf(w, "%d items: %.0f group commits during the load, %.0f of them over 50 ms; longest since start %.1f ms\n",
				r.Items, c["commits"], c["slow_commits"], c["max_commit_latency_ms"])
		}
		if t := r.BackgroundTurnsDuringLoad; t != nil {
			fmt.Fprintf(w, "%d items: snapshot/load slices during the load: %d turns, wall time over 1 ms %d (over 5 ms %d), CPU time over 1 ms %d (unknown %d); longest since start: %d µs wall, %d µs CPU\n",
				r.Items, t["turns"], t["wall_over_1ms"], t["wall_over_5ms"], t["cpu_over_1ms"], t["cpu_unknown"], t["max_wall_us"], t["max_cpu_us"])
		}
		if kv := r.KeyValueBytesPerItem; kv > 0 {
			fmt.Fprintf(w, "%d items: an item's key and value: %.1f bytes encoded; heap per item-replica %.1fx that (over empty: %.1fx); %.1f%% of the item-replicas cold\n",
				r.Items, kv, r.HeapPerItemReplicaBytes/kv, r.HeapMarginalPerItemReplicaBytes/kv, r.ColdFraction*100)
			if r.HeapAfterLoadPerItemReplicaBytes > 0 {
				fmt.Fprintf(w, "%d items: after the load: heap per item-replica %.1f bytes (%.1fx), cold arenas %.2fx what their entries use\n",
					r.Items, r.HeapAfterLoadPerItemReplicaBytes, r.HeapAfterLoadPerItemReplicaBytes/kv, r.ArenaOverLiveAfterLoad)
			}
		}
		if r.Error != "" {
			fmt.Fprintf(w, "%d items: %s\n", r.Items, r.Error)
		}
	}
}

// num is a JSON number, or 0.
func num(v any) float64 {
	f, _ := v.(float64)
	return f
}

// settleNode waits, at most limit, until no cart clone has a snapshot in
// progress and pebble's compaction debt is at most 64 MiB, twice in a row
// half a second apart; it reports whether that happened.
func settleNode(ctx context.Context, addr string, limit time.Duration, stderr io.Writer) bool {
	if limit <= 0 {
		return false
	}
	t0 := time.Now()
	var last string
	stop := progressLine(stderr, "settle", func() string { return last })
	defer stop()
	calm := 0
	for time.Since(t0) < limit && ctx.Err() == nil {
		var st struct {
			Clones []struct {
				Service    string `json:"service"`
				InProgress bool   `json:"snapshot_in_progress"`
			} `json:"clones"`
			Pebble struct {
				Debt uint64 `json:"compaction_debt_bytes"`
			} `json:"pebble"`
		}
		if err := getJSON(addr, "/v1/status", &st); err == nil {
			busy := 0
			for _, c := range st.Clones {
				if c.Service == "cart" && c.InProgress {
					busy++
				}
			}
			last = fmt.Sprintf("%d snapshots in progress, compaction debt %d MiB", busy, st.Pebble.Debt>>20)
			if busy == 0 && st.Pebble.Debt <= 64<<20 {
				if calm++; calm == 2 {
					return true
				}
			} else {
				calm = 0
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	return false
}

// nodeMemory is what the state bench reads of /v1/status memory.
type nodeMemory struct {
	HeapObjectsBytes uint64  `json:"heap_objects_bytes"`
	Items            int     `json:"items"`
	ColdItems        int     `json:"cold_items"`
	BytesPerItem     float64 `json:"bytes_per_item_replica"`
	KeyValuePerItem  float64 `json:"key_value_bytes_per_cold_item"`
	ArenaBytes       int64   `json:"cold_arena_bytes"`
	ArenaLiveBytes   int64   `json:"cold_arena_live_bytes"`
}

// forceGC asks the node's profiler for a heap profile after a GC, so that
// the heap figures read next are the live heap (between cycles up to half
// of a node's heap may be garbage, with GOGC at 100). No-op without one.
func forceGC(debugAddr string) {
	if debugAddr == "" {
		return
	}
	resp, err := http.Get("http://" + debugAddr + "/debug/pprof/heap?gc=1")
	if err != nil {
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}
