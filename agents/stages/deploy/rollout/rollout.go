package rollout

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/branchml/branchml/agents/backends/serving"
	"github.com/branchml/branchml/agents/backends/serving/tfserving"
	"github.com/branchml/branchml/agents/records"
)

// Phases of a rollout, as records.DeployStatus.Phase.
const (
	PhasePending     = "Pending"
	PhaseProgressing = "Progressing"
	PhaseSucceeded   = "Succeeded"
	PhaseRolledBack  = "RolledBack"
	PhaseFailed      = "Failed"
	// PhaseInterrupted is a rollout cancelled (SIGINT/SIGTERM, deadline)
	// before it ended: the canary was removed, stable serves alone.
	PhaseInterrupted = "Interrupted"
)

// Events of the history, as records.DeployEvent.Event.
const (
	EventStep           = "step"
	EventAnalysisFailed = "analysis-failed"
	EventPromoted       = "promoted"
	EventRolledBack     = "rolled-back"
	EventFailed         = "failed"
	EventInterrupted    = "interrupted"
	// EventRestored is the recorded stable version started again because
	// nothing served (after an interruption or a stop of every server).
	EventRestored = "restored"
	// EventWaiting is a step held for lack of canary traffic (once per step).
	EventWaiting = "waiting"
)

// ErrRolledBack is returned (wrapped with the reason) when the canary was
// rolled back: stable kept serving. A canary whose version cannot load,
// and a rollout preempted by a manual rollback, end so too.
var ErrRolledBack = errors.New("rolled back")

// ErrNoTraffic is returned (wrapped) when the canary got too few requests
// to judge for Policy.MaxInconclusive intervals in a row.
var ErrNoTraffic = errors.New("no analysis traffic")

// Error is a rollout step that failed for a reason other than analysis,
// with whether a retry may succeed.
type Error struct {
	Op        string
	Err       error
	Retriable bool
}

func (e *Error) Error() string   { return e.Op + ": " + e.Err.Error() }
func (e *Error) Unwrap() error   { return e.Err }
func (e *Error) Temporary() bool { return e.Retriable }

// Status is where a rollout stands.
type Status struct {
	Phase string `json:"phase"`
	// Step is the index into Policy.Steps of the current weight (-1 before the first).
	Step     int              `json:"step"`
	Weight   int              `json:"weight"`
	Failures int              `json:"failures"`
	Stable   records.ModelRef `json:"stable"`
	Canary   records.ModelRef `json:"canary"`
	// Reason says why the rollout ended as it did.
	Reason   string                `json:"reason,omitempty"`
	History  []records.DeployEvent `json:"history"`
	Analyses []Analysis            `json:"analyses,omitempty"`
}

// Rollout is one canary rollout of a candidate model. It is not safe for
// concurrent use.
type Rollout struct {
	b     serving.Backend
	p     Policy
	clock Clock
	log   logrus.FieldLogger
	obs   func(Status)

	st                     Status
	baseCanary, baseStable tfserving.Counters
	// stableCounted and stableClient add up the stable version's requests
	// and 4xx answers over the rollout (its 4xx rate when it gets no
	// traffic itself).
	stableCounted, stableClient uint64
	// waits counts inconclusive analyses in a row; waitedStep is the step
	// a waiting event was recorded for.
	waits      int
	waitedStep int
}

type options struct {
	clock Clock
	log   logrus.FieldLogger
	obs   func(Status)
}

// Option configures a Rollout.
type Option func(*options)

// WithClock sets the clock (default RealClock).
func WithClock(c Clock) Option { return func(o *options) { o.clock = c } }

// WithLogger sets the logger (default: discard).
func WithLogger(l logrus.FieldLogger) Option { return func(o *options) { o.log = l } }

// WithObserver calls f with the status after every change (for progress
// reports); f must not block.
func WithObserver(f func(Status)) Option { return func(o *options) { o.obs = f } }

func newOptions(opts []Option) options {
	o := options{clock: RealClock{}}
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		l := logrus.New()
		l.SetOutput(discard{})
		o.log = l
	}
	return o
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// New prepares a canary rollout of candidate on b; an error when the policy
// is invalid.
func New(b serving.Backend, candidate records.ModelRef, p Policy, opts ...Option) (*Rollout, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	o := newOptions(opts)
	return &Rollout{b: b, p: p, clock: o.clock, log: o.log, obs: o.obs, waitedStep: -2,
		st: Status{Phase: PhasePending, Step: -1, Canary: candidate}}, nil
}

// Status returns a copy of the current status.
func (r *Rollout) Status() Status {
	s := r.st
	s.History = append([]records.DeployEvent(nil), r.st.History...)
	s.Analyses = append([]Analysis(nil), r.st.Analyses...)
	return s
}

// Run starts the rollout and ticks it every interval until it is promoted
// (nil), rolled back (ErrRolledBack wrapped with the reason) or failed (an
// *Error). Cancelling ctx aborts the canary so that stable serves alone;
// the status then is PhaseInterrupted and the error wraps ctx.Err().
//
// A rollout preempted by a manual rollback (an error wrapping a
// *serving.PreemptedError from the backend, or ctx cancelled with one as
// its cause) ends RolledBack, naming who took over; the canary is then
// already gone.
func (r *Rollout) Run(ctx context.Context) (Status, error) {
	if err := r.Start(ctx); err != nil {
		if pe := preemption(ctx, err); pe != nil {
			return r.preempted(pe)
		}
		if ctx.Err() != nil {
			return r.interrupt(ctx.Err())
		}
		return r.Status(), err
	}
	for r.st.Phase == PhaseProgressing {
		select {
		case <-ctx.Done():
			if pe := preemption(ctx, nil); pe != nil {
				return r.preempted(pe)
			}
			return r.interrupt(ctx.Err())
		case <-r.clock.After(r.p.Interval):
		}
		err := r.Tick(ctx)
		if pe := preemption(ctx, err); pe != nil {
			return r.preempted(pe)
		}
		if ctx.Err() != nil && (r.st.Phase == PhaseProgressing || r.st.Phase == PhaseFailed) {
			// Whatever failed, it failed because ctx ended: not a verdict.
			return r.interrupt(ctx.Err())
		}
		var re *Error
		if errors.As(err, &re) && re.Retriable && r.st.Phase == PhaseProgressing {
			r.log.Warnf("rollout tick: %v (retrying next interval)", err)
			continue
		}
		if err != nil {
			return r.Status(), err
		}
	}
	return r.Status(), nil
}

// preemption returns the *serving.PreemptedError that err wraps or that
// ended ctx, or nil.
func preemption(ctx context.Context, err error) *serving.PreemptedError {
	var pe *serving.PreemptedError
	if errors.As(err, &pe) {
		return pe
	}
	if ctx.Err() != nil && errors.As(context.Cause(ctx), &pe) {
		return pe
	}
	return nil
}

// preempted ends the rollout because another holder took the lease (a
// manual rollback): the canary was removed by it; this rollout records the
// takeover and blames nothing on the model.
func (r *Rollout) preempted(pe *serving.PreemptedError) (Status, error) {
	msg := fmt.Sprintf("preempted at %d%% by %s: canary v%d removed, not judged", r.st.Weight, pe.By, r.st.Canary.Version)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if st, err := r.b.State(ctx); err == nil {
		if s := st.Get(serving.Stable); s != nil {
			r.st.Stable = s.Model
			msg += fmt.Sprintf("; v%d serves", s.Model.Version)
		}
	}
	r.st.Phase, r.st.Weight, r.st.Reason = PhaseRolledBack, 0, msg
	r.event(EventRolledBack, msg)
	return r.Status(), fmt.Errorf("%w: canary %s v%d: %w", ErrRolledBack, r.st.Canary.Name, r.st.Canary.Version, pe)
}

// interrupt removes the canary with a fresh context (ctx is done), records
// the interruption and returns cause.
func (r *Rollout) interrupt(cause error) (Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	at := r.st.Weight
	msg := fmt.Sprintf("interrupted at %d%% (%v): canary v%d removed", at, cause, r.st.Canary.Version)
	if err := r.b.Abort(ctx); err != nil {
		r.log.Errorf("abort canary (interrupted): %v", err)
		msg = fmt.Sprintf("interrupted at %d%% (%v); removing canary v%d failed: %v", at, cause, r.st.Canary.Version, err)
	} else {
		r.st.Weight = 0
	}
	if st, err := r.b.State(ctx); err == nil {
		if s := st.Get(serving.Stable); s != nil {
			r.st.Stable = s.Model
			msg += fmt.Sprintf(", stable v%d serves", s.Model.Version)
		} else {
			msg += ", nothing serves"
		}
	}
	r.st.Phase, r.st.Reason = PhaseInterrupted, msg
	r.event(EventInterrupted, msg)
	return r.Status(), fmt.Errorf("canary %s v%d: %w", r.st.Canary.Name, r.st.Canary.Version, cause)
}

// Start deploys the candidate as canary (waiting for AVAILABLE), runs the
// smoke tests against it before any traffic moves, and routes the first
// step's weight to it.
func (r *Rollout) Start(ctx context.Context) error {
	st, err := r.b.State(ctx)
	if err != nil {
		return r.fail(&Error{Op: "read serving state", Err: err, Retriable: serving.IsTemporary(err)})
	}
	if s := st.Get(serving.Stable); s != nil {
		r.st.Stable = s.Model
	}
	if err := r.b.Deploy(ctx, serving.Canary, r.st.Canary); err != nil {
		if preemption(ctx, err) != nil {
			return err
		}
		if errors.Is(err, serving.ErrLoadFailed) {
			// The version itself is bad: a failed canary, judged at once.
			r.abortDetached("")
			detail := err.Error()
			if i := strings.Index(detail, serving.ErrLoadFailed.Error()+": "); i >= 0 {
				detail = detail[i+len(serving.ErrLoadFailed.Error())+2:]
			}
			reason := fmt.Sprintf("canary v%d cannot load: %s", r.st.Canary.Version, detail)
			r.st.Phase, r.st.Weight, r.st.Reason = PhaseRolledBack, 0, reason
			r.event(EventRolledBack, reason)
			return fmt.Errorf("%w: canary %s v%d: %w", ErrRolledBack, r.st.Canary.Name, r.st.Canary.Version, err)
		}
		r.abortDetached("canary did not start")
		return r.fail(&Error{Op: fmt.Sprintf("deploy canary %s v%d", r.st.Canary.Name, r.st.Canary.Version), Err: err, Retriable: serving.IsTemporary(err)})
	}
	if f := smoke(ctx, r.b, serving.Canary, r.p.Smoke); len(f) > 0 {
		return r.rollback(ctx, "smoke tests failed before traffic moved: "+strings.Join(f, "; "))
	}
	if err := r.baseline(ctx); err != nil {
		r.abortDetached("no baseline metrics")
		return r.fail(&Error{Op: "read baseline metrics", Err: err, Retriable: serving.IsTemporary(err)})
	}
	if err := r.route(ctx, 0); err != nil {
		r.abortDetached("first route failed")
		return r.fail(err)
	}
	r.st.Phase = PhaseProgressing
	r.notify()
	return nil
}

// Tick analyses the interval that just ended, then steps the weight up,
// promotes (after the last step) or rolls back (when failed analyses reach
// the threshold). A retriable *Error leaves the rollout where it was.
func (r *Rollout) Tick(ctx context.Context) error {
	if r.st.Phase != PhaseProgressing {
		return nil
	}
	a, err := r.analyse(ctx)
	if ctx.Err() != nil {
		// The interval was cut short: judge nothing (Run records the interruption).
		return ctx.Err()
	}
	if err != nil {
		if preemption(ctx, err) != nil {
			return err
		}
		if !serving.IsTemporary(err) {
			r.abortDetached("metrics unreadable")
			return r.fail(&Error{Op: "read canary metrics", Err: err})
		}
		a = Analysis{Weight: r.st.Weight, NoData: "metrics unreadable: " + err.Error()}
	}
	r.st.Analyses = append(r.st.Analyses, a)
	r.log.WithFields(logrus.Fields{"weight": a.Weight, "canaryRequests": a.CanaryRequests, "successRate": a.SuccessRate,
		"p99ms": a.P99Millis, "share": a.Share}).Infof("analysis at %d%%: %s", a.Weight, verdict(a))

	if a.Inconclusive() {
		// No verdict: hold the step and wait for traffic (the next
		// analysis covers a longer window), up to MaxInconclusive in a row.
		r.waits++
		msg := fmt.Sprintf("waiting for traffic at %d%%: %s", a.Weight, a.NoData)
		if r.p.NoTrafficHint != "" {
			msg += "; " + r.p.NoTrafficHint
		}
		r.log.Warn(msg)
		if r.waitedStep != r.st.Step {
			r.waitedStep = r.st.Step
			r.event(EventWaiting, msg)
		}
		if r.waits >= r.p.maxInconclusive() {
			r.abortDetached("no analysis traffic")
			return r.fail(&Error{Op: fmt.Sprintf("analyse canary %s v%d", r.st.Canary.Name, r.st.Canary.Version),
				Err: fmt.Errorf("%w: %d inconclusive analyses in a row (%s)", ErrNoTraffic, r.waits, msg)})
		}
		r.rebalance(ctx)
		return nil
	}
	r.waits = 0
	if !a.Passed() {
		r.st.Failures++
		r.event(EventAnalysisFailed, strings.Join(a.Failures, "; "))
		if r.st.Failures >= r.p.Threshold {
			return r.rollback(ctx, fmt.Sprintf("%d failed analyses (threshold %d), last at %d%%: %s", r.st.Failures, r.p.Threshold, a.Weight, strings.Join(a.Failures, "; ")))
		}
		r.rebalance(ctx)
		return r.resetBaseline(ctx)
	}
	if r.st.Step == len(r.p.Steps)-1 {
		return r.promote(ctx)
	}
	if err := r.route(ctx, r.st.Step+1); err != nil {
		return err
	}
	return r.resetBaseline(ctx)
}

func verdict(a Analysis) string {
	switch {
	case a.Inconclusive():
		return "inconclusive: " + a.NoData
	case a.Passed():
		return "passed"
	}
	return "failed: " + strings.Join(a.Failures, "; ")
}

// analyse reads both variants' counters and judges the canary's delta.
func (r *Rollout) analyse(ctx context.Context) (Analysis, error) {
	c, err := r.b.Counters(ctx, serving.Canary)
	if err != nil {
		return Analysis{}, err
	}
	s, err := r.b.Counters(ctx, serving.Stable)
	if err != nil && r.st.Weight < 100 {
		return Analysis{}, err
	}
	rate := -1.0
	if r.stableCounted > 0 {
		rate = float64(r.stableClient) / float64(r.stableCounted)
	}
	ds := s.Sub(r.baseStable)
	a := analyse(r.p, r.st.Weight, c.Sub(r.baseCanary), ds, rate)
	if !a.Inconclusive() {
		t := tallyOf(ds)
		r.stableCounted += t.counted
		r.stableClient += t.client
	}
	if a.Passed() {
		a.Failures = append(a.Failures, smoke(ctx, r.b, serving.Canary, r.p.Smoke)...)
	}
	return a, nil
}

func (r *Rollout) baseline(ctx context.Context) error {
	c, err := r.b.Counters(ctx, serving.Canary)
	if err != nil {
		return err
	}
	s, err := r.b.Counters(ctx, serving.Stable)
	if err != nil {
		s = tfserving.Counters{} // no stable (first deploy) or unreadable: deltas start from zero
	}
	r.baseCanary, r.baseStable = c, s
	return nil
}

func (r *Rollout) resetBaseline(ctx context.Context) error {
	if err := r.baseline(ctx); err != nil {
		// Keep the old baseline: the next analysis covers a longer window.
		r.log.Warnf("read metrics for the next interval: %v", err)
	}
	return nil
}

func (r *Rollout) route(ctx context.Context, step int) error {
	w := r.p.Steps[step]
	if err := r.b.Route(ctx, w); err != nil {
		if preemption(ctx, err) != nil {
			return err
		}
		if serving.IsTemporary(err) {
			return &Error{Op: fmt.Sprintf("route %d%% to canary", w), Err: err, Retriable: true}
		}
		r.abortDetached("route failed")
		return r.fail(&Error{Op: fmt.Sprintf("route %d%% to canary", w), Err: err})
	}
	r.st.Step, r.st.Weight = step, w
	r.event(EventStep, fmt.Sprintf("canary v%d at %d%%", r.st.Canary.Version, w))
	return nil
}

// rebalance lets a serving.Rebalancer restore the step's weight while the
// step holds; a failure is logged only (the split stays as it was, the
// next analysis measures it).
func (r *Rollout) rebalance(ctx context.Context) {
	rb, ok := r.b.(serving.Rebalancer)
	if !ok {
		return
	}
	if err := rb.Rebalance(ctx); err != nil {
		r.log.Warnf("keep the canary at %d%%: %v", r.st.Weight, err)
	}
}

func (r *Rollout) promote(ctx context.Context) error {
	if err := r.b.Promote(ctx); err != nil {
		if preemption(ctx, err) != nil {
			return err
		}
		if serving.IsTemporary(err) {
			return &Error{Op: "promote canary", Err: err, Retriable: true}
		}
		return r.fail(&Error{Op: fmt.Sprintf("promote %s v%d", r.st.Canary.Name, r.st.Canary.Version), Err: err})
	}
	r.st.Phase, r.st.Weight = PhaseSucceeded, 100
	r.st.Stable = r.st.Canary
	r.st.Reason = fmt.Sprintf("v%d promoted after %d steps", r.st.Canary.Version, len(r.p.Steps))
	r.event(EventPromoted, r.st.Reason)
	return nil
}

// rollback aborts the canary and returns ErrRolledBack with reason.
func (r *Rollout) rollback(ctx context.Context, reason string) error {
	if err := r.b.Abort(ctx); err != nil {
		if preemption(ctx, err) != nil {
			return err
		}
		return r.fail(&Error{Op: "roll back canary", Err: fmt.Errorf("%v (rolling back because %s)", err, reason), Retriable: serving.IsTemporary(err)})
	}
	r.st.Phase, r.st.Weight, r.st.Reason = PhaseRolledBack, 0, reason
	r.event(EventRolledBack, reason)
	return fmt.Errorf("%w: canary %s v%d: %s", ErrRolledBack, r.st.Canary.Name, r.st.Canary.Version, reason)
}

// abortDetached tries to abort even when ctx is done, so stable serves
// alone; a non-empty why is recorded as an event.
func (r *Rollout) abortDetached(why string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.b.Abort(ctx); err != nil {
		r.log.Errorf("abort canary (%s): %v", why, err)
		return
	}
	r.st.Weight = 0
	if why != "" {
		r.event(EventRolledBack, why)
	}
}

func (r *Rollout) fail(err error) error {
	r.st.Phase, r.st.Reason = PhaseFailed, err.Error()
	r.event(EventFailed, err.Error())
	return err
}

func (r *Rollout) event(kind, msg string) {
	r.st.History = append(r.st.History, records.DeployEvent{Time: r.clock.Now().UTC(), Version: r.st.Canary.Version, Weight: r.st.Weight, Event: kind, Message: msg})
	r.notify()
}

func (r *Rollout) notify() {
	if r.obs != nil {
		r.obs(r.Status())
	}
}
