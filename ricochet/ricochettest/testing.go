package ricochettest

import (
	"os"
	"strconv"
	"testing"

	"github.com/tempestrt/tempest/ricochet"
)

// Seed returns seed, or the value of the RICOCHET_SEED environment variable
// when it is set (to replay a failure), and makes every failure of t print
// the seed used.
func Seed(t testing.TB, seed uint64) uint64 {
	t.Helper()
	if s := os.Getenv("RICOCHET_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("RICOCHET_SEED: %v", err)
		}
		seed = v
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("seed = %d (replay with RICOCHET_SEED=%d)", seed, seed)
		}
	})
	return seed
}

// NodeIDs returns the node IDs 1..n.
func NodeIDs(n int) []ricochet.NodeID {
	ids := make([]ricochet.NodeID, n)
	for i := range ids {
		ids[i] = ricochet.NodeID(i + 1)
	}
	return ids
}
