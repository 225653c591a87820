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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tempestrt/tempest/actors"
	"github.com/tempestrt/tempest/examples/cart"
	"github.com/tempestrt/tempest/examples/chat"
	"github.com/tempestrt/tempest/persistence"
)

// httpResult is what `tempest-bench http` reports.
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

// runHTTP measures updates/s and latency through the HTTP gateway: of a node
// it starts in-process with the `tempest-node dev` configuration, or of a
// running node given by --addr.
func runHTTP(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("http", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "", "gateway of a running node (default: start a dev node in-process)")
	duration := fs.Duration("duration", 10*time.Second, "how long to send load")
	concurrency := fs.Int("concurrency", 32, "concurrent clients (closed loop)")
	queryFrac := fs.Float64("queries", 0.5, "fraction of requests that are cart/get queries (rest: cart/add updates)")
	users := fs.Int("users", 1000, "distinct carts")
	timeoutMs := fs.Int("timeout-ms", 1000, "Tempest-Timeout-Ms of each request")
	fsync := fs.String("fsync", "always", "fsync policy of the in-process node: always | interval | none")
	clones := fs.Int("clones", 3, "clones per service of the in-process node")
	seed := fs.Uint64("seed", 1, "random seed for the request mix")
	asJSON := fs.Bool("json", false, "print JSON instead of text")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *concurrency < 1 || *queryFrac < 0 || *queryFrac > 1 || *users < 1 || *duration <= 0 {
		return errors.New("http: need --concurrency >= 1, --queries in [0,1], --users >= 1, --duration > 0")
	}
	target := *addr
	res := httpResult{Fsync: *fsync, Concurrency: *concurrency, Errors: map[string]int{}}
	if target == "" {
		dir, err := os.MkdirTemp("", "tempest-bench-http-*")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cfg := actors.DefaultConfig(dir)
		cfg.NodeID = "bench"
		cfg.Clones = *clones
		cfg.HTTPAddr = "127.0.0.1:0"
		cfg.Services = []*actors.Service{cart.Service(), chat.Service()}
		if cfg.Persistence.Sync, err = persistence.ParseSyncPolicy(*fsync); err != nil {
			return fmt.Errorf("--fsync: %w", err)
		}
		node, err := actors.Start(cfg)
		if err != nil {
			return err
		}
		defer node.Stop()
		target = node.HTTPAddr()
		res.Target = "in-process tempest-node dev (" + fmt.Sprint(*clones) + " clones, fsync " + *fsync + ")"
	} else {
		res.Target = target
		res.Fsync = "(of the target)"
	}
	transport := &http.Transport{
		MaxIdleConnsPerHost: *concurrency,
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
		ctx, stop = context.WithTimeout(context.Background(), *duration)
	)
	defer stop()
	start := time.Now()
	for w := range *concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(*seed, uint64(w)))
			for ctx.Err() == nil {
				user := fmt.Sprintf("user-%d", rng.IntN(*users))
				isQuery := rng.Float64() < *queryFrac
				method, body := "add", fmt.Sprintf(`{"user":%q,"item":"item-%d","qty":1}`, user, rng.IntN(20))
				if isQuery {
					method, body = "get", fmt.Sprintf(`{"user":%q}`, user)
				}
				req, _ := http.NewRequest(http.MethodPost, "http://"+target+"/v1/services/cart/"+method, strings.NewReader(body))
				req.Header.Set("Tempest-Timeout-Ms", fmt.Sprint(*timeoutMs))
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
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
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
