package actors

import (
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Timers that send messages to actors. protoactor's scheduler package reads
// its cancel state without synchronisation (a data race under -race) and
// sends through an actor context from a timer goroutine, so the runtime uses
// these instead: they send through the system's root context, which is safe
// from any goroutine.

// every sends msg to pid every interval until stop is called; stop waits
// for the timer goroutine to exit, so no goroutine outlives the actor.
func every(system *actor.ActorSystem, pid *actor.PID, interval time.Duration, msg any) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				system.Root.Send(pid, msg)
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
		})
	}
}

// after sends msg to pid once, after d, unless stop is called first.
func after(system *actor.ActorSystem, pid *actor.PID, d time.Duration, msg any) (stop func() bool) {
	return time.AfterFunc(d, func() { system.Root.Send(pid, msg) }).Stop
}
