package persistence

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(killChildEnv); mode != "" {
		// Helper process of TestKill9: never returns.
		runKillChild(mode, os.Getenv(killDirEnv))
	}
	goleak.VerifyTestMain(m)
}

// memOptions returns options on a fresh in-memory FS.
func memOptions() Options {
	o := DefaultOptions("db")
	o.FS = vfs.NewMem()
	return o
}

func openT(t testing.TB, o Options) *DB {
	t.Helper()
	db, err := Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func rec(origin string, seq uint64) Record {
	return Record{Origin: origin, Seq: seq, Data: payload(origin, seq)}
}

func payload(origin string, seq uint64) []byte {
	return []byte(fmt.Sprintf("op %s#%d", origin, seq))
}

func mustAppend(t testing.TB, c *CloneLog, recs ...Record) uint64 {
	t.Helper()
	pos, err := c.Append(context.Background(), recs...)
	if err != nil {
		t.Fatalf("Append(%s): %v", c.ID(), err)
	}
	return pos
}

type posRec struct {
	pos uint64
	r   Record
}

func replayAll(t testing.TB, c *CloneLog, after uint64) []posRec {
	t.Helper()
	var out []posRec
	if err := c.Replay(after, func(pos uint64, r Record) error {
		out = append(out, posRec{pos, r})
		return nil
	}); err != nil {
		t.Fatalf("Replay(%s, %d): %v", c.ID(), after, err)
	}
	return out
}

func rangeAll(t testing.TB, c *CloneLog, origin string, from, to uint64) ([]Record, error) {
	t.Helper()
	var out []Record
	err := c.Range(origin, from, to, func(r Record) error {
		out = append(out, r)
		return nil
	})
	return out, err
}

// checkContiguous asserts that origin's records 1..upTo are all in c with
// their payloads.
func checkContiguous(t testing.TB, c *CloneLog, origin string, upTo uint64) {
	t.Helper()
	if upTo == 0 {
		return
	}
	got, err := rangeAll(t, c, origin, 1, upTo)
	if err != nil {
		t.Fatalf("Range(%s, %s): %v", c.ID(), origin, err)
	}
	if uint64(len(got)) != upTo {
		t.Fatalf("clone %s origin %s: %d records stored of %d acknowledged", c.ID(), origin, len(got), upTo)
	}
	for i, r := range got {
		if r.Seq != uint64(i+1) || string(r.Data) != string(payload(origin, r.Seq)) {
			t.Fatalf("clone %s origin %s: record %d is %+v", c.ID(), origin, i, r)
		}
	}
}
