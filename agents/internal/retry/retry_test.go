package retry_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/branchml/branchml/agents/internal/retry"
)

type tempErr struct{ temp bool }

func (e tempErr) Error() string   { return "boom" }
func (e tempErr) Temporary() bool { return e.temp }

// recorder is an injected Sleep that records the waits.
type recorder struct{ waits []time.Duration }

func (r *recorder) sleep(ctx context.Context, d time.Duration) error {
	r.waits = append(r.waits, d)
	return ctx.Err()
}

func TestDoRetriesTemporaryUntilSuccess(t *testing.T) {
	var rec recorder
	var logged []int
	p := retry.Policy{Attempts: 5, Initial: 100 * time.Millisecond, Sleep: rec.sleep,
		OnRetry: func(attempt int, wait time.Duration, err error) { logged = append(logged, attempt) }}
	var seen []int
	err := retry.Do(context.Background(), p, func(_ context.Context, attempt int) error {
		seen = append(seen, attempt)
		if attempt < 3 {
			return tempErr{true}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(seen, []int{1, 2, 3}) || !reflect.DeepEqual(logged, []int{1, 2}) {
		t.Fatalf("attempts %v, logged %v", seen, logged)
	}
	if want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}; !reflect.DeepEqual(rec.waits, want) {
		t.Fatalf("waits %v, want %v", rec.waits, want)
	}
}

func TestDoGivesUpAfterAttempts(t *testing.T) {
	var rec recorder
	p := retry.Policy{Attempts: 4, Initial: time.Second, Max: 3 * time.Second, Multiplier: 3, Sleep: rec.sleep}
	n := 0
	err := retry.Do(context.Background(), p, func(context.Context, int) error { n++; return tempErr{true} })
	var re *retry.Error
	if !errors.As(err, &re) || re.Attempts != 4 || re.Context != nil || n != 4 {
		t.Fatalf("err %#v after %d calls", err, n)
	}
	if !errors.Is(err, tempErr{true}) || err.Error() != "boom (after 4 attempts)" {
		t.Fatalf("err %q does not wrap the last error", err)
	}
	if want := []time.Duration{time.Second, 3 * time.Second, 3 * time.Second}; !reflect.DeepEqual(rec.waits, want) {
		t.Fatalf("waits %v, want %v", rec.waits, want)
	}
}

func TestDoStopsOnNonRetriable(t *testing.T) {
	var rec recorder
	perm := errors.New("bad request")
	for _, c := range []struct {
		name string
		err  error
		p    retry.Policy
	}{
		{"plain error", perm, retry.Policy{Attempts: 5, Sleep: rec.sleep}},
		{"Temporary false", tempErr{false}, retry.Policy{Attempts: 5, Sleep: rec.sleep}},
		{"classifier", tempErr{true}, retry.Policy{Attempts: 5, Sleep: rec.sleep, Retriable: func(error) bool { return false }}},
	} {
		n := 0
		err := retry.Do(context.Background(), c.p, func(context.Context, int) error { n++; return c.err })
		var re *retry.Error
		if n != 1 || !errors.As(err, &re) || re.Attempts != 1 || re.Err != c.err || err.Error() != c.err.Error() {
			t.Errorf("%s: %d calls, err %#v", c.name, n, err)
		}
	}
	if len(rec.waits) != 0 {
		t.Fatalf("waited %v", rec.waits)
	}
}

func TestDoCustomClassifierRetriesPlainErrors(t *testing.T) {
	var rec recorder
	moved := errors.New("branch moved")
	p := retry.Policy{Attempts: 3, Initial: time.Millisecond, Sleep: rec.sleep,
		Retriable: func(err error) bool { return errors.Is(err, moved) }}
	n := 0
	err := retry.Do(context.Background(), p, func(context.Context, int) error { n++; return moved })
	if n != 3 || !errors.Is(err, moved) || len(rec.waits) != 2 {
		t.Fatalf("%d calls, err %v, waits %v", n, err, rec.waits)
	}
}

func TestDoStopsWhenContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	var logged int
	var rec recorder
	p := retry.Policy{Attempts: 5, Initial: time.Hour, Sleep: rec.sleep, OnRetry: func(int, time.Duration, error) { logged++ }}
	err := retry.Do(ctx, p, func(context.Context, int) error {
		n++
		if n == 2 {
			cancel() // the context ends during the second attempt
		}
		return tempErr{true}
	})
	var re *retry.Error
	if n != 2 || logged != 1 || len(rec.waits) != 1 || !errors.As(err, &re) || re.Attempts != 2 || re.Context != context.Canceled {
		t.Fatalf("%d calls, %d logged, err %#v", n, logged, err)
	}
	if !errors.Is(err, context.Canceled) || !errors.Is(err, tempErr{true}) ||
		err.Error() != "context canceled after 2 attempts; last error: boom" {
		t.Fatalf("err %q", err)
	}
}

func TestDoStopsWhenContextEndsDuringTheWait(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	n := 0
	start := time.Now()
	err := retry.Do(ctx, retry.Policy{Attempts: 5, Initial: time.Hour}, func(context.Context, int) error { n++; return tempErr{true} })
	var re *retry.Error
	if n != 1 || !errors.As(err, &re) || re.Attempts != 1 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("%d calls, err %v", n, err)
	}
	if err.Error() != "context deadline exceeded after 1 attempt; last error: boom" {
		t.Fatalf("err %q", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("did not stop at the deadline")
	}
}

func TestAfterOverridesBackoffAndMaxStops(t *testing.T) {
	var rec recorder
	p := retry.Policy{Attempts: 5, Initial: time.Millisecond, Max: time.Minute, Sleep: rec.sleep}
	waits := []time.Duration{7 * time.Second, 0, 2 * time.Minute}
	n := 0
	err := retry.Do(context.Background(), p, func(context.Context, int) error {
		n++
		return retry.After(tempErr{false}, waits[n-1])
	})
	var re *retry.Error
	if n != 3 || !errors.As(err, &re) || re.Attempts != 3 || !errors.Is(err, tempErr{false}) {
		t.Fatalf("%d calls, err %#v", n, err)
	}
	if want := []time.Duration{7 * time.Second, 0}; !reflect.DeepEqual(rec.waits, want) {
		t.Fatalf("waits %v, want %v", rec.waits, want)
	}
}

func TestBackoff(t *testing.T) {
	for _, c := range []struct {
		name string
		p    retry.Policy
		want []time.Duration
	}{
		{"doubling", retry.Policy{Initial: 500 * time.Millisecond}, []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second}},
		{"capped", retry.Policy{Initial: time.Second, Max: 3 * time.Second}, []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 3 * time.Second}},
		{"multiplier", retry.Policy{Initial: time.Second, Multiplier: 1.5}, []time.Duration{time.Second, 1500 * time.Millisecond, 2250 * time.Millisecond}},
		// Jitter 0.5 with Rand at its lowest: half the backoff.
		{"jitter low", retry.Policy{Initial: 10 * time.Millisecond, Jitter: 0.5, Rand: func(int64) int64 { return 0 }},
			[]time.Duration{5 * time.Millisecond, 10 * time.Millisecond}},
		// ... and at its highest: the whole backoff.
		{"jitter high", retry.Policy{Initial: 10 * time.Millisecond, Jitter: 0.5, Rand: func(n int64) int64 { return n - 1 }},
			[]time.Duration{10 * time.Millisecond, 20 * time.Millisecond}},
		{"overflow is capped", retry.Policy{Initial: time.Hour, Max: 2 * time.Hour}, []time.Duration{time.Hour, 2 * time.Hour, 2 * time.Hour}},
	} {
		var got []time.Duration
		for n := 1; n <= len(c.want); n++ {
			got = append(got, c.p.Backoff(n))
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	if d := (retry.Policy{Initial: time.Second, Max: time.Minute}).Backoff(200); d != time.Minute {
		t.Errorf("attempt 200: %v, want the cap", d)
	}
}

func TestJitterStaysInRange(t *testing.T) {
	p := retry.Policy{Initial: 10 * time.Millisecond, Jitter: 0.5}
	for range 1000 {
		if d := p.Backoff(1); d < 5*time.Millisecond || d > 10*time.Millisecond {
			t.Fatalf("jittered wait %v outside [5ms, 10ms]", d)
		}
	}
}

func TestSleep(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	if err := retry.Sleep(ctx, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := retry.Sleep(ctx, -time.Second); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := retry.Sleep(ctx, 0); err != context.Canceled {
		t.Fatalf("ended context: %v", err)
	}
	start := time.Now()
	if err := retry.Sleep(ctx, time.Hour); err != context.Canceled || time.Since(start) > time.Second {
		t.Fatalf("ended context: %v", err)
	}
}

func TestZeroPolicyTriesOnce(t *testing.T) {
	n := 0
	err := retry.Do(context.Background(), retry.Policy{}, func(context.Context, int) error { n++; return tempErr{true} })
	if n != 1 || err == nil || err.Error() != "boom" {
		t.Fatalf("%d calls, err %v", n, err)
	}
}

// TestWindow: the retries stop before a wait that would end past the
// window; an After wait longer than Max is honoured inside the window.
func TestWindow(t *testing.T) {
	var rec recorder
	clock := time.Unix(1000, 0)
	sleep := func(ctx context.Context, d time.Duration) error { clock = clock.Add(d); return rec.sleep(ctx, d) }
	p := retry.Policy{Attempts: 100, Initial: time.Second, Max: 4 * time.Second, Window: 10 * time.Second,
		Sleep: sleep, Now: func() time.Time { return clock }}
	n := 0
	err := retry.Do(context.Background(), p, func(context.Context, int) error {
		n++
		clock = clock.Add(500 * time.Millisecond) // each attempt takes 0.5 s
		return tempErr{true}
	})
	var re *retry.Error
	// 0.5 +1 +0.5 +2 +0.5 +4 +0.5 = 9 s; the next wait (4 s) would end at 13.5 s.
	if !errors.As(err, &re) || n != 4 || re.Window != 10*time.Second || !reflect.DeepEqual(rec.waits, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}) {
		t.Fatalf("err %v, %d attempts, waits %v", err, n, rec.waits)
	}
	if err.Error() != "boom (after 4 attempts; the retry window of 10s is spent)" {
		t.Fatalf("message %q", err)
	}
	rec.waits, n = nil, 0
	err = retry.Do(context.Background(), p, func(context.Context, int) error {
		n++
		if n == 1 {
			return retry.After(tempErr{true}, 7*time.Second) // above Max, inside the window
		}
		return nil
	})
	if err != nil || !reflect.DeepEqual(rec.waits, []time.Duration{7 * time.Second}) {
		t.Fatalf("After inside the window: %v, waits %v", err, rec.waits)
	}
	rec.waits = nil
	err = retry.Do(context.Background(), p, func(context.Context, int) error { return retry.After(tempErr{true}, 11*time.Second) })
	if !errors.As(err, &re) || re.Attempts != 1 || re.Window == 0 || len(rec.waits) != 0 {
		t.Fatalf("After past the window: %v, waits %v", err, rec.waits)
	}
}
