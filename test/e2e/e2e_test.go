// Package e2e runs the tempest-node binary as a user would: over HTTP, with
// real processes that are killed with SIGKILL.
package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var binary string // built once by TestMain

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tempest-e2e-bin-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "tempest-node")
	build := exec.Command("go", "build", "-o", binary, "github.com/tempestrt/tempest/cmd/tempest-node")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build tempest-node:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// node is a running tempest-node dev process.
type node struct {
	cmd  *exec.Cmd
	addr string
	logs *bytes.Buffer
	done chan struct{}
}

var gatewayLine = regexp.MustCompile(`gateway\s+http://(\S+)`)

func startNode(t *testing.T, dataDir string, extra ...string) *node {
	t.Helper()
	return startNodeWrapped(t, dataDir, nil, extra...)
}

// startNodeWrapped starts `tempest-node dev` under wrapper (a command line
// that runs the binary given after it, such as taskset -c 0), if any.
func startNodeWrapped(t *testing.T, dataDir string, wrapper []string, extra ...string) *node {
	t.Helper()
	args := append(slices.Clone(wrapper), binary, "dev", "--http", "127.0.0.1:0", "--data-dir", dataDir, "--log-level", "warn")
	args = append(args, extra...)
	cmd := exec.Command(args[0], args[1:]...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	cmd.Stderr = &syncWriter{w: logs}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n := &node{cmd: cmd, logs: logs, done: make(chan struct{})}
	addrCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := gatewayLine.FindStringSubmatch(sc.Text()); m != nil {
				addrCh <- m[1]
			}
		}
	}()
	go func() { _ = cmd.Wait(); close(n.done) }()
	t.Cleanup(func() { n.kill() })
	select {
	case n.addr = <-addrCh:
	case <-n.done:
		t.Fatalf("tempest-node exited at start: %s", logs)
	case <-time.After(30 * time.Second):
		t.Fatalf("tempest-node did not print its address: %s", logs)
	}
	return n
}

func (n *node) kill() {
	select {
	case <-n.done:
	default:
		_ = n.cmd.Process.Signal(syscall.SIGKILL)
		<-n.done
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

var client = &http.Client{Timeout: 5 * time.Second}

func post(addr, path, body string) (int, map[string]any, error) {
	resp, err := client.Post("http://"+addr+path, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return resp.StatusCode, nil, fmt.Errorf("answer is not JSON: %w", err)
	}
	return resp.StatusCode, out, nil
}

func status(t *testing.T, addr string) map[string]any {
	t.Helper()
	resp, err := client.Get("http://" + addr + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestKill9LosesNoAcknowledgedUpdate adds to carts from several clients,
// kills the node with SIGKILL mid-stream, restarts it on the same data
// directory and checks that every acknowledged add is there (and nothing
// that was never sent).
func TestKill9LosesNoAcknowledgedUpdate(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, dir)
	const users, items = 4, 3
	var mu sync.Mutex
	acked := map[string]int64{}    // user/item -> acknowledged qty
	inflight := map[string]int64{} // sent without an answer (may or may not be applied)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				user, item := fmt.Sprint("u", (w+i)%users), fmt.Sprint("i", i%items)
				key := user + "/" + item
				mu.Lock()
				inflight[key]++
				mu.Unlock()
				code, _, err := post(n.addr, "/v1/services/cart/add", fmt.Sprintf(`{"user":%q,"item":%q,"qty":1}`, user, item))
				if err == nil && code == 200 {
					mu.Lock()
					inflight[key]--
					acked[key]++
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	n.kill() // SIGKILL while clients are still sending
	close(stop)
	wg.Wait()
	var total int64
	for _, v := range acked {
		total += v
	}
	if total < 20 {
		t.Fatalf("only %d adds acknowledged before the kill; logs: %s", total, n.logs)
	}
	t.Logf("%d adds acknowledged before SIGKILL", total)

	n2 := startNode(t, dir)
	// Reads are local to a clone, so first let the restarted clones catch up
	// with each other (catch-up from peers' op logs); then they must agree.
	deadline := time.Now().Add(10 * time.Second)
	for {
		digests := map[string]bool{}
		for _, c := range status(t, n2.addr)["clones"].([]any) {
			cm := c.(map[string]any)
			if cm["service"] == "cart" {
				digests[cm["digest"].(string)] = true
			}
		}
		if len(digests) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cart clones disagree after restart: %v", digests)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for u := range users {
		user := fmt.Sprint("u", u)
		code, out, err := post(n2.addr, "/v1/services/cart/get", fmt.Sprintf(`{"user":%q}`, user))
		if err != nil || code != 200 {
			t.Fatalf("get %s: %d %v %v", user, code, out, err)
		}
		got, _ := out["items"].(map[string]any)
		for i := range items {
			item := fmt.Sprint("i", i)
			key := user + "/" + item
			q, _ := got[item].(float64)
			if int64(q) < acked[key] || int64(q) > acked[key]+inflight[key] {
				t.Errorf("%s: qty %v after restart, acknowledged %d, unanswered %d", key, q, acked[key], inflight[key])
			}
		}
	}
}

// TestHTTPContract checks the documented status codes against the binary.
func TestHTTPContract(t *testing.T) {
	n := startNode(t, t.TempDir(), "--chaos")
	cases := []struct {
		path, body string
		status     int
		code       string
	}{
		{"/v1/services/cart/add", `{"user":"ann","item":"apple","qty":2}`, 200, ""},
		{"/v1/services/cart/add", `{"user":"ann"`, 400, "bad_json"},
		{"/v1/services/cart/add", `{"user":"ann","item":"apple","qty":-1}`, 400, "bad_request"},
		{"/v1/services/nope/add", `{}`, 404, "unknown_service"},
		{"/v1/services/cart/nope", `{}`, 404, "unknown_method"},
		{"/v1/services/cart/add", `{"user":"` + strings.Repeat("x", 2<<20) + `"}`, 413, "too_large"},
		{"/v1/admin/kill", `{"actor":"cart/2/scheduler"}`, 202, ""},
		{"/v1/services/cart/get", `{"user":"ann"}`, 200, ""},
	}
	for _, c := range cases {
		code, out, err := post(n.addr, c.path, c.body)
		if err != nil {
			t.Fatalf("%s: %v", c.path, err)
		}
		if code != c.status {
			t.Fatalf("%s %.40s: status %d, want %d: %v", c.path, c.body, code, c.status, out)
		}
		if c.code != "" {
			e, _ := out["error"].(map[string]any)
			if e == nil || e["code"] != c.code {
				t.Fatalf("%s: error %v, want code %s", c.path, out, c.code)
			}
		}
	}
	req, _ := http.NewRequest("POST", "http://"+n.addr+"/v1/services/cart/get", strings.NewReader(`{"user":"ann"}`))
	req.Header.Set("Tempest-Timeout-Ms", "0")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("timeout 0: status %d", resp.StatusCode)
	}
	st := status(t, n.addr)
	if st["node"] != "dev" || len(st["clones"].([]any)) != 6 {
		t.Fatalf("status: %v", st)
	}
	// The service calls were the front end's own loop's; the kill and the
	// status requests took their connections to net/http.
	gw, _ := st["gateway"].(map[string]any)
	if served, _ := gw["served"].(float64); served < 1 {
		t.Fatalf("status gateway %v: no service call served by the front end's loop", gw)
	}
	if handed, _ := gw["handed_over"].(float64); handed < 1 {
		t.Fatalf("status gateway %v: no connection handed to net/http", gw)
	}
}
