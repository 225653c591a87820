package actors

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tempestrt/tempest/collections"
	"github.com/tempestrt/tempest/proto/tempestpb"
)

// fuzzService exercises every collection kind and a user op.
func fuzzService() *Service {
	return NewService("fz", func(b *Builder) {
		m := collections.NewMap[string, map[string]int64](b.Store(), "m")
		collections.RegisterOp(m, "inc", func(cur map[string]int64, _ bool, a struct{ K string }) (map[string]int64, bool) {
			next := map[string]int64{}
			for k, v := range cur {
				next[k] = v
			}
			next[a.K]++
			return next, true
		})
		l := collections.NewList[string](b.Store(), "l")
		s := collections.NewSet[int](b.Store(), "s")
		c := collections.NewCounter(b.Store(), "c")
		type req struct {
			K string `json:"k"`
			N int    `json:"n"`
		}
		Update(b, "put", func(_ *Ctx, r req) (int, error) {
			if r.K == "" {
				return 0, BadRequest("k required")
			}
			m.Do(r.K, "inc", struct{ K string }{r.K})
			l.Append(r.K)
			s.Add(r.N)
			c.Incr(int64(r.N))
			return l.Len(), nil
		})
		Query(b, "get", func(_ *Ctx, r req) (map[string]int64, error) {
			v, _ := m.Get(r.K)
			return v, nil
		})
	})
}

// FuzzGroupMessage feeds arbitrary bytes through what a member does with a
// payload from the group transport (decode) and what the scheduler does with
// the ops in it (Deliver): nothing may panic, and a rejected op must leave
// the replica's digest unchanged.
func FuzzGroupMessage(f *testing.F) {
	good, _ := proto.Marshal(&tempestpb.GroupMessage{Body: &tempestpb.GroupMessage_Ops{Ops: &tempestpb.OpBatch{Ops: []*tempestpb.Op{
		{Service: "fz", Collection: "m", Item: []byte("a"), Kind: tempestpb.OpKind_OP_USER, UserOp: "inc", Value: []byte(`{"K":"a"}`), WallMs: 1, Origin: "fz/2", Seq: 1},
		{Service: "fz", Collection: "l", Kind: tempestpb.OpKind_OP_LIST_INSERT, Index: -3, Value: []byte(`"x"`), WallMs: 2, Origin: "fz/2", Seq: 2},
		{Service: "fz", Collection: "c", Kind: tempestpb.OpKind_OP_COUNTER_ADD, Delta: 5, WallMs: 3, Origin: "fz/3", Seq: 1},
	}}}})
	hb, _ := proto.Marshal(&tempestpb.GroupMessage{Body: &tempestpb.GroupMessage_Heartbeat{Heartbeat: &tempestpb.Heartbeat{Origin: "fz/2", Seq: 2, WallMs: 9}}})
	f.Add(good)
	f.Add(hb)
	f.Add([]byte{0x0a, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, payload []byte) {
		b, err := fuzzService().build(collections.Config{Service: "fz", Replica: "fz/1"})
		if err != nil {
			t.Fatal(err)
		}
		st := b.store
		st.SetOrigins([]string{"fz/1", "fz/2", "fz/3"})
		msg := &tempestpb.GroupMessage{}
		if proto.Unmarshal(payload, msg) != nil {
			return
		}
		switch body := msg.Body.(type) {
		case *tempestpb.GroupMessage_Ops:
			for _, op := range body.Ops.GetOps() {
				before := st.Digest()
				if _, err := st.Deliver(op); err != nil && st.Digest() != before {
					t.Fatalf("rejected op %v changed the digest", op)
				}
			}
		case *tempestpb.GroupMessage_Heartbeat:
			st.ObserveHeartbeat(body.Heartbeat)
		case *tempestpb.GroupMessage_CatchupReply:
			for _, op := range body.CatchupReply.GetOps() {
				_, _ = st.Deliver(op)
			}
		}
		st.Compact()
	})
}

// FuzzRequestBody feeds arbitrary request bodies to handlers the way the
// scheduler runs them: a body that does not decode is a 400 *Error, never a
// panic, and a failed update leaves no op behind.
func FuzzRequestBody(f *testing.F) {
	f.Add([]byte(`{"k":"a","n":3}`))
	f.Add([]byte(`{"k":5}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"k":"","n":-1}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		b, err := fuzzService().build(collections.Config{Service: "fz", Replica: "fz/1"})
		if err != nil {
			t.Fatal(err)
		}
		c := &Ctx{Service: "fz", Clone: "fz/1", Deadline: time.Now().Add(time.Second)}
		for _, name := range []string{"put", "get"} {
			m := b.methods[name]
			var herr error
			ops, err := b.store.Update(func() error {
				_, herr = m.invoke(c, body)
				return herr
			})
			if err != nil {
				var e *Error
				if !errors.As(err, &e) || e.Status != http.StatusBadRequest {
					t.Fatalf("%s(%q): error %v is not a 400 *Error", name, body, err)
				}
				if len(ops) != 0 {
					t.Fatalf("%s(%q) failed but left %d ops", name, body, len(ops))
				}
			}
		}
	})
}
