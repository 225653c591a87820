package ricochettest

import (
	"testing"
	"time"

	"github.com/tempestrt/tempest/ricochet"
)

// stallRun streams 15,000 packets/s from node 1 to four receivers for
// 600 ms; node `lossAt` loses packet 300 and node `stalled` pauses for
// `pause` when packet pauseAt is sent (LEC off: the loss must be recovered
// by NAK).
func stallRun(t *testing.T, seed uint64, lossAt, stalled ricochet.NodeID, pauseAt int, pause time.Duration) (*simCluster, ricochet.PacketID) {
	t.Helper()
	cfg := ricochet.DefaultConfig()
	cfg.DisableLEC = true
	lost := ricochet.PacketID{Group: 1, Sender: 1, Seq: 300}
	c := simNewCluster(t, seed, 5, cfg, FaultConfig{Delay: msec(0.1), Jitter: msec(0.05), Drop: simDropData(lossAt, lost)})
	c.sim.SetGroup(1, simNodes(5))
	const rate = 15000
	payload := make([]byte, 1000)
	var sendNext func(k int)
	sendNext = func(k int) {
		if k > 9000 {
			return
		}
		if until := c.sim.Paused(1); !until.IsZero() { // a stalled sender sends nothing
			c.sim.At(until, func() { sendNext(k) })
			return
		}
		c.send(1, 1, payload)
		if k == pauseAt {
			c.sim.Pause(stalled, pause)
		}
		c.sim.At(c.sim.Now().Add(time.Second/rate), func() { sendNext(k + 1) })
	}
	c.sim.At(SimEpoch, func() { sendNext(1) })
	c.sim.Run(2 * time.Second)
	return c, lost
}

// A receiver that stalls 110 ms right after a loss NAKs late, while the
// sender has sent 1,650 more packets: the sender still has the packet.
func TestSimStalledReceiverRecoversByNAK(t *testing.T) {
	seed := testSeed(t, 51)
	c, lost := stallRun(t, seed, 2, 2, 300, 110*time.Millisecond)
	if d := c.mustDeliverOnce(2, lost); d.Via != ricochet.ViaNAK {
		t.Fatalf("%v", d)
	}
	if st, s1 := c.stats(2), c.stats(1); st.Unrecoverable != 0 || s1.NakMisses != 0 {
		t.Fatalf("receiver: %d unrecoverable; sender: %d NAK misses", st.Unrecoverable, s1.NakMisses)
	}
}

// A sender that stalls 200 ms just after a receiver noticed a loss (5 ms,
// before its first NAK) answers the NAKs only when it wakes: the receiver
// must still be asking (NAK retries back off) and recover the packet.
func TestSimStalledSenderStillAnswersNAK(t *testing.T) {
	seed := testSeed(t, 52)
	c, lost := stallRun(t, seed, 2, 1, 375, 200*time.Millisecond)
	d := c.mustDeliverOnce(2, lost)
	if d.Via != ricochet.ViaNAK {
		t.Fatalf("%v", d)
	}
	if st := c.stats(2); st.Unrecoverable != 0 {
		t.Fatalf("receiver gave up: %d unrecoverable (NAKs sent %d)", st.Unrecoverable, st.NaksSent)
	}
}
