package collections

// Deliberate bugs for TestOracleCatchesMutants (see mutant.go).
const (
	MutantTiesByArrival  = mutationTiesByArrival
	MutantReplaySkipsOne = mutationReplaySkipsOne

	MutantStreamInsertUnhooked = mutationStreamInsertUnhooked
	MutantStreamFoldUnhooked   = mutationStreamFoldUnhooked
	MutantDeltaNoAbsent        = mutationDeltaNoAbsent
)

// Mutation names a deliberate bug.
type Mutation = mutationKind

// SetMutation switches a deliberate bug on until restore is called. Not
// for parallel tests.
func SetMutation(m mutationKind) (restore func()) {
	prev := mutation
	mutation = m
	return func() { mutation = prev }
}
