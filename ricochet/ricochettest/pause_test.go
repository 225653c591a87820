package ricochettest

import (
	"testing"
	"time"

	"github.com/tempestrt/tempest/ricochet"
)

// Pause holds a node's packets and ticks and releases them, in order, when
// the pause ends.
func TestSimPause(t *testing.T) {
	seed := testSeed(t, 50)
	c := simNewCluster(t, seed, 3, ricochet.DefaultConfig(), FaultConfig{Delay: msec(0.1)})
	c.sim.SetGroup(1, simNodes(3))
	c.sim.Pause(3, 50*time.Millisecond)
	if got := c.sim.Paused(3); !got.Equal(SimEpoch.Add(50 * time.Millisecond)) {
		t.Fatalf("Paused(3) = %v", got)
	}
	if !c.sim.Paused(2).IsZero() {
		t.Fatal("node 2 paused")
	}
	c.sim.Pause(3, 10*time.Millisecond) // shorter: no effect
	ids := c.sendN(1, 1, 10, 100, msec(1))
	c.sim.Run(100 * time.Millisecond)
	for i, id := range ids {
		d2, d3 := c.mustDeliverOnce(2, id), c.mustDeliverOnce(3, id)
		if d2.at.After(SimEpoch.Add(20 * time.Millisecond)) {
			t.Fatalf("running node 2 delivered %v at %v", id, d2.at.Sub(SimEpoch))
		}
		if !d3.at.Equal(SimEpoch.Add(50 * time.Millisecond)) {
			t.Fatalf("paused node 3 delivered %v at %v, want at the end of the pause", id, d3.at.Sub(SimEpoch))
		}
		if got := c.got[3][i].ID; got != id {
			t.Fatalf("node 3 delivery %d is %v, want %v (arrival order)", i, got, id)
		}
	}
	if !c.sim.Paused(3).IsZero() {
		t.Fatal("still paused")
	}
}
