package ricochettest

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tempestrt/tempest/ricochet"
)

func TestMemNetworkFaults(t *testing.T) {
	seed := testSeed(t, 34)
	recv := func(tr *MemTransport, wait time.Duration) []ricochet.Inbound {
		var got []ricochet.Inbound
		timeout := time.After(wait)
		for {
			select {
			case m := <-tr.Inbound():
				got = append(got, m)
			case <-timeout:
				return got
			}
		}
	}
	pkt := func() *ricochet.Packet {
		return &ricochet.Packet{Kind: ricochet.KindData, From: 1, Data: &ricochet.Data{ID: ricochet.PacketID{Group: 1, Sender: 1, Seq: 1}, FragCount: 1, Payload: []byte("hello")}}
	}
	t.Run("copies-are-independent", func(t *testing.T) {
		net, _ := NewMemNetwork(seed, FaultConfig{})
		defer net.Close()
		a, _ := net.Transport(1)
		b, _ := net.Transport(2)
		c, _ := net.Transport(3)
		p := pkt()
		a.Multicast(1, []ricochet.NodeID{1, 2, 3}, p)
		gb, gc := recv(b, 20*time.Millisecond), recv(c, 20*time.Millisecond)
		if len(gb) != 1 || len(gc) != 1 || len(recv(a, 5*time.Millisecond)) != 0 {
			t.Fatalf("got %d %d", len(gb), len(gc))
		}
		gb[0].Packet.Data.Payload[0] = 'X'
		if string(gc[0].Packet.Data.Payload) != "hello" || string(p.Data.Payload) != "hello" {
			t.Fatal("receivers share memory")
		}
	})
	t.Run("delay-loss-dup-partition", func(t *testing.T) {
		net, _ := NewMemNetwork(seed, FaultConfig{Delay: 20 * time.Millisecond, Duplicate: 1})
		defer net.Close()
		a, _ := net.Transport(1)
		b, _ := net.Transport(2)
		start := time.Now()
		a.Unicast(2, pkt())
		got := recv(b, 200*time.Millisecond)
		if len(got) != 2 {
			t.Fatalf("duplicate=1: %d copies", len(got))
		}
		if got[0].At.Sub(start) < 20*time.Millisecond {
			t.Fatalf("delivered after %v, before the 20ms delay", got[0].At.Sub(start))
		}
		net.Partition([]ricochet.NodeID{2})
		a.Unicast(2, pkt())
		if got := recv(b, 50*time.Millisecond); len(got) != 0 {
			t.Fatal("delivered across a partition")
		}
		net.Heal()
		net.SetFaults(FaultConfig{Loss: 1})
		a.Unicast(2, pkt())
		if got := recv(b, 10*time.Millisecond); len(got) != 0 {
			t.Fatal("delivered at 100% loss")
		}
		st := net.Stats()
		if st.Faults.Partitioned != 1 || st.Faults.Dropped != 1 || st.Faults.Duplicated != 1 || st.Delivered != 2 {
			t.Fatalf("stats %+v", st)
		}
		if err := net.SetFaults(FaultConfig{Loss: 2}); !errors.Is(err, ricochet.ErrInvalidConfig) {
			t.Fatalf("bad faults: %v", err)
		}
	})
	t.Run("queue-full-drops", func(t *testing.T) {
		net, _ := NewMemNetwork(seed, FaultConfig{})
		defer net.Close()
		a, _ := net.Transport(1)
		net.Transport(2)
		for range DefaultMemQueue + 10 {
			a.Unicast(2, pkt())
		}
		if st := net.Stats(); st.QueueFull != 10 {
			t.Fatalf("queue full %d, want 10", st.QueueFull)
		}
	})
}

// The Gilbert–Elliott model produces bursts with the configured mean loss
// and mean burst length (seeded: deterministic).
func TestGilbertElliottBursts(t *testing.T) {
	seed := testSeed(t, 35)
	ge := GilbertElliott{PGoodBad: 0.01, PBadGood: 0.2, LossBad: 1}
	f := newFaultModel(FaultConfig{Burst: &ge}, rand.New(rand.NewPCG(seed, 1)))
	p := &ricochet.Packet{Kind: ricochet.KindSession, Session: &ricochet.Session{}}
	const n = 400000
	lost, bursts, run := 0, 0, 0
	var d []time.Duration
	for range n {
		d = f.plan(1, 2, p, d[:0])
		if len(d) == 0 {
			lost++
			run++
		} else if run > 0 {
			bursts++
			run = 0
		}
	}
	rate := float64(lost) / n
	meanBurst := float64(lost) / float64(bursts)
	t.Logf("loss %.4f (want %.4f), mean burst %.2f (want %.2f)", rate, ge.MeanLoss(), meanBurst, 1/ge.PBadGood)
	if rate < 0.85*ge.MeanLoss() || rate > 1.15*ge.MeanLoss() {
		t.Fatalf("loss rate %.4f, want about %.4f", rate, ge.MeanLoss())
	}
	if meanBurst < 4 || meanBurst > 6 {
		t.Fatalf("mean burst %.2f, want about 5", meanBurst)
	}
	if err := (FaultConfig{Burst: &GilbertElliott{PGoodBad: -1}}).Validate(); !errors.Is(err, ricochet.ErrInvalidConfig) {
		t.Fatalf("bad burst: %v", err)
	}
}
