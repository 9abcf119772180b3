package follow

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/branchml/branchml/agents/backends/pipelines"
)

// Defaults of Options.
var (
	DefaultInterval      = 5 * time.Second
	DefaultMaxErrors     = 10
	DefaultCancelTimeout = 30 * time.Second
	DefaultProgressEvery = time.Minute
)

// Clock tells the time and waits; RealClock is the wall clock.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

// RealClock is the wall clock.
type RealClock struct{}

// Now is time.Now.
func (RealClock) Now() time.Time { return time.Now() }

// After is time.After.
func (RealClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Options configure a Follower; zero values take the defaults.
type Options struct {
	// Interval between polls (default DefaultInterval).
	Interval time.Duration
	// Timeout is the run's deadline from the first poll (config
	// training.timeout); 0 means none. Past it the run is cancelled.
	Timeout time.Duration
	// StallTimeout is the longest time without any change of the run's or
	// its tasks' states (config training.stallTimeout); 0 means none. Past
	// it the run is cancelled.
	StallTimeout time.Duration
	// MaxErrors is how many consecutive transient GetRun errors are
	// tolerated (default DefaultMaxErrors).
	MaxErrors int
	// CancelTimeout bounds the CancelRun call, made on a fresh context so
	// that it works after an abort (default DefaultCancelTimeout).
	CancelTimeout time.Duration
	// ProgressEvery repeats the progress line without a change (default DefaultProgressEvery).
	ProgressEvery time.Duration
	Clock         Clock
	Log           logrus.FieldLogger
}

// StalledError is a run without progress for longer than the stall limit.
type StalledError struct {
	RunID string
	State string
	For   time.Duration
}

func (e *StalledError) Error() string {
	return fmt.Sprintf("run %s stalled: no state or task change for %v (state %s); cancel requested", e.RunID, e.For, e.State)
}

// DeadlineError is a run that did not end within the timeout.
type DeadlineError struct {
	RunID   string
	State   string
	Timeout time.Duration
}

func (e *DeadlineError) Error() string {
	return fmt.Sprintf("run %s did not finish within %v (state %s); cancel requested", e.RunID, e.Timeout, e.State)
}

// Follower follows one run.
type Follower struct {
	b     pipelines.Backend
	id    string
	o     Options
	start time.Time
	// lastChange is when the run's signature last changed.
	lastChange, lastLog time.Time
	sig                 string
	errs                int
	last                *pipelines.Run
	cancelErr           error
}

// New returns a follower of run id; nothing is polled yet.
func New(b pipelines.Backend, id string, o Options) *Follower {
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.MaxErrors <= 0 {
		o.MaxErrors = DefaultMaxErrors
	}
	if o.CancelTimeout <= 0 {
		o.CancelTimeout = DefaultCancelTimeout
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = DefaultProgressEvery
	}
	if o.Clock == nil {
		o.Clock = RealClock{}
	}
	if o.Log == nil {
		l := logrus.New()
		l.Out = discard{}
		o.Log = l
	}
	return &Follower{b: b, id: id, o: o}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// Last is the run as last observed (nil before a successful poll).
func (f *Follower) Last() *pipelines.Run { return f.last }

// CancelError is the error of the remote cancel call, when one was made and failed.
func (f *Follower) CancelError() error { return f.cancelErr }

// Tick polls once. It returns done with a nil error when the run reached a
// terminal state (SUCCEEDED, FAILED, CANCELED, SKIPPED; see Last), and done
// with an error when following must stop: the run is unknown
// (pipelines.ErrNotFound), a non-transient or too many transient errors,
// the deadline (*DeadlineError) or the stall limit (*StalledError) passed,
// or ctx was cancelled (the error wraps ctx.Err()). The last three cancel
// the run remotely first.
func (f *Follower) Tick(ctx context.Context) (bool, error) {
	now := f.o.Clock.Now()
	if f.start.IsZero() {
		f.start, f.lastChange, f.lastLog = now, now, now
	}
	if err := ctx.Err(); err != nil {
		return true, f.abort(err)
	}
	run, err := f.b.GetRun(ctx, f.id)
	switch {
	case err == nil:
		f.errs = 0
		f.last = run
		if sig := signature(run); sig != f.sig {
			f.sig, f.lastChange, f.lastLog = sig, now, now
			f.o.Log.Info(f.progress(now))
		} else if now.Sub(f.lastLog) >= f.o.ProgressEvery {
			f.lastLog = now
			f.o.Log.Info(f.progress(now))
		}
		if pipelines.Terminal(run.State) {
			return true, nil
		}
	case ctx.Err() != nil:
		return true, f.abort(ctx.Err())
	case errors.Is(err, pipelines.ErrNotFound):
		return true, fmt.Errorf("follow run %s: %w", f.id, err)
	case !temporary(err):
		return true, fmt.Errorf("follow run %s: %w", f.id, err)
	default:
		f.errs++
		if f.errs > f.o.MaxErrors {
			return true, fmt.Errorf("follow run %s: %d errors in a row, the last: %w", f.id, f.errs, err)
		}
		f.o.Log.Warnf("run %s: poll failed (%d of %d tolerated): %v", f.id, f.errs, f.o.MaxErrors, err)
	}
	state := ""
	if f.last != nil {
		state = f.last.State
	}
	if f.o.Timeout > 0 && now.Sub(f.start) >= f.o.Timeout {
		f.cancel()
		return true, &DeadlineError{RunID: f.id, State: state, Timeout: f.o.Timeout}
	}
	if f.o.StallTimeout > 0 && now.Sub(f.lastChange) >= f.o.StallTimeout {
		f.cancel()
		return true, &StalledError{RunID: f.id, State: state, For: now.Sub(f.lastChange)}
	}
	return false, nil
}

// Follow polls run id every Interval until Tick says done, and returns the
// last observed run with Tick's error.
func Follow(ctx context.Context, b pipelines.Backend, id string, o Options) (*pipelines.Run, error) {
	f := New(b, id, o)
	for {
		done, err := f.Tick(ctx)
		if done {
			return f.last, err
		}
		select {
		case <-ctx.Done():
		case <-f.o.Clock.After(f.o.Interval):
		}
	}
}

// Interrupted is the error of a follow that stopped on ctx's cancellation:
// Cancelled says whether the run was (asked to be) cancelled; it was not
// when it had already ended (Last holds its terminal state).
type Interrupted struct {
	RunID     string
	Cancelled bool
	Err       error
}

func (e *Interrupted) Error() string { return e.Err.Error() }
func (e *Interrupted) Unwrap() error { return e.Err }

// abort re-reads the run on a fresh context: a run that has ended
// meanwhile (say SUCCEEDED just before SIGTERM) is left as it is and
// reported with its state; else it is cancelled.
func (f *Follower) abort(cause error) error {
	ctx, stop := context.WithTimeout(context.Background(), f.o.CancelTimeout)
	run, err := f.b.GetRun(ctx, f.id)
	stop()
	if err == nil && pipelines.Terminal(run.State) {
		f.last = run
		f.o.Log.Warnf("run %s: interrupted, but it had ended %s: nothing to cancel", f.id, run.State)
		return &Interrupted{RunID: f.id, Err: fmt.Errorf("run %s: interrupted after it ended %s: %w", f.id, run.State, cause)}
	}
	if err == nil {
		f.last = run
	}
	return &Interrupted{RunID: f.id, Cancelled: true, Err: f.abortCancel(cause)}
}

func (f *Follower) abortCancel(cause error) error {
	f.cancel()
	if f.cancelErr != nil {
		return fmt.Errorf("run %s: interrupted, and cancelling it failed (%v): %w", f.id, f.cancelErr, cause)
	}
	return fmt.Errorf("run %s: interrupted, cancel requested: %w", f.id, cause)
}

// cancel asks the backend to cancel the run on a fresh, short context.
func (f *Follower) cancel() {
	ctx, stop := context.WithTimeout(context.Background(), f.o.CancelTimeout)
	defer stop()
	f.cancelErr = f.b.CancelRun(ctx, f.id)
	if f.cancelErr != nil {
		f.o.Log.Errorf("run %s: cancel failed: %v", f.id, f.cancelErr)
	} else {
		f.o.Log.Warnf("run %s: cancel requested", f.id)
	}
}

func (f *Follower) progress(now time.Time) string {
	r := f.last
	done := 0
	var running []string
	for _, t := range r.Tasks {
		if pipelines.Terminal(t.State) {
			done++
		}
		if t.State == pipelines.StateRunning {
			running = append(running, t.Name)
		}
	}
	msg := fmt.Sprintf("run %s: %s, %d/%d tasks done", f.id, r.State, done, len(r.Tasks))
	if len(running) > 0 {
		msg += ", running " + strings.Join(running, ", ")
	}
	return msg + fmt.Sprintf(", %v elapsed", now.Sub(f.start).Round(time.Second))
}

func signature(r *pipelines.Run) string {
	var b strings.Builder
	b.WriteString(r.State)
	for _, t := range r.Tasks {
		b.WriteString("|" + t.Name + "=" + t.State)
	}
	return b.String()
}

// temporary says whether a GetRun error may pass: errors that say
// Temporary() answer for themselves (KFP's APIError: 5xx, 408, 429);
// others (network errors) count as transient.
func temporary(err error) bool {
	var t interface{ Temporary() bool }
	if errors.As(err, &t) {
		return t.Temporary()
	}
	return true
}
