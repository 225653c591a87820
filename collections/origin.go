package collections

import "maps"

// originState is what a replica knows of one origin's op stream.
//
// Each origin numbers its ops 1, 2, 3, ... and stamps them with strictly
// increasing timestamps. Delivery is unordered, so the replica tracks the
// contiguous delivered prefix plus the seqs delivered beyond it. The
// horizon is a time before which no op of the origin can still arrive:
//
//   - the timestamp of the op at `contiguous` (every later op of the origin
//     has a larger seq, hence a larger timestamp), raised by
//   - any heartbeat (seq, ts) with seq <= contiguous: the origin promised
//     that its ops after seq are after ts, and everything up to seq is here.
//
// A heartbeat whose seq is beyond `contiguous` cannot be used yet; the
// latest one is kept and applied once the gap closes.
type originState struct {
	name       string
	contiguous uint64
	beyond     map[uint64]Timestamp // delivered seqs > contiguous, with their op's timestamp
	horizon    Timestamp
	hbSeq      uint64 // pending heartbeat (hbSeq > contiguous), if hbSeq != 0
	hbTS       Timestamp
	maxSeq     uint64 // highest seq known to exist (delivered or announced)
}

func (o *originState) delivered(seq uint64) bool {
	if seq <= o.contiguous {
		return true
	}
	_, ok := o.beyond[seq]
	return ok
}

// mark records op seq (stamped ts) as delivered.
func (o *originState) mark(seq uint64, ts Timestamp) {
	o.maxSeq = max(o.maxSeq, seq)
	if seq != o.contiguous+1 {
		if o.beyond == nil {
			o.beyond = map[uint64]Timestamp{}
		}
		o.beyond[seq] = ts
		return
	}
	o.contiguous = seq
	o.raise(ts)
	for len(o.beyond) > 0 {
		next, ok := o.beyond[o.contiguous+1]
		if !ok {
			break
		}
		delete(o.beyond, o.contiguous+1)
		o.contiguous++
		o.raise(next)
	}
	if o.hbSeq != 0 && o.hbSeq <= o.contiguous {
		o.raise(o.hbTS)
		o.hbSeq, o.hbTS = 0, Timestamp{}
	}
}

// heartbeat records the origin's promise: every op up to seq was sent and
// later ops are after ts.
func (o *originState) heartbeat(seq uint64, ts Timestamp) {
	o.maxSeq = max(o.maxSeq, seq)
	if seq <= o.contiguous {
		o.raise(ts)
		return
	}
	if seq > o.hbSeq || (seq == o.hbSeq && o.hbTS.Less(ts)) {
		o.hbSeq, o.hbTS = seq, ts
	}
}

func (o *originState) raise(ts Timestamp) {
	if o.horizon.Less(ts) {
		o.horizon = ts
	}
}

func (o *originState) clone() originState {
	c := *o
	if o.beyond != nil {
		c.beyond = maps.Clone(o.beyond)
	}
	return c
}
