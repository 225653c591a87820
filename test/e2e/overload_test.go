package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestOverloadAnswersOnTimeAndRecovers overloads the binary on purpose over
// real HTTP: an open schedule (requests sent on time whatever the node
// does, over up to 512 connections) above what
// one CPU with fsync per group commit can serve, 30 ms budgets. Every
// answer, success or refusal, must reach the client no more than 1 ms
// after its budget, measured from just before the request is written; the
// run must really be an overload (the front door refused at least 2% of
// the requests); and once the load drops, requests must be back at their
// normal latency within a second.
//
// It measures time at the client, so it cannot run beside other tests:
// TEMPEST_OVERLOAD_TEST=1 enables it (.ci/run runs it alone). An answer
// whose lateness the client's own stalls explain (the test process did not
// run, so it could not read the answer) is not the node's: such answers are
// counted apart, and a run with many of them is run again.
func TestOverloadAnswersOnTimeAndRecovers(t *testing.T) {
	if os.Getenv("TEMPEST_OVERLOAD_TEST") == "" {
		t.Skip("timing at the client: set TEMPEST_OVERLOAD_TEST=1 and run it alone (.ci/run does)")
	}
	// The node on one CPU, so that a rate the test process can send is
	// several times what the node can serve.
	n := startPinnedNode(t, t.TempDir())
	const budget = 30 * time.Millisecond
	c := newOpenClient(n.addr, budget)
	defer c.close()

	c.run(200, 500*time.Millisecond) // warm up
	normal := c.run(100, time.Second)
	if bad := normal.count(func(o answer) bool { return o.status != 200 }); bad > 0 {
		t.Fatalf("at 100 requests/s %d of %d answers are not 200: %s", bad, len(normal), normal.codes())
	}
	normalP50 := normal.latencyQuantile(0.5)

	var over answers
	for attempt, rate := 1, 3000.0; ; attempt++ {
		over = c.run(rate, 2*time.Second)
		refused := over.count(func(o answer) bool { return o.status == 503 })
		late, excused := over.late(budget + time.Millisecond)
		t.Logf("%.0f requests/s for 2 s: %s; %d late by more than 1 ms, %d more explained by client stalls",
			rate, over.codes(), len(late), excused)
		if len(late) > 0 {
			slices.SortFunc(late, func(a, b answer) int { return int(b.latency() - a.latency()) })
			worst := late[0]
			t.Fatalf("%d of %d answers reached the client more than 1 ms after their %v budget; the latest: %d %s after %v",
				len(late), len(over), budget, worst.status, worst.code, worst.latency())
		}
		if excused > len(over)/100 {
			if attempt == 3 {
				t.Skipf("the test process stalled under %d answers in each of 3 runs: this machine is too busy to measure lateness to 1 ms", excused)
			}
			continue
		}
		if refused < len(over)/50 {
			if rate >= 24000 {
				t.Fatalf("no overload at %.0f requests/s: only %d of %d refused", rate, refused, len(over))
			}
			rate *= 2 // a faster machine: push harder
			continue
		}
		break
	}

	// The load drops: from a second later on, latency is back to normal.
	after := c.run(100, 2*time.Second)
	var recovered answers
	for _, o := range after {
		if o.sent.Sub(after[0].sent) >= time.Second {
			recovered = append(recovered, o)
		}
	}
	if bad := recovered.count(func(o answer) bool { return o.status != 200 }); bad > 0 {
		t.Fatalf("a second after the overload, %d of %d answers are not 200: %s", bad, len(recovered), recovered.codes())
	}
	if p50, limit := recovered.latencyQuantile(0.5), 2*normalP50+2*time.Millisecond; p50 > limit {
		t.Fatalf("a second after the overload the median latency is %v, normal %v (limit %v)", p50, normalP50, limit)
	}
}

// startPinnedNode starts the node on CPU 0 with taskset when the machine
// has another CPU for the test process, else unpinned.
func startPinnedNode(t *testing.T, dataDir string) *node {
	t.Helper()
	taskset, err := exec.LookPath("taskset")
	if err != nil || runtime.NumCPU() < 2 {
		t.Logf("node not pinned (taskset: %v, %d CPUs)", err, runtime.NumCPU())
		return startNode(t, dataDir)
	}
	return startNodeWrapped(t, dataDir, []string{taskset, "-c", "0"})
}

// answer is one request's outcome as the client saw it.
type answer struct {
	sent, received time.Time // just before writing; after reading the answer
	status         int       // 0: no answer (transport error or client timeout)
	code           string
	stalled        time.Duration // the client's own stalls between sent and received
}

func (a answer) latency() time.Duration { return a.received.Sub(a.sent) }

type answers []answer

func (as answers) count(f func(answer) bool) int {
	n := 0
	for _, a := range as {
		if f(a) {
			n++
		}
	}
	return n
}

// late returns the answers later than limit that the client's stalls do
// not explain, and how many late ones they do explain.
func (as answers) late(limit time.Duration) (late answers, excused int) {
	for _, a := range as {
		over := a.latency() - limit
		switch {
		case a.status != 0 && over <= 0:
		case a.status != 0 && a.stalled >= over:
			excused++
		default:
			late = append(late, a)
		}
	}
	return late, excused
}

func (as answers) latencyQuantile(q float64) time.Duration {
	if len(as) == 0 {
		return 0
	}
	ls := make([]time.Duration, len(as))
	for i, a := range as {
		ls[i] = a.latency()
	}
	slices.Sort(ls)
	return ls[int(q*float64(len(ls)-1))]
}

func (as answers) codes() string {
	m := map[string]int{}
	for _, a := range as {
		m[fmt.Sprintf("%d %s", a.status, a.code)]++
	}
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s: %d", strings.TrimSpace(k), v))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// openClient sends requests on a fixed schedule (never waiting for an
// answer to send the next) over a bounded pool of connections, and watches
// its own process for stalls.
type openClient struct {
	url    string
	budget time.Duration
	client *http.Client

	mu     sync.Mutex
	stalls [][2]time.Time // intervals in which the watcher did not run
	stop   chan struct{}
	wg     sync.WaitGroup
}

func newOpenClient(addr string, budget time.Duration) *openClient {
	c := &openClient{
		url:    "http://" + addr + "/v1/services/cart/",
		budget: budget,
		client: &http.Client{
			Transport: &http.Transport{
				DialContext: (&net.Dialer{Timeout: time.Second}).DialContext,
				// A bounded pool, as a good client keeps (see
				// tempest-bench's defaultMaxConns): a request finding
				// every connection busy waits, and the wait counts.
				MaxConnsPerHost:     512,
				MaxIdleConnsPerHost: 512,
				DisableCompression:  true,
			},
			Timeout: budget + time.Second,
		},
		stop: make(chan struct{}),
	}
	c.wg.Add(1)
	go c.watch()
	return c
}

// watch records every interval longer than 1 ms in which this goroutine,
// asking to wake every 100 µs, did not run: the client could not have read
// an answer then either.
func (c *openClient) watch() {
	defer c.wg.Done()
	last := time.Now()
	for {
		select {
		case <-c.stop:
			return
		default:
		}
		time.Sleep(100 * time.Microsecond)
		now := time.Now()
		if now.Sub(last) > time.Millisecond {
			c.mu.Lock()
			c.stalls = append(c.stalls, [2]time.Time{last, now})
			c.mu.Unlock()
		}
		last = now
	}
}

// stalledWithin is the total client stall time inside [from, to].
func (c *openClient) stalledWithin(from, to time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var d time.Duration
	for _, s := range c.stalls {
		lo, hi := max(s[0].UnixNano(), from.UnixNano()), min(s[1].UnixNano(), to.UnixNano())
		if hi > lo {
			d += time.Duration(hi - lo)
		}
	}
	return d
}

func (c *openClient) close() {
	close(c.stop)
	c.wg.Wait()
	c.client.CloseIdleConnections()
}

// run sends rate requests/s for d, half cart/add and half cart/get over
// 1000 carts, and returns every outcome once all are in.
func (c *openClient) run(rate float64, d time.Duration) answers {
	total := int(rate * d.Seconds())
	out := make(answers, total)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range total {
		time.Sleep(time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))))
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = c.send(i)
		}()
	}
	wg.Wait()
	for i := range out {
		out[i].stalled = c.stalledWithin(out[i].sent, out[i].received)
	}
	return out
}

func (c *openClient) send(i int) answer {
	method, body := "add", fmt.Sprintf(`{"user":"u%d","item":"i%d","qty":1}`, i%1000, i%7)
	if i%2 == 1 {
		method, body = "get", fmt.Sprintf(`{"user":"u%d"}`, i%1000)
	}
	req, _ := http.NewRequest(http.MethodPost, c.url+method, strings.NewReader(body))
	req.Header.Set("Tempest-Timeout-Ms", fmt.Sprint(c.budget.Milliseconds()))
	a := answer{sent: time.Now()}
	resp, err := c.client.Do(req)
	if err != nil {
		a.received, a.code = time.Now(), err.Error()
		return a
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	a.received = time.Now()
	if err != nil {
		a.code = err.Error()
		return a
	}
	a.status = resp.StatusCode
	if a.status != 200 {
		if i := strings.Index(string(raw), `"code": "`); i >= 0 {
			a.code, _, _ = strings.Cut(string(raw[i+len(`"code": "`):]), `"`)
		}
	}
	return a
}
