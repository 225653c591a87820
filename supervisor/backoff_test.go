package supervisor

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

func seeded(t *testing.T) *rand.Rand {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("seed %d", seed)
		}
	})
	return rand.New(rand.NewPCG(seed, seed))
}

func TestDelayIsExponentialAndCapped(t *testing.T) {
	cfg := BackoffConfig{Initial: 10 * time.Millisecond, Max: time.Second, Multiplier: 3, MaxRestarts: 1, Window: time.Second, ResetAfter: time.Second}
	want := []time.Duration{10, 30, 90, 270, 810, 1000, 1000}
	for n, w := range want {
		if got := Delay(cfg, n, nil); got != w*time.Millisecond {
			t.Errorf("Delay(n=%d) = %v, want %v", n, got, w*time.Millisecond)
		}
	}
	// Huge exponents must not overflow into negative or tiny delays.
	for _, n := range []int{64, 1000, 1 << 30} {
		if got := Delay(cfg, n, nil); got != cfg.Max {
			t.Errorf("Delay(n=%d) = %v, want cap %v", n, got, cfg.Max)
		}
	}
	if got := Delay(cfg, -5, nil); got != cfg.Initial {
		t.Errorf("Delay(n=-5) = %v, want Initial", got)
	}
	cfg.Multiplier = 1
	if got := Delay(cfg, 7, nil); got != cfg.Initial {
		t.Errorf("Multiplier 1: Delay = %v, want constant %v", got, cfg.Initial)
	}
}

func TestDelayJitterStaysWithinBounds(t *testing.T) {
	rng := seeded(t)
	cfg := BackoffConfig{Initial: 100 * time.Millisecond, Max: 2 * time.Second, Multiplier: 2, Jitter: 0.3, MaxRestarts: 1, Window: time.Second, ResetAfter: time.Second}
	for n := 0; n < 8; n++ {
		capped := Delay(BackoffConfig{Initial: cfg.Initial, Max: cfg.Max, Multiplier: cfg.Multiplier}, n, nil)
		lo := time.Duration(float64(capped) * (1 - cfg.Jitter))
		distinct := map[time.Duration]bool{}
		var minD, maxD time.Duration = capped, 0
		for i := 0; i < 2000; i++ {
			d := Delay(cfg, n, rng)
			if d < lo || d > capped || d > cfg.Max {
				t.Fatalf("n=%d: delay %v outside [%v, %v]", n, d, lo, capped)
			}
			distinct[d] = true
			minD, maxD = min(minD, d), max(maxD, d)
		}
		// The jitter must actually spread the delays over most of the band.
		if len(distinct) < 100 || maxD-minD < (capped-lo)*8/10 {
			t.Fatalf("n=%d: jitter does not spread: %d distinct values in [%v, %v] of band [%v, %v]", n, len(distinct), minD, maxD, lo, capped)
		}
	}
}

func TestBackoffGrowsAndResetsAfterQuietPeriod(t *testing.T) {
	cfg := BackoffConfig{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond, Multiplier: 2, MaxRestarts: 100, Window: time.Hour, ResetAfter: time.Second}
	b := NewBackoff(cfg)
	now := time.Unix(1000, 0)
	var got []time.Duration
	for i := 0; i < 6; i++ {
		v := b.Failure(now, nil)
		if !v.Restart || v.Attempt != i+1 || v.Failures != i+1 {
			t.Fatalf("failure %d: %+v", i, v)
		}
		got = append(got, v.Delay)
		// the restarted child fails again right after it came back
		now = now.Add(v.Delay + time.Millisecond)
	}
	want := []time.Duration{10, 20, 40, 80, 100, 100}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("delays %v, want %v ms", got, want)
		}
	}
	// Ran just under ResetAfter since its restart: the backoff keeps growing.
	restartedAt := now.Add(-time.Millisecond)
	now = restartedAt.Add(cfg.ResetAfter - time.Millisecond)
	if v := b.Failure(now, nil); v.Attempt != 7 || v.Delay != cfg.Max {
		t.Fatalf("before ResetAfter: %+v, want attempt 7 at cap", v)
	}
	// Ran ResetAfter since its last restart: back to Initial.
	now = now.Add(cfg.Max + cfg.ResetAfter)
	if v := b.Failure(now, nil); v.Attempt != 1 || v.Delay != cfg.Initial {
		t.Fatalf("after ResetAfter: %+v, want attempt 1 with Initial", v)
	}
}

func TestBackoffBudgetSlidingWindow(t *testing.T) {
	cfg := BackoffConfig{Initial: time.Millisecond, Max: time.Millisecond, Multiplier: 1, MaxRestarts: 3, Window: time.Second, ResetAfter: time.Hour}
	b := NewBackoff(cfg)
	t0 := time.Unix(1000, 0)
	for i := 0; i < 3; i++ {
		if v := b.Failure(t0.Add(time.Duration(i)*100*time.Millisecond), nil); !v.Restart {
			t.Fatalf("failure %d within budget gave up: %+v", i+1, v)
		}
	}
	// 4th failure inside the window: more than MaxRestarts, give up.
	if v := b.Failure(t0.Add(300*time.Millisecond), nil); v.Restart || v.Failures != 4 {
		t.Fatalf("4th failure in window: %+v, want give up with 4 failures", v)
	}
	// Giving up resets: the next failure starts a fresh budget.
	if v := b.Failure(t0.Add(400*time.Millisecond), nil); !v.Restart || v.Failures != 1 || v.Attempt != 1 {
		t.Fatalf("after give-up: %+v, want fresh state", v)
	}

	// Failures that slide out of the window stop counting.
	b = NewBackoff(cfg)
	for i := 0; i < 10; i++ {
		v := b.Failure(t0.Add(time.Duration(i)*400*time.Millisecond), nil)
		if !v.Restart || v.Failures > 3 {
			t.Fatalf("failure %d every 400ms with 1s window: %+v", i, v)
		}
	}

	// MaxRestarts 0: never restart.
	cfg.MaxRestarts = 0
	if v := NewBackoff(cfg).Failure(t0, nil); v.Restart {
		t.Fatalf("MaxRestarts 0 restarted: %+v", v)
	}
}

func TestBackoffIdle(t *testing.T) {
	cfg := BackoffConfig{Initial: 10 * time.Millisecond, Max: 10 * time.Millisecond, Multiplier: 1, MaxRestarts: 5, Window: time.Second, ResetAfter: 2 * time.Second}
	b := NewBackoff(cfg)
	t0 := time.Unix(1000, 0)
	if !b.Idle(t0) {
		t.Fatal("new Backoff not idle")
	}
	b.Failure(t0, nil)
	if b.Idle(t0.Add(time.Second + 10*time.Millisecond)) {
		t.Fatal("idle before ResetAfter elapsed since the restart")
	}
	if !b.Idle(t0.Add(10*time.Millisecond + 2*time.Second)) {
		t.Fatal("not idle after Window and ResetAfter")
	}
}

func TestBackoffConfigValidate(t *testing.T) {
	for name, cfg := range map[string]BackoffConfig{"default": DefaultBackoffConfig(), "test": TestBackoffConfig()} {
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s preset invalid: %v", name, err)
		}
	}
	bad := map[string]func(*BackoffConfig){
		"zero initial":       func(c *BackoffConfig) { c.Initial = 0 },
		"max below initial":  func(c *BackoffConfig) { c.Max = c.Initial / 2 },
		"multiplier below 1": func(c *BackoffConfig) { c.Multiplier = 0.5 },
		"jitter above 1":     func(c *BackoffConfig) { c.Jitter = 1.5 },
		"negative jitter":    func(c *BackoffConfig) { c.Jitter = -0.1 },
		"negative budget":    func(c *BackoffConfig) { c.MaxRestarts = -1 },
		"zero window":        func(c *BackoffConfig) { c.Window = 0 },
		"zero reset":         func(c *BackoffConfig) { c.ResetAfter = 0 },
	}
	for name, mutate := range bad {
		cfg := DefaultBackoffConfig()
		mutate(&cfg)
		if err := cfg.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: Validate() = %v, want ErrInvalidConfig", name, err)
		}
	}
}
