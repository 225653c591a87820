package collections

import (
	"fmt"
	"time"
)

// DefaultMaxPending is Config.MaxPending's default (ops per item). It is a
// variable so tests can shrink it; change it only before creating stores.
var DefaultMaxPending = 4096

// DefaultHotChanged is Config.HotChanged's default: a replica of up to
// 1024 items changed all the time keeps them all hot; a large one keeps
// 1024 of the items it changed since its latest snapshot, a few hundred
// KB.
const DefaultHotChanged = 1024

// Config configures one replica's Store.
type Config struct {
	// Service is the service whose state this is. Ops of other services
	// are rejected. Required.
	Service string

	// Replica is this replica's origin id, e.g. "cart/1": it is stamped on
	// every op this replica makes and breaks timestamp ties (by string
	// order), so it must be unique among the clones of the service and
	// stable across restarts of the clone. Required.
	Replica string

	// Now is the physical clock of the HLC. Default time.Now.
	Now func() time.Time

	// MaxDrift caps how far remote timestamps may drag the HLC ahead of
	// Now (see DefaultMaxDrift). Zero: DefaultMaxDrift; negative: no cap.
	MaxDrift time.Duration

	// MaxPending is a soft bound on one item's tentative ops (count):
	// each time an item's history grows past it, Stats.PendingWarnings is
	// incremented. Nothing is dropped — a long tentative history means an
	// origin in SetOrigins is silent or far behind, which the operator
	// should see. Zero: DefaultMaxPending.
	MaxPending int

	// DisableAutoCompact turns off automatic compaction. By default every
	// Deliver, ObserveHeartbeat, Heartbeat and successful Update folds the
	// ops that have become stable; this is cheap (it costs O(log items) per
	// folded op, found through a heap keyed by each item's oldest
	// tentative op, and nothing when nothing is stable). Tests that want
	// to look at tentative histories disable it and call Compact.
	DisableAutoCompact bool

	// HotChanged is how many of the items changed since the latest
	// snapshot capture (the next delta's members) stay Go objects once
	// quiet, so that an item changed often does not go to its cold table
	// and back at every op. Beyond it, quiet members go cold like any
	// quiet item, and the next delta reads them from their table: what
	// changed between two snapshots (up to a clone's SnapshotEvery ops) is
	// not held at several hundred bytes an item. Zero: DefaultHotChanged;
	// negative: none (a member goes cold as soon as it is quiet).
	HotChanged int

	// OnStable, if set, is called for each op as it becomes stable and is
	// folded into its item's base value, in the item's order (and across
	// items in (timestamp, origin, seq) order). It is the hook for the
	// per-item order checker (collections/check). It runs synchronously
	// inside Deliver/Compact/...; it must not call back into the store.
	OnStable func(collection string, item []byte, op OpID)
}

// DefaultConfig returns a Config with every default filled in.
func DefaultConfig(service, replica string) Config {
	return Config{
		Service:    service,
		Replica:    replica,
		Now:        time.Now,
		MaxDrift:   DefaultMaxDrift,
		MaxPending: DefaultMaxPending,
		HotChanged: DefaultHotChanged,
	}
}

// Validate reports whether c is usable (after defaults are filled in).
func (c Config) Validate() error {
	switch {
	case c.Service == "":
		return fmt.Errorf("%w: Service is empty", ErrConfig)
	case c.Replica == "":
		return fmt.Errorf("%w: Replica is empty", ErrConfig)
	case c.MaxPending < 0:
		return fmt.Errorf("%w: MaxPending %d < 0", ErrConfig, c.MaxPending)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.MaxDrift == 0 {
		c.MaxDrift = DefaultMaxDrift
	}
	if c.MaxPending == 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.HotChanged == 0 {
		c.HotChanged = DefaultHotChanged
	}
	return c
}
