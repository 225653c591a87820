package ricochettest

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/tempestrt/tempest/ricochet"
)

// FaultConfig describes the network misbehaviour injected by the in-memory
// transports (the deterministic Sim and the goroutine-based MemNetwork).
// Every decision is drawn from a seeded *rand.Rand, per packet copy (a
// multicast to n members is n independent copies, as on a switched LAN
// where losses happen at receivers' queues). The zero value is a perfect
// network with zero delay.
type FaultConfig struct {
	// Loss is the probability that a copy is dropped, independently of
	// every other copy (i.i.d. loss). Range [0, 1].
	Loss float64
	// Burst, when set, adds bursty loss: a two-state Gilbert–Elliott chain
	// per directed link (from, to), stepped once per copy on that link.
	Burst *GilbertElliott
	// Delay is the fixed one-way delay of every copy. >= 0.
	Delay time.Duration
	// Jitter adds a uniform random delay in [0, Jitter). >= 0. Copies with
	// different jitter overtake each other (natural reordering).
	Jitter time.Duration
	// Reorder is the probability that a copy is held back an extra
	// ReorderDelay, so later packets overtake it. Range [0, 1].
	Reorder float64
	// ReorderDelay is the extra delay of a reordered copy. >= 0.
	ReorderDelay time.Duration
	// Duplicate is the probability that a delivered copy is delivered a
	// second time (after an extra Jitter-bounded delay). Range [0, 1].
	Duplicate float64
	// Drop, when set, is asked about every copy first; returning true
	// drops it. A deterministic hook for tests ("lose exactly these").
	Drop func(from, to ricochet.NodeID, p *ricochet.Packet) bool
}

// GilbertElliott is a two-state loss model: in the good state a copy is
// lost with probability LossGood, in the bad state with LossBad; after each
// copy the state flips good→bad with probability PGoodBad and bad→good with
// PBadGood. Mean burst length is 1/PBadGood copies; the stationary share of
// time in the bad state is PGoodBad/(PGoodBad+PBadGood).
type GilbertElliott struct {
	PGoodBad, PBadGood float64
	LossGood, LossBad  float64
}

// MeanLoss is the stationary loss rate of the chain.
func (g GilbertElliott) MeanLoss() float64 {
	if g.PGoodBad+g.PBadGood == 0 {
		return g.LossGood
	}
	pb := g.PGoodBad / (g.PGoodBad + g.PBadGood)
	return pb*g.LossBad + (1-pb)*g.LossGood
}

// Validate reports the first out-of-range field, wrapped in ErrInvalidConfig.
func (f FaultConfig) Validate() error {
	prob := func(name string, p float64) error {
		if p < 0 || p > 1 || p != p {
			return fmt.Errorf("%w: fault %s = %v, want [0, 1]", ricochet.ErrInvalidConfig, name, p)
		}
		return nil
	}
	for _, c := range []struct {
		n string
		p float64
	}{{"Loss", f.Loss}, {"Reorder", f.Reorder}, {"Duplicate", f.Duplicate}} {
		if err := prob(c.n, c.p); err != nil {
			return err
		}
	}
	if f.Burst != nil {
		b := f.Burst
		for _, c := range []struct {
			n string
			p float64
		}{{"Burst.PGoodBad", b.PGoodBad}, {"Burst.PBadGood", b.PBadGood}, {"Burst.LossGood", b.LossGood}, {"Burst.LossBad", b.LossBad}} {
			if err := prob(c.n, c.p); err != nil {
				return err
			}
		}
	}
	if f.Delay < 0 || f.Jitter < 0 || f.ReorderDelay < 0 {
		return fmt.Errorf("%w: negative fault delay", ricochet.ErrInvalidConfig)
	}
	return nil
}

// FaultStats counts what the fault model did to packet copies.
type FaultStats struct {
	Copies      uint64 // copies offered to the network
	Dropped     uint64 // lost (i.i.d., burst or Drop hook)
	Partitioned uint64 // dropped because sender and receiver were partitioned
	Duplicated  uint64 // extra copies delivered
	Reordered   uint64 // copies held back ReorderDelay
	// DroppedData counts the dropped copies of original (not retransmitted)
	// data packets: the losses the protocol must repair.
	DroppedData uint64
}

type link struct{ from, to ricochet.NodeID }

// faultModel applies a FaultConfig. Not safe for concurrent use (the
// MemNetwork guards it with its mutex; the Sim is single-threaded).
type faultModel struct {
	cfg   FaultConfig
	rng   *rand.Rand
	bad   map[link]bool // Gilbert–Elliott state per link
	side  map[ricochet.NodeID]int
	stats FaultStats
}

func newFaultModel(cfg FaultConfig, rng *rand.Rand) *faultModel {
	return &faultModel{cfg: cfg, rng: rng, bad: make(map[link]bool)}
}

// partition splits the nodes into sides: nodes in different sets cannot
// exchange packets; nodes not listed form one more side together.
func (f *faultModel) partition(sets [][]ricochet.NodeID) {
	f.side = make(map[ricochet.NodeID]int)
	for i, s := range sets {
		for _, n := range s {
			f.side[n] = i + 1
		}
	}
}

func (f *faultModel) heal() { f.side = nil }

// plan decides the fate of one copy: the delays after which it is
// delivered (none: dropped; two: duplicated).
func (f *faultModel) plan(from, to ricochet.NodeID, p *ricochet.Packet, dst []time.Duration) []time.Duration {
	f.stats.Copies++
	if f.side != nil && f.side[from] != f.side[to] {
		f.stats.Partitioned++
		return dst
	}
	lost := f.cfg.Drop != nil && f.cfg.Drop(from, to, p)
	if !lost && f.cfg.Burst != nil {
		l := link{from, to}
		b := f.cfg.Burst
		loss := b.LossGood
		if f.bad[l] {
			loss = b.LossBad
		}
		lost = f.rng.Float64() < loss
		if f.bad[l] {
			f.bad[l] = f.rng.Float64() >= b.PBadGood
		} else {
			f.bad[l] = f.rng.Float64() < b.PGoodBad
		}
	}
	if !lost && f.cfg.Loss > 0 {
		lost = f.rng.Float64() < f.cfg.Loss
	}
	if lost {
		f.stats.Dropped++
		if p.Kind == ricochet.KindData && p.Data != nil && !p.Data.Retransmit {
			f.stats.DroppedData++
		}
		return dst
	}
	d := f.cfg.Delay + f.jitter()
	if f.cfg.Reorder > 0 && f.rng.Float64() < f.cfg.Reorder {
		f.stats.Reordered++
		d += f.cfg.ReorderDelay
	}
	dst = append(dst, d)
	if f.cfg.Duplicate > 0 && f.rng.Float64() < f.cfg.Duplicate {
		f.stats.Duplicated++
		dst = append(dst, d+f.jitter())
	}
	return dst
}

func (f *faultModel) jitter() time.Duration {
	if f.cfg.Jitter <= 0 {
		return 0
	}
	return time.Duration(f.rng.Int64N(int64(f.cfg.Jitter)))
}
