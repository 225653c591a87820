package memgroup

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tempestrt/tempest/internal/group"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type inbox struct {
	mu  sync.Mutex
	got []string
}

func (b *inbox) recv(from string, p []byte) {
	b.mu.Lock()
	b.got = append(b.got, from+":"+string(p))
	b.mu.Unlock()
}

func (b *inbox) len() int { b.mu.Lock(); defer b.mu.Unlock(); return len(b.got) }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func join(t *testing.T, n *Network, names ...string) (map[string]group.Endpoint, map[string]*inbox) {
	t.Helper()
	eps, boxes := map[string]group.Endpoint{}, map[string]*inbox{}
	for _, m := range names {
		b := &inbox{}
		ep, err := n.Join("svc", m, b.recv)
		if err != nil {
			t.Fatal(err)
		}
		eps[m], boxes[m] = ep, b
	}
	return eps, boxes
}

func TestBroadcastReachesOthersNotSelf(t *testing.T) {
	n := New(1)
	defer n.Close()
	eps, boxes := join(t, n, "a", "b", "c")
	if err := eps["a"].Broadcast([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b and c", func() bool { return boxes["b"].len() == 1 && boxes["c"].len() == 1 })
	time.Sleep(10 * time.Millisecond)
	if boxes["a"].len() != 0 {
		t.Fatalf("sender received its own broadcast: %v", boxes["a"].got)
	}
	if got := boxes["b"].got[0]; got != "a:hi" {
		t.Fatalf("b got %q", got)
	}
	if m := eps["a"].Members(); fmt.Sprint(m) != "[a b c]" {
		t.Fatalf("members %v", m)
	}
}

func TestSendUnknownMemberAndDoubleJoin(t *testing.T) {
	n := New(1)
	defer n.Close()
	eps, _ := join(t, n, "a")
	if err := eps["a"].Send("zz", []byte("x")); !errors.Is(err, group.ErrUnknownMember) {
		t.Fatalf("want ErrUnknownMember, got %v", err)
	}
	if _, err := n.Join("svc", "a", func(string, []byte) {}); !errors.Is(err, group.ErrAlreadyJoined) {
		t.Fatalf("want ErrAlreadyJoined, got %v", err)
	}
	if err := eps["a"].Broadcast(make([]byte, MaxPayload+1)); !errors.Is(err, group.ErrTooLarge) {
		t.Fatalf("want ErrTooLarge, got %v", err)
	}
}

func TestLossAndDuplicationFollowTheSeed(t *testing.T) {
	run := func() (Stats, int) {
		n := New(42)
		defer n.Close()
		if err := n.SetFaults(Faults{Loss: 0.3, Duplicate: 0.2}); err != nil {
			t.Fatal(err)
		}
		eps, boxes := join(t, n, "a", "b")
		for i := range 1000 {
			_ = eps["a"].Send("b", []byte(fmt.Sprint(i)))
		}
		st := n.Stats()
		want := int(st.Sent - st.Lost + st.Duplicated)
		waitFor(t, "deliveries", func() bool { return boxes["b"].len() == want })
		return n.Stats(), boxes["b"].len()
	}
	s1, got1 := run()
	s2, got2 := run()
	if s1 != s2 || got1 != got2 {
		t.Fatalf("same seed, different faults: %+v/%d vs %+v/%d", s1, got1, s2, got2)
	}
	if s1.Lost < 200 || s1.Lost > 400 {
		t.Fatalf("loss 0.3 of 1000 lost %d", s1.Lost)
	}
	if s1.Duplicated < 100 || s1.Duplicated > 200 {
		t.Fatalf("duplicate 0.2 of ~700 duplicated %d", s1.Duplicated)
	}
}

func TestJitterReorders(t *testing.T) {
	n := New(7)
	defer n.Close()
	if err := n.SetFaults(Faults{Jitter: 5 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	eps, boxes := join(t, n, "a", "b")
	for i := range 200 {
		_ = eps["a"].Send("b", []byte(fmt.Sprintf("%03d", i)))
	}
	waitFor(t, "all 200", func() bool { return boxes["b"].len() == 200 })
	inOrder := true
	for i := 1; i < 200; i++ {
		if boxes["b"].got[i] < boxes["b"].got[i-1] {
			inOrder = false
		}
	}
	if inOrder {
		t.Fatal("jitter of 5ms over 200 payloads delivered everything in order")
	}
}

func TestPartitionAndHeal(t *testing.T) {
	n := New(3)
	defer n.Close()
	eps, boxes := join(t, n, "a", "b", "c")
	n.Partition([]string{"a"}, []string{"b"})
	_ = eps["a"].Broadcast([]byte("1"))
	waitFor(t, "c", func() bool { return boxes["c"].len() == 1 })
	time.Sleep(10 * time.Millisecond)
	if boxes["b"].len() != 0 {
		t.Fatal("partitioned member received")
	}
	n.Heal()
	_ = eps["a"].Broadcast([]byte("2"))
	waitFor(t, "b after heal", func() bool { return boxes["b"].len() == 1 })
}

func TestLeaveStopsDelivery(t *testing.T) {
	n := New(3)
	defer n.Close()
	eps, boxes := join(t, n, "a", "b")
	_ = eps["b"].Leave()
	if err := eps["b"].Broadcast([]byte("x")); !errors.Is(err, group.ErrClosed) {
		t.Fatalf("broadcast after leave: %v", err)
	}
	_ = eps["a"].Broadcast([]byte("x"))
	time.Sleep(10 * time.Millisecond)
	if boxes["b"].len() != 0 {
		t.Fatal("left member received")
	}
	if m := eps["a"].Members(); len(m) != 1 {
		t.Fatalf("members after leave: %v", m)
	}
}
