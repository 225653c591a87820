package collections

import "math"

// Deliberate bugs for TestOracleCatchesMutants (see mutant.go).
const (
	MutantTiesByArrival  = mutationTiesByArrival
	MutantReplaySkipsOne = mutationReplaySkipsOne

	MutantStreamInsertUnhooked = mutationStreamInsertUnhooked
	MutantStreamFoldUnhooked   = mutationStreamFoldUnhooked
	MutantDeltaNoAbsent        = mutationDeltaNoAbsent
	MutantColdMembersUnread    = mutationColdMembersUnread
	MutantPromoteDropsMember   = mutationPromoteDropsMembership
)

// NearCounterLimits puts a store's snapshot epoch and change window
// counters a few steps short of their 32-bit limit (renumber's test).
func NearCounterLimits(s *Store) {
	for _, it := range s.changed {
		it.window = math.MaxUint32 - 3
	}
	s.streamEpoch, s.window = math.MaxUint32-2, math.MaxUint32-3
}

// Mutation names a deliberate bug.
type Mutation = mutationKind

// SetMutation switches a deliberate bug on until restore is called. Not
// for parallel tests.
func SetMutation(m mutationKind) (restore func()) {
	prev := mutation
	mutation = m
	return func() { mutation = prev }
}
