package supervisor

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestRegistryCountsAndKeepsLastEvents(t *testing.T) {
	r := NewRegistry(3)
	t0 := time.Unix(100, 0)
	add := func(i int, child string, d Decision) {
		r.Record(Event{Time: t0.Add(time.Duration(i) * time.Second), Supervisor: "p", Child: child, Reason: fmt.Sprint("r", i), Decision: d, Backoff: time.Duration(i)})
	}
	add(1, "p/a", Restart)
	add(2, "p/b", Restart)
	add(3, "p/a", Restart)
	add(4, "p/a", Escalate)
	add(5, "p/b", Resume)
	if r.Restarts("p/a") != 2 || r.Restarts("p/b") != 1 || r.Restarts("p/none") != 0 {
		t.Fatalf("restarts a=%d b=%d", r.Restarts("p/a"), r.Restarts("p/b"))
	}
	evs := r.Events()
	if len(evs) != 3 || evs[0].Reason != "r3" || evs[2].Reason != "r5" {
		t.Fatalf("events %+v, want r3..r5 oldest first", evs)
	}
	snap := r.Snapshot()
	if len(snap) != 2 || snap[0].Child != "p/a" || snap[1].Child != "p/b" {
		t.Fatalf("snapshot %+v", snap)
	}
	if a := snap[0]; a.Failures != 3 || a.Restarts != 2 || a.LastDecision != Escalate || a.LastReason != "r4" || !a.LastFailure.Equal(t0.Add(4*time.Second)) {
		t.Fatalf("status of a %+v", a)
	}
	r.Forget("p/a")
	if _, ok := r.Child("p/a"); ok || r.Restarts("p/a") != 0 {
		t.Fatal("Forget kept the child")
	}
}

func TestRegistryConcurrentUse(t *testing.T) {
	r := NewRegistry(10)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				r.Record(Event{Child: fmt.Sprint("c", g), Decision: Restart})
				_ = r.Snapshot()
				_ = r.Events()
			}
		}()
	}
	wg.Wait()
	for g := 0; g < 8; g++ {
		if n := r.Restarts(fmt.Sprint("c", g)); n != 500 {
			t.Fatalf("c%d: %d restarts, want 500", g, n)
		}
	}
	if len(r.Events()) != 10 {
		t.Fatalf("%d events kept, want 10", len(r.Events()))
	}
}

func TestZapSinkAndMultiSink(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	var got []Event
	sink := MultiSink(nil, NewZapSink(zap.New(core)), SinkFunc(func(e Event) { got = append(got, e) }))
	sink.Record(Event{Supervisor: "p", Child: "p/c", Reason: "disk on fire", Restarts: 3, Attempt: 2, Backoff: 40 * time.Millisecond, Decision: Restart, Strategy: "one-for-one"})
	sink.Record(Event{Supervisor: "p", Child: "p/c", Reason: "again", Restarts: 11, Decision: Escalate})
	if len(got) != 2 {
		t.Fatalf("func sink got %d events", len(got))
	}
	entries := logs.AllUntimed()
	if len(entries) != 2 {
		t.Fatalf("%d log entries", len(entries))
	}
	first := entries[0]
	if first.Level != zapcore.WarnLevel {
		t.Fatalf("restart logged at %v", first.Level)
	}
	f := first.ContextMap()
	if f["child"] != "p/c" || f["supervisor"] != "p" || f["reason"] != "disk on fire" || f["decision"] != "restart" ||
		f["restarts_in_window"] != int64(3) || f["attempt"] != int64(2) || f["backoff"] != 40*time.Millisecond {
		t.Fatalf("fields %v", f)
	}
	if entries[1].Level != zapcore.ErrorLevel || entries[1].ContextMap()["decision"] != "escalate" {
		t.Fatalf("escalation logged as %v %v", entries[1].Level, entries[1].ContextMap())
	}
	NewZapSink(nil).Record(Event{}) // nil logger: no panic
}

func TestDecisionText(t *testing.T) {
	b, err := json.Marshal(Event{Decision: Escalate, Backoff: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var back Event
	if err := json.Unmarshal(b, &back); err != nil || back.Decision != Escalate || back.Backoff != time.Second {
		t.Fatalf("round trip of %s: %+v, %v", b, back, err)
	}
	var d Decision
	if err := d.UnmarshalText([]byte("explode")); err == nil {
		t.Fatal("unknown decision accepted")
	}
	for _, d := range []Decision{Restart, Stop, Escalate, Resume} {
		if DeciderFromDirective(func(any) actor.Directive { return d.Directive() })(nil) != d {
			t.Fatalf("%v does not survive the directive round trip", d)
		}
	}
	if Decision(42).String() != "decision(42)" {
		t.Fatal(Decision(42).String())
	}
}

func TestSlogToZap(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	l := SlogToZap(zap.New(core))
	l.Info("hello", slog.Int("n", 7), slog.String("who", "me"))
	l.Debug("quiet")
	l.Error("bad", slog.Any("err", fmt.Errorf("boom")))
	entries := logs.AllUntimed()
	if len(entries) != 3 {
		t.Fatalf("%d entries", len(entries))
	}
	if e := entries[0]; e.Message != "hello" || e.Level != zapcore.InfoLevel || e.ContextMap()["n"] != int64(7) || e.ContextMap()["who"] != "me" {
		t.Fatalf("entry %+v %v", e, e.ContextMap())
	}
	if entries[1].Level != zapcore.DebugLevel || entries[2].Level != zapcore.ErrorLevel {
		t.Fatalf("levels %v %v", entries[1].Level, entries[2].Level)
	}
	SlogToZap(nil).Info("discarded") // nil logger: no panic
}

// protoactor's own logging arrives in zap, tagged with the system id.
func TestLoggerFactoryRoutesProtoactorLogging(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	system := actor.NewActorSystem(actor.WithLoggerFactory(LoggerFactory(zap.New(core))))
	defer system.Shutdown()
	// An actor failing under the default strategy makes protoactor log
	// "[ACTOR] Recovering" through the system logger.
	var once sync.Once
	started := make(chan struct{})
	pid := system.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(string); ok {
			once.Do(func() { close(started) })
			panic("protoactor should log this")
		}
	}))
	system.Root.Send(pid, "go")
	<-started
	deadline := time.Now().Add(5 * time.Second)
	for logs.FilterMessageSnippet("Recovering").Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("protoactor's log never reached zap; got %v", logs.AllUntimed())
		}
		time.Sleep(time.Millisecond)
	}
	e := logs.FilterMessageSnippet("Recovering").AllUntimed()[0]
	if e.ContextMap()["system"] != system.ID || e.ContextMap()["lib"] != "protoactor" {
		t.Fatalf("fields %v", e.ContextMap())
	}
	if err := system.Root.StopFuture(pid).Wait(); err != nil {
		t.Fatal(err)
	}
}
