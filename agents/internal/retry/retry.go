package retry

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Policy says how often and how patiently Do retries. The zero Policy tries
// once.
type Policy struct {
	// Attempts is the total number of tries, the first included; below 1
	// means 1.
	Attempts int
	// Initial is the backoff after the first failed attempt.
	Initial time.Duration
	// Max caps every backoff (before jitter), and, without a Window, is
	// the longest wait an error may ask for with After: a longer one ends
	// the retries. 0 means no cap.
	Max time.Duration
	// Window, when above 0, bounds the retries in time: no wait is begun
	// that would end more than Window after the first attempt started
	// (whether a backoff or a wait asked for with After, which Window then
	// bounds instead of Max); the retries end there with the last error
	// and Error.Window set. Attempts still bounds the count.
	Window time.Duration
	// Now returns the current time for Window; nil means time.Now.
	Now func() time.Time
	// Multiplier grows the backoff after each failed attempt; 0 means 2.
	Multiplier float64
	// Jitter is the random fraction of a backoff, from 0 (none) to 1: a
	// backoff d becomes a wait drawn uniformly from [d - Jitter*d, d].
	Jitter float64
	// Retriable reports whether an attempt's error is worth another
	// attempt; nil means Temporary.
	Retriable func(error) bool
	// OnRetry, when set, is called before each wait with the failed
	// attempt (1-based), the wait and the attempt's error (to log it).
	OnRetry func(attempt int, wait time.Duration, err error)
	// Rand returns a uniform number in [0, n) for n > 0; nil means
	// math/rand/v2.Int64N. Tests inject it to fix the jitter.
	Rand func(n int64) int64
	// Sleep waits d or until ctx ends (then returning ctx's error); nil
	// means the package's Sleep. Tests inject it to record the waits.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Backoff returns the wait after failed attempt n (1-based): Initial times
// Multiplier^(n-1), capped at Max, then jittered.
func (p Policy) Backoff(n int) time.Duration {
	m := p.Multiplier
	if m == 0 {
		m = 2
	}
	f := float64(p.Initial) * math.Pow(m, float64(max(n, 1)-1))
	d := time.Duration(math.MaxInt64)
	if f < float64(math.MaxInt64) {
		d = time.Duration(f)
	}
	if p.Max > 0 && d > p.Max {
		d = p.Max
	}
	span := time.Duration(float64(d) * min(max(p.Jitter, 0), 1))
	if span <= 0 {
		return d
	}
	rnd := p.Rand
	if rnd == nil {
		rnd = rand.Int64N
	}
	return d - span + time.Duration(rnd(int64(span)+1))
}

// Do runs fn, the attempt numbered from 1, until it returns nil, its error
// is not retriable (Policy.Retriable), Policy.Attempts have run, the error
// asks (with After) for a wait longer than Policy.Max, or ctx ends; between
// attempts it waits Policy.Backoff, or what the error asked for. Do does not
// bound an attempt's duration: fn derives its own deadline from ctx when it
// wants one.
//
// It returns nil on success, else an *Error with the number of attempts,
// the last attempt's error and, when ctx ended before the next attempt,
// ctx's error.
func Do(ctx context.Context, p Policy, fn func(ctx context.Context, attempt int) error) error {
	retriable, sleep := p.Retriable, p.Sleep
	if retriable == nil {
		retriable = Temporary
	}
	if sleep == nil {
		sleep = Sleep
	}
	now := p.Now
	if now == nil {
		now = time.Now
	}
	start := now()
	for attempt := 1; ; attempt++ {
		err := fn(ctx, attempt)
		if err == nil {
			return nil
		}
		if attempt >= p.Attempts || !retriable(err) {
			return &Error{Attempts: attempt, Err: err}
		}
		var wait time.Duration
		var ae *AfterError
		if errors.As(err, &ae) {
			if wait = ae.Wait; p.Window == 0 && p.Max > 0 && wait > p.Max {
				return &Error{Attempts: attempt, Err: err}
			}
		} else {
			wait = p.Backoff(attempt)
		}
		if p.Window > 0 && now().Sub(start)+wait > p.Window {
			return &Error{Attempts: attempt, Err: err, Window: p.Window}
		}
		if cerr := ctx.Err(); cerr != nil {
			return &Error{Attempts: attempt, Err: err, Context: cerr}
		}
		if p.OnRetry != nil {
			p.OnRetry(attempt, wait, err)
		}
		if serr := sleep(ctx, wait); serr != nil {
			return &Error{Attempts: attempt, Err: err, Context: serr}
		}
	}
}

// Error is the failure Do returns.
type Error struct {
	// Attempts is how many times fn ran (at least 1).
	Attempts int
	// Err is the last attempt's error.
	Err error
	// Context is ctx's error when the context ended before the next
	// attempt could run; nil otherwise.
	Context error
	// Window is Policy.Window when the retries ended because the next wait
	// would have gone past it; 0 otherwise.
	Window time.Duration
}

func (e *Error) Error() string {
	switch {
	case e.Context != nil:
		return fmt.Sprintf("%v after %s; last error: %v", e.Context, plural(e.Attempts), e.Err)
	case e.Window > 0:
		return fmt.Sprintf("%v (after %s; the retry window of %s is spent)", e.Err, plural(e.Attempts), e.Window)
	case e.Attempts > 1:
		return fmt.Sprintf("%v (after %s)", e.Err, plural(e.Attempts))
	}
	return e.Err.Error()
}

// Unwrap returns the context's error (when set) and the last attempt's.
func (e *Error) Unwrap() []error {
	if e.Context != nil {
		return []error{e.Context, e.Err}
	}
	return []error{e.Err}
}

func plural(n int) string {
	if n == 1 {
		return "1 attempt"
	}
	return fmt.Sprintf("%d attempts", n)
}

// AfterError is an attempt's error that says how long to wait before the
// next attempt (a rate limit's reset, a Retry-After header), instead of
// the policy's backoff. It is Temporary.
type AfterError struct {
	Err error
	// Wait is the wait asked for; 0 or less retries at once.
	Wait time.Duration
}

// After returns err marked as retriable after wait d (see AfterError).
func After(err error, d time.Duration) error { return &AfterError{Err: err, Wait: d} }

func (e *AfterError) Error() string { return e.Err.Error() }

// Unwrap returns the error marked.
func (e *AfterError) Unwrap() error { return e.Err }

// Temporary reports true: the error asks to be retried.
func (e *AfterError) Temporary() bool { return true }

// Temporary is the default Policy.Retriable: whether err, or an error it
// wraps, has a Temporary() bool method that reports true.
func Temporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// Sleep waits d, or until ctx ends and then returns ctx's error. A context
// already ended returns at once, whatever d; d <= 0 does not wait.
func Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
