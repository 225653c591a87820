package actors_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/tempestrt/tempest/actors"
	"github.com/tempestrt/tempest/collections"
)

type ratioReq struct {
	Key string  `json:"key"`
	Num float64 `json:"num"`
	Den float64 `json:"den"`
}

type ratioResp struct {
	Ratio  float64 `json:"ratio"`
	Exists bool    `json:"exists"`
}

// ratioService stores num/den. A zero den makes an infinity or NaN, which
// JSON cannot encode: one bad request whose handler, carelessly, ignores
// the error Put returns.
func ratioService() *actors.Service {
	return actors.NewService("ratios", func(b *actors.Builder) {
		ratios := collections.NewMap[string, float64](b.Store(), "ratios")
		calls := collections.NewCounter(b.Store(), "calls")
		actors.Update(b, "set", func(_ *actors.Ctx, r ratioReq) (ratioResp, error) {
			_ = calls.Incr(1)
			_ = ratios.Put(r.Key, r.Num/r.Den) // error ignored on purpose
			v, ok := ratios.Get(r.Key)
			return ratioResp{Ratio: v, Exists: ok}, nil
		})
		actors.Query(b, "get", func(_ *actors.Ctx, r ratioReq) (ratioResp, error) {
			v, ok := ratios.Get(r.Key)
			return ratioResp{Ratio: v, Exists: ok}, nil
		})
	})
}

// TestUnencodableValueIsA500AndNothingElse: an update whose value cannot
// be encoded is answered 500 codec_error (through Node.Call and as the
// gateway's JSON error); none of its ops is applied on any clone; the
// clones' schedulers do not crash and keep serving.
func TestUnencodableValueIsA500AndNothingElse(t *testing.T) {
	n := startNode(t, t.TempDir(), func(c *actors.Config) {
		c.Services = []*actors.Service{ratioService()}
		c.HTTPAddr = "127.0.0.1:0"
	})
	mustCall[ratioResp](t, n, "ratios", "set", ratioReq{Key: "k", Num: 1, Den: 4})

	_, err := call[ratioResp](t, n, "ratios", "set", ratioReq{Key: "k", Num: 1, Den: 0})
	if e := actors.AsError(err); e == nil || e.Status != http.StatusInternalServerError || e.Code != "codec_error" || !errors.Is(err, collections.ErrCodec) {
		t.Fatalf("unencodable value: got %v, want 500 codec_error", err)
	}

	// Through HTTP, the same request is a JSON error.
	resp, err := http.Post("http://"+n.HTTPAddr()+"/v1/services/ratios/set", "application/json", bytes.NewReader([]byte(`{"key":"k","num":0,"den":0}`)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Error struct{ Code, Message string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusInternalServerError || body.Error.Code != "codec_error" {
		t.Fatalf("HTTP: status %d, body %+v, decode error %v", resp.StatusCode, body, err)
	}

	// Nothing of the failed updates was applied, on any clone (round-robin
	// visits each), and every clone still serves. Reads are local: wait
	// until every clone has the good update before reading from each.
	waitConverged(t, n, "ratios", 5*time.Second)
	clones := 0
	for _, c := range n.Status().Clones {
		if c.Service == "ratios" {
			clones++
		}
	}
	for range 2 * clones {
		if got := mustCall[ratioResp](t, n, "ratios", "get", ratioReq{Key: "k"}); got.Ratio != 0.25 {
			t.Fatalf("get after failed updates: %+v, want the old 0.25", got)
		}
	}
	waitConverged(t, n, "ratios", 5*time.Second)
	for _, c := range n.Status().Clones {
		if c.Service != "ratios" {
			continue
		}
		// One good update of two ops (calls, ratios): the failed updates'
		// Incr was retracted too.
		if c.Applied != 2 {
			t.Fatalf("%s applied %d ops, want 2", c.Clone, c.Applied)
		}
		if c.HandlerPanics != 0 || c.Restarts != 0 || len(c.ActorRestarts) != 0 {
			t.Fatalf("%s: handler panics %d, restarts %d %v", c.Clone, c.HandlerPanics, c.Restarts, c.ActorRestarts)
		}
	}
	if f := n.Status().RecentFailures; len(f) != 0 {
		t.Fatalf("supervision events after a bad request: %+v", f)
	}

	// The service keeps taking updates.
	if got := mustCall[ratioResp](t, n, "ratios", "set", ratioReq{Key: "k", Num: 1, Den: 2}); got.Ratio != 0.5 {
		t.Fatalf("good update after bad ones: %+v", got)
	}
}
