package main

import (
	"fmt"
	"time"

	"github.com/tempestrt/tempest/ricochet"
)

// engineConfig is the Ricochet engine configuration of one bench mode: the
// LAN defaults with the bench's --r, --c, --nak-timeout, --flush-interval
// and --bins (zero: keep the default), LEC on or off; without LEC the first
// NAK waits --nak-only-delay instead of the NAK timeout.
func engineConfig(c benchConfig, lec bool) (ricochet.Config, error) {
	cfg := ricochet.DefaultLANConfig()
	cfg.R, cfg.C = c.R, c.C
	if c.NakTimeout > 0 {
		cfg.NakTimeout = c.NakTimeout
	}
	if c.Flush > 0 {
		cfg.FlushInterval = c.Flush
	}
	if c.Bins > 0 {
		cfg.BinsPerRegion = c.Bins
	}
	cfg.DisableLEC = !lec
	if !lec {
		// No LEC repair can come: NAK after a reorder window only.
		cfg.NakTimeout = c.NakOnlyDelay
	}
	// One payload per packet (no fragmentation); the loopback codec allows
	// datagrams up to 64 KiB, repairs included.
	cfg.MaxPayload = max(cfg.MaxPayload, c.Payload)
	if cfg.MaxPayload+ricochet.WireRepairOverhead(cfg.R) > ricochet.WireMaxDatagram {
		return cfg, fmt.Errorf("--payload %d with --r %d does not fit a UDP datagram", c.Payload, c.R)
	}
	return cfg, cfg.Validate()
}

// engineNode adapts *ricochet.Node to benchNode.
type engineNode struct{ *ricochet.Node }

func startBenchNode(s nodeSpec) (benchNode, error) {
	cfg, err := engineConfig(s.Cfg, s.LEC)
	if err != nil {
		return nil, err
	}
	n, err := ricochet.NewNode(cfg, s.ID, s.Transport, ricochet.NodeOptions{
		Seed: s.Seed,
		OnDeliver: func(d ricochet.Delivery) {
			s.Deliver(benchDelivery{Group: d.ID.Group, Sender: d.ID.Sender, Payload: d.Payload, Via: benchVia(d.Via), At: time.Now(), Detect: d.Latency})
		},
	})
	if err != nil {
		return nil, err
	}
	for _, g := range s.Groups {
		n.SetGroup(g, s.Members)
	}
	return engineNode{n}, nil
}

// benchVia maps the engine's Via to the bench's.
func benchVia(v ricochet.Via) via {
	switch v {
	case ricochet.ViaLEC:
		return viaLEC
	case ricochet.ViaNAK:
		return viaNAK
	}
	return viaDirect
}
