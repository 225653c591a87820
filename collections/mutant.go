package collections

import (
	"slices"

	"github.com/tempestrt/tempest/proto/tempestpb"
)

// mutation selects a deliberate bug, for the mutation tests of the
// reference-model property (TestOracleCatchesMutants in oracle_test.go):
// they switch a bug on and require the property to fail, which shows the
// property can fail. It is mutationNone in every build; only tests change
// it (through export_test.go), and they must not run in parallel with
// other tests of the package while it is set.
//
// It is read once per call and outside any loop in: item.position on its
// slow path (an op that does not go last), Store.replay, and the
// snapshot stream hooks of Store.insert and Store.foldFirst (whose mutants
// TestSnapshotStreamCatchesMutants uses), and a delta stream's absent
// entries (SnapshotStream.itemState), its cold members (BeginSnapshot)
// and a promoted cold member (collection.promote), whose mutants
// TestDeltaChainCatchesMutants uses.
// Nothing else depends on it.
var mutation mutationKind

type mutationKind uint8

const (
	mutationNone mutationKind = iota
	// mutationTiesByArrival orders ops with equal timestamps by arrival
	// instead of by origin: a late op goes after every op stamped alike.
	mutationTiesByArrival
	// mutationReplaySkipsOne leaves the last op of a replay of two or more
	// ops (a late insert or a retraction) unapplied.
	mutationReplaySkipsOne
	// mutationStreamInsertUnhooked: inserting an op into an item's history
	// does not first capture the item for the open snapshot stream.
	mutationStreamInsertUnhooked
	// mutationStreamFoldUnhooked: folding an item's oldest op does not
	// first capture the item for the open snapshot stream.
	mutationStreamFoldUnhooked
	// mutationDeltaNoAbsent: a delta snapshot leaves out the items that
	// went away since the previous capture instead of marking them absent.
	mutationDeltaNoAbsent
	// mutationColdMembersUnread: a delta snapshot leaves out the members
	// of its window that went cold (Store.coldChanged).
	mutationColdMembersUnread
	// mutationPromoteDropsMembership: promoting a cold member of the
	// window a delta stream is writing does not make the item a member,
	// so a change before the stream reads it queues no pre-image.
	mutationPromoteDropsMembership
)

// positionByArrival is item.position under mutationTiesByArrival: after
// every op whose timestamp is not later than k's.
func (it *item) positionByArrival(k opKey) int {
	i, _ := slices.BinarySearchFunc(it.pending(), k, func(op *tempestpb.Op, k opKey) int {
		if TimestampOf(op).Compare(k.ts) <= 0 {
			return -1
		}
		return 1
	})
	return i
}

// replaySkippingLast is Store.replay under mutationReplaySkipsOne.
func (s *Store) replaySkippingLast(it *item, i int) {
	h := it.h
	last := len(h.ops) - 1
	for j := i; j < last; j++ {
		h.undo[j] = s.apply(it.c, &it.cur, h.ops[j])
	}
	h.undo[last] = undoRec{}
	if it.c.kind != kindList {
		h.undo[last].prev = it.cur // reverting the skipped op changes nothing
	}
}
