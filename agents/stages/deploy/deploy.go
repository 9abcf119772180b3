package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/backends/serving"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/atomicfile"
	"github.com/branchml/branchml/agents/internal/procid"
	"github.com/branchml/branchml/agents/records"
	"github.com/branchml/branchml/agents/stages/deploy/rollout"
)

// ErrRolledBack is returned (wrapped with the reason) when the rollout was
// rolled back; the stage exits 3.
var ErrRolledBack = rollout.ErrRolledBack

// MaxHistory bounds the events kept in the status.
const MaxHistory = 100

// DefaultBranch is the deploy branch when branches.deploy is unset.
const DefaultBranch = "deploy-model"

// Options are the inputs of Run, Rollback and Status.
type Options struct {
	Config *config.Config
	// Spec is the deploy spec; when nil it is read from Workspace/deploy.yaml.
	Spec      *records.DeploySpec
	Workspace string
	// ModelRoot is the directory a relative model.path is resolved against
	// (for the local backend: the model volume's directory); "" leaves the
	// path as given (Kubernetes: a path on the mounted volume).
	ModelRoot string
	// Serving is the backend (see agents/backends/serving/servingfactory).
	Serving serving.Backend
	// Forge receives the status write-back; nil writes nothing back.
	Forge forge.Forge
	// StatusFile, when set, also receives the status JSON (atomically), so
	// that `status` works without the forge (the local backend's state dir).
	StatusFile string
	// Commit is the deploy branch commit being deployed (for the status
	// and the write-back message); BuildURL goes into history messages.
	Commit   string
	BuildURL string
	Clock    rollout.Clock
	Log      logrus.FieldLogger
	DryRun   bool
	// NoWait makes a run that finds another rollout of the model in
	// progress fail at once (naming its holder) instead of waiting for it.
	NoWait bool
	// By names who runs the stage in lease and history records, e.g.
	// "branchml-deploy run"; default "branchml deploy".
	By string
}

// Result is what Run, Rollback and Status report.
type Result struct {
	// Status is the deploy status: the one written (Run, Rollback), or the
	// one recorded (Status, and dry runs, which change nothing).
	Status records.DeployStatus `json:"status,omitzero"`
	// Plan lists what was (or, with DryRun, would be) done.
	Plan     []string           `json:"plan,omitempty"`
	Analyses []rollout.Analysis `json:"analyses,omitempty"`
	AB       *rollout.ABReport  `json:"ab,omitempty"`
	Serving  serving.State      `json:"serving"`
	// WriteBack is the commit SHA of the status write-back ("" when none).
	WriteBack string `json:"writeBack,omitempty"`
	DryRun    bool   `json:"dryRun,omitempty"`
}

// UsageError is a request that cannot be carried out as asked, with what
// to do instead; the stage reports it as bad usage (exit 2). Nothing was
// changed.
type UsageError struct {
	Err error
	Fix string
}

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// RestoreError is a recorded stable version that could not be started
// again while nothing served; nothing else was deployed.
type RestoreError struct {
	Model records.ModelRef
	Err   error
}

func (e *RestoreError) Error() string {
	return fmt.Sprintf("restore the recorded stable %s v%d (nothing serves): %v", e.Model.Name, e.Model.Version, e.Err)
}
func (e *RestoreError) Unwrap() error { return e.Err }

func (o *Options) defaults() error {
	if o.Config == nil {
		return errors.New("deploy: no configuration")
	}
	if o.Serving == nil {
		return errors.New("deploy: no serving backend")
	}
	if o.Clock == nil {
		o.Clock = rollout.RealClock{}
	}
	if o.Log == nil {
		l := logrus.New()
		l.SetOutput(os.Stderr)
		o.Log = l
	}
	return nil
}

func (o *Options) branch() string {
	if b := o.Config.Branches[config.StageDeploy]; b != "" {
		return b
	}
	return DefaultBranch
}

// spec loads the spec and resolves a relative model path against the
// workspace (the local backend's model volume is a directory).
func (o *Options) spec() (*records.DeploySpec, error) {
	s := o.Spec
	if s == nil {
		var err error
		if s, err = LoadSpec(SpecPath(o.Workspace)); err != nil {
			return nil, err
		}
	} else if err := CheckSpec(s); err != nil {
		return nil, &SpecError{Path: "(given spec)", Err: err}
	}
	c := *s
	if !filepath.IsAbs(c.Model.Path) && o.ModelRoot != "" {
		c.Model.Path = filepath.Join(o.ModelRoot, c.Model.Path)
	}
	if want := o.Config.Deploy.Model; want != "" && c.Model.Name != want {
		return nil, &SpecError{Path: records.DeploySpecPath, Err: fmt.Errorf("model.name %q differs from deploy.model %q in branchml.yaml: make them match", c.Model.Name, want)}
	}
	return &c, nil
}

// CorruptStatusError is a recorded deploy status that is not valid JSON:
// the stage stops (exit 2) rather than start a new, empty history.
type CorruptStatusError struct {
	// Where names it: a file, or the path on the deploy branch.
	Where string
	Err   error
	Fix   string
}

func (e *CorruptStatusError) Error() string {
	return fmt.Sprintf("the deploy status %s is corrupted: %v", e.Where, e.Err)
}

func (e *CorruptStatusError) Unwrap() error { return e.Err }

// previous returns the status last written back (the deploy branch's copy,
// else StatusFile; "" phase when none). A copy that does not parse is a
// *CorruptStatusError: never silently an empty history.
func (o *Options) previous(ctx context.Context) (records.DeployStatus, error) {
	var st records.DeployStatus
	if o.Forge != nil {
		raw, err := o.Forge.ReadFile(ctx, o.branch(), records.DeployStatusPath)
		switch {
		case err == nil:
			if jerr := json.Unmarshal(raw, &st); jerr != nil {
				return records.DeployStatus{}, &CorruptStatusError{Where: records.DeployStatusPath + " on branch " + o.branch(), Err: jerr,
					Fix: fmt.Sprintf("restore it from the branch's history (git log -p %s -- %s shows the last good copy; commit it back), then run again", o.branch(), records.DeployStatusPath)}
			}
			return st, nil
		case !errors.Is(err, forge.ErrNotFound):
			o.Log.Warnf("read previous deploy status: %v", err)
		}
	}
	if o.StatusFile != "" {
		raw, err := os.ReadFile(o.StatusFile)
		switch {
		case err == nil:
			if jerr := json.Unmarshal(raw, &st); jerr != nil {
				return records.DeployStatus{}, &CorruptStatusError{Where: o.StatusFile, Err: jerr,
					Fix: fmt.Sprintf("restore it from the deploy branch (git show %s:%s > %s), or move it aside to start a new history (mv %s %s.bad)", o.branch(), records.DeployStatusPath, o.StatusFile, o.StatusFile, o.StatusFile)}
			}
		case !errors.Is(err, os.ErrNotExist):
			return records.DeployStatus{}, fmt.Errorf("read %s: %w", o.StatusFile, err)
		}
	}
	return st, nil
}

// by is who runs the stage, for lease and history records.
func (o *Options) by() string {
	if o.By != "" {
		return o.By
	}
	return "branchml deploy"
}

// lease takes the model's rollout lease when the backend has one: it waits
// for a rollout in progress (or, with NoWait, fails naming it); preempt
// takes it from the holder (a manual rollback). The returned context ends
// with the *serving.PreemptedError as its cause when the lease is taken
// from us; release gives the lease back.
func (o *Options) lease(ctx context.Context, what string, preempt bool) (context.Context, func(), error) {
	l, ok := o.Serving.(serving.Leaser)
	if !ok {
		return ctx, func() {}, nil
	}
	lease, err := l.Lease(ctx, serving.LeaseRequest{What: o.by() + ": " + what, Wait: !o.NoWait, Preempt: preempt,
		OnWait: func(h string) { o.Log.Infof("rollout in progress by %s: waiting for it to end", h) }})
	if err != nil {
		return ctx, nil, err
	}
	if preempt {
		o.Log.Infof("rollout lease taken for %s (a rollout in progress, if any, was stopped and its canary removed)", what)
	}
	lctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		select {
		case <-lease.Lost():
			o.Log.Warnf("the rollout lease was taken: %v", lease.Err())
			cancel(lease.Err())
		case <-done:
		}
	}()
	var once sync.Once
	return lctx, func() {
		once.Do(func() {
			close(done)
			rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer rcancel()
			_ = lease.Release(rctx)
			cancel(nil)
		})
	}, nil
}

// recordedStable is the stable version prev records for model ("0" when
// none was ever recorded).
func recordedStable(prev records.DeployStatus, model string) int64 {
	if prev.StableVersion <= 0 || (prev.Model != "" && prev.Model != model) {
		return 0
	}
	return prev.StableVersion
}

// settled reports whether prev already records want serving alone after a
// successful deploy, so that serving want again writes nothing back (the
// commit may differ: the status write-back itself moves the branch).
func settled(prev records.DeployStatus, want records.ModelRef) bool {
	return prev.Phase == rollout.PhaseSucceeded && prev.Model == want.Name && prev.StableVersion == want.Version && prev.CanaryVersion == 0
}

// Run makes the serving side match the deploy spec: nothing when the spec's
// version already serves alone; a canary rollout (promote, or roll back:
// ErrRolledBack) or an A/B experiment against the stable version. When
// nothing serves but the status records a stable version, that version is
// restored first (and is all that is done when the spec names it); only
// when no stable was ever recorded is the spec's version deployed directly.
// The status is written back even when the rollout fails or is
// interrupted (phase Interrupted, the error wraps ctx.Err()).
func Run(ctx context.Context, o Options) (*Result, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	spec, err := o.spec()
	if err != nil {
		return nil, err
	}
	strategy := spec.Strategy
	if strategy == "" {
		strategy = o.Config.Deploy.Strategy
	}
	policy := rollout.PolicyOf(o.Config.Deploy.Canary)
	if strategy == "canary" {
		if err := policy.Validate(); err != nil {
			return nil, &SpecError{Path: "branchml.yaml", Err: err}
		}
	} else if strategy != "ab" {
		return nil, &SpecError{Path: "branchml.yaml", Err: fmt.Errorf("deploy.strategy %q: use canary or ab", strategy)}
	}
	if !o.DryRun {
		lctx, release, err := o.lease(ctx, fmt.Sprintf("deploy %s v%d", spec.Model.Name, spec.Model.Version), false)
		if err != nil {
			return nil, err
		}
		defer release()
		ctx = lctx
	}
	state, err := o.Serving.State(ctx)
	if err != nil {
		return nil, fmt.Errorf("read serving state of %s: %w", spec.Model.Name, err)
	}
	prev, err := o.previous(ctx)
	if err != nil {
		return nil, err
	}
	res := &Result{Serving: state, DryRun: o.DryRun}
	stable, canary := state.Get(serving.Stable), state.Get(serving.Canary)
	want := spec.Model
	if state.Endpoint != "" {
		policy.NoTrafficHint = fmt.Sprintf("send predict requests to %s/v1/models/%s:predict", state.Endpoint, want.Name)
	}
	// restore is the recorded stable to start again because nothing serves.
	var restore *records.ModelRef
	if v := recordedStable(prev, want.Name); stable == nil && v > 0 {
		m := want
		m.Version = v
		restore = &m
	}
	stableVersion := func() int64 {
		if stable != nil {
			return stable.Model.Version
		}
		if restore != nil {
			return restore.Version
		}
		return 0
	}

	st := records.DeployStatus{APIVersion: records.APIVersion, Kind: "DeployStatus", Model: want.Name, SourceCommit: o.Commit, StableVersion: stableVersion()}
	if canary == nil && stable != nil && stable.Model.Version == want.Version && stable.Model.Path == want.Path {
		res.Plan = append(res.Plan, fmt.Sprintf("nothing to do: %s v%d already serves at 100%%", want.Name, want.Version))
		if o.DryRun || settled(prev, want) {
			res.Status = prev
			return res, nil
		}
		st.Phase, st.Message = rollout.PhaseSucceeded, res.Plan[0]
		return o.finish(ctx, res, st, nil, nil, want)
	}

	// The plan.
	if canary != nil {
		res.Plan = append(res.Plan, fmt.Sprintf("abort the leftover canary v%d", canary.Model.Version))
	}
	if restore != nil {
		res.Plan = append(res.Plan, fmt.Sprintf("restore %s v%d, the recorded stable, at 100%% (nothing serves)", want.Name, restore.Version))
	}
	sv := stableVersion()
	switch {
	case sv == want.Version:
		// Only the restore: the spec names the recorded stable.
	case sv == 0:
		res.Plan = append(res.Plan, fmt.Sprintf("deploy %s v%d as stable at 100%% (nothing serves and no stable was ever recorded)", want.Name, want.Version))
	case strategy == "canary":
		res.Plan = append(res.Plan, fmt.Sprintf("canary %s v%d against stable v%d: steps %v every %v, threshold %d%s", want.Name, want.Version, sv, policy.Steps, policy.Interval, policy.Threshold, podSplit(o.Config, policy.Steps)))
	default:
		ab := o.Config.Deploy.AB
		res.Plan = append(res.Plan, fmt.Sprintf("A/B %s v%d at %d%% against stable v%d for %v or %d requests", want.Name, want.Version, ab.Weight, sv, ab.Duration.Duration, ab.Requests))
	}
	if o.DryRun {
		res.Status = prev
		return res, nil
	}

	var events []records.DeployEvent
	ev := func(v int64, w int, kind, msg string) {
		events = append(events, records.DeployEvent{Time: o.Clock.Now().UTC(), Version: v, Weight: w, Event: kind, Message: msg})
	}
	failed := func(v int64, err error) (*Result, error) {
		st.Phase, st.Message = rollout.PhaseFailed, err.Error()
		ev(v, 0, rollout.EventFailed, err.Error())
		return o.finish(ctx, res, st, events, err, want)
	}
	if canary != nil {
		if err := o.Serving.Abort(ctx); err != nil {
			return res, fmt.Errorf("abort leftover canary %s v%d: %w", want.Name, canary.Model.Version, err)
		}
	}
	if restore != nil {
		err := o.Serving.Deploy(ctx, serving.Stable, *restore)
		if err == nil {
			err = o.Serving.Route(ctx, 0)
		}
		if err != nil {
			return failed(restore.Version, &RestoreError{Model: *restore, Err: err})
		}
		msg := fmt.Sprintf("v%d restored: the recorded stable (nothing served)", restore.Version)
		if restore.Version == want.Version {
			if settled(prev, want) {
				// The quickstart's rerun, or any run after every server was
				// stopped: serving again is all; the status stays as it is.
				res.Status = prev
				if now, err := o.Serving.State(ctx); err == nil {
					res.Serving = now
				}
				return res, nil
			}
			st.Phase, st.Message = rollout.PhaseSucceeded, msg+"; deploy.yaml names it"
			ev(restore.Version, 100, rollout.EventRestored, msg)
			return o.finish(ctx, res, st, events, nil, want)
		}
		ev(restore.Version, 100, rollout.EventRestored, msg)
		o.Log.Infof("%s %s", want.Name, msg)
	}

	var runErr error
	switch {
	case sv == 0:
		runErr = o.Serving.Deploy(ctx, serving.Stable, want)
		if runErr == nil {
			runErr = o.Serving.Route(ctx, 0)
		}
		if runErr != nil {
			return failed(want.Version, runErr)
		}
		st.Phase, st.StableVersion, st.Message = rollout.PhaseSucceeded, want.Version, fmt.Sprintf("v%d deployed (nothing served before, no stable recorded)", want.Version)
		ev(want.Version, 100, rollout.EventPromoted, st.Message)
	case strategy == "canary":
		r, err := rollout.New(o.Serving, want, policy, rollout.WithClock(o.Clock), rollout.WithLogger(o.Log))
		if err != nil {
			return res, err
		}
		rs, err := r.Run(ctx)
		runErr = err
		res.Analyses = rs.Analyses
		events = append(events, rs.History...)
		st.Phase, st.Message = rs.Phase, rs.Reason
		if rs.Stable.Version > 0 {
			st.StableVersion = rs.Stable.Version
		}
		if rs.Phase == rollout.PhaseProgressing || rs.Phase == rollout.PhasePending {
			st.Phase = rollout.PhaseFailed
		}
	default:
		ab := o.Config.Deploy.AB
		rep, err := rollout.RunAB(ctx, o.Serving, want, rollout.ABPolicy{Weight: ab.Weight, Duration: ab.Duration.Duration, Requests: ab.Requests, Interval: policy.Interval, Bounds: policy},
			rollout.WithClock(o.Clock), rollout.WithLogger(o.Log))
		runErr = err
		res.AB = &rep
		events = append(events, rep.History...)
		if err == nil {
			st.Phase = rollout.PhaseSucceeded
			st.Message = fmt.Sprintf("A/B finished: %s (candidate v%d success %.2f%% p99 %.2fms; stable v%d success %.2f%% p99 %.2fms); merge a canary deploy.yaml to promote",
				rep.Verdict, want.Version, rep.CandidateAnalysis.SuccessRate, rep.CandidateAnalysis.P99Millis, rep.Stable.Version, rep.StableAnalysis.SuccessRate, rep.StableAnalysis.P99Millis)
		} else {
			st.Phase, st.Message = rollout.PhaseFailed, err.Error()
		}
	}
	return o.finish(ctx, res, st, events, runErr, want)
}

// finish completes st (interruption, history, what serves now), writes it
// and returns res with runErr (or the write's error). When ctx is done it
// uses a fresh short context, so that an interrupted rollout is recorded.
// podSplit says, for the Kubernetes backend (whose weights are pod
// counts), how many of the replicas the canary gets at each step, e.g.
// " (canary pods 1, 2, 4 of 4)"; "" for other backends.
func podSplit(cfg *config.Config, steps []int) string {
	if cfg.Backends.Serving.Type != "kubernetes" {
		return ""
	}
	n := cfg.Deploy.Serving.Replicas
	if n <= 0 {
		n = 2
	}
	parts := make([]string, len(steps))
	for i, w := range steps {
		parts[i] = strconv.Itoa(n * w / 100)
	}
	return fmt.Sprintf(" (canary pods %s of %d)", strings.Join(parts, ", "), n)
}

func (o *Options) finish(ctx context.Context, res *Result, st records.DeployStatus, events []records.DeployEvent, runErr error, want records.ModelRef) (*Result, error) {
	if cause := ctx.Err(); cause != nil {
		if c := context.Cause(ctx); c != nil && c != cause {
			o.Log.Warnf("stopped: %v", c)
		}
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		ctx = wctx
		// A rollout that ended (promoted, rolled back) before ctx did keeps
		// its verdict; anything else was cut short.
		if st.Phase != rollout.PhaseSucceeded && st.Phase != rollout.PhaseRolledBack {
			st.Phase = rollout.PhaseInterrupted
			if !strings.HasPrefix(st.Message, "interrupted") {
				st.Message = fmt.Sprintf("interrupted (%v): %s", cause, st.Message)
			}
			if len(events) == 0 || events[len(events)-1].Event != rollout.EventInterrupted {
				events = append(events, records.DeployEvent{Time: o.Clock.Now().UTC(), Version: want.Version, Event: rollout.EventInterrupted, Message: st.Message})
			}
			if runErr == nil {
				runErr = cause
			} else if !errors.Is(runErr, cause) {
				runErr = fmt.Errorf("%w (%w)", runErr, cause)
			}
		}
	}
	st.UpdatedAt = o.Clock.Now().UTC()
	st.CanaryVersion, st.CanaryWeight = 0, 0
	if now, err := o.Serving.State(ctx); err == nil {
		res.Serving = now
		if c := now.Get(serving.Canary); c != nil {
			st.CanaryVersion, st.CanaryWeight = c.Model.Version, now.CanaryWeight
		}
		if s := now.Get(serving.Stable); s != nil {
			st.StableVersion = s.Model.Version
		}
	}
	st, sha, werr := o.write(ctx, st, events, want)
	res.Status = st
	res.WriteBack = sha
	if werr != nil {
		o.Log.Errorf("record the deploy status: %v", werr)
	}
	if runErr != nil {
		return res, runErr
	}
	return res, werr
}

// appendHistory appends ev to h, in time order (the events of runs that
// overlapped, such as a rollout and the rollback that preempted it,
// interleave), keeping the newest MaxHistory.
func appendHistory(h, ev []records.DeployEvent) []records.DeployEvent {
	out := append(append([]records.DeployEvent(nil), h...), ev...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	if len(out) > MaxHistory {
		out = out[len(out)-MaxHistory:]
	}
	return out
}

// write records st with events appended to the history as it is now:
// under a lock beside StatusFile it reads the latest status again (another
// process, e.g. a manual rollback, may have written since this run began),
// appends this run's events, stores it in StatusFile and writes it back to
// the deploy branch. It returns the status written.
func (o *Options) write(ctx context.Context, st records.DeployStatus, events []records.DeployEvent, m records.ModelRef) (records.DeployStatus, string, error) {
	if o.StatusFile != "" {
		release, err := procid.Lock(ctx, o.StatusFile+".lock", procid.LockOptions{What: o.by() + ": record the deploy status", Wait: true})
		if err != nil {
			return st, "", err
		}
		defer release()
	}
	latest, err := o.previous(ctx)
	if err != nil {
		return st, "", err
	}
	st.History = appendHistory(latest.History, events)
	sha, err := o.store(ctx, st, m)
	return st, sha, err
}

// store writes st to StatusFile and back to the deploy branch.
func (o *Options) store(ctx context.Context, st records.DeployStatus, m records.ModelRef) (string, error) {
	js, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return "", err
	}
	js = append(js, '\n')
	if o.StatusFile != "" {
		if err := atomicfile.WriteFile(o.StatusFile, js, 0o644); err != nil {
			return "", fmt.Errorf("write %s: %w", o.StatusFile, err)
		}
	}
	if o.Forge == nil {
		return "", nil
	}
	commit := o.Commit
	if len(commit) > 12 {
		commit = commit[:12]
	}
	if commit == "" {
		commit = "(no commit)"
	}
	sha, err := o.Forge.WriteBack(ctx, forge.WriteBack{Branch: o.branch(), Files: map[string][]byte{records.DeployStatusPath: js},
		Message: fmt.Sprintf("branchml deploy: %s %s v%d for %s", st.Phase, m.Name, m.Version, commit)})
	if err != nil {
		return "", fmt.Errorf("write back %s to %s: %w", records.DeployStatusPath, o.branch(), err)
	}
	return sha, nil
}

// Rollback aborts a canary in progress and, when to > 0 or no canary ran,
// brings back version to at 100% without analysis. The default to is
// defined by the recorded history (RollbackTarget): the newest version
// that served as stable before the current one and that no rollback has
// left since; a version the history never saw serve is refused at once
// (a *UsageError: exit 2). A rollout in progress in another process is
// preempted: its canary is removed (traffic back to stable, drained) and
// that rollout ends naming this rollback. When nothing serves, the
// recorded status says what the current stable is and to is started as
// stable (its path from deploy.yaml). With DryRun it only plans, from the
// recorded status. A failure is recorded in the history too.
func Rollback(ctx context.Context, o Options, to int64) (*Result, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if to < 0 {
		return nil, &UsageError{Err: fmt.Errorf("--to %d: a model version is a positive integer", to),
			Fix: "pass --to VERSION (e.g. --to 1), or leave --to out to bring back the version before the current stable"}
	}
	// Read and check first: a refused rollback preempts nothing.
	prev, err := o.previous(ctx)
	if err != nil {
		return nil, err
	}
	state, err := o.Serving.State(ctx)
	if err != nil {
		return nil, fmt.Errorf("read serving state: %w", err)
	}
	res, plan, err := o.planRollback(prev, state, to, nil)
	if err != nil || o.DryRun {
		if o.DryRun {
			res.Status = prev
		}
		return res, err
	}
	lctx, release, err := o.lease(ctx, "rollback "+plan.base.Name, true)
	if err != nil {
		return res, err
	}
	defer release()
	ctx = lctx
	// A preempted rollout's canary is gone now: plan again on what serves
	// (and on the status as it is now). A canary seen before stays what the
	// rollback is about: it is not a rollback of the stable version.
	if state, err = o.Serving.State(ctx); err != nil {
		return res, fmt.Errorf("read serving state: %w", err)
	}
	if prev, err = o.previous(ctx); err != nil {
		return res, err
	}
	if res, plan, err = o.planRollback(prev, state, to, plan.canary); err != nil {
		return res, err
	}
	return o.doRollback(ctx, res, plan)
}

// rollbackPlan is what Rollback does.
type rollbackPlan struct {
	// base is the served model (name and path), cur the current stable
	// version (serving, else recorded), to the version brought back.
	base    records.ModelRef
	cur, to int64
	canary  *serving.VariantState
	// preempted is the canary a preempted rollout had (already removed).
	preempted *serving.VariantState
	// start: nothing serves, to is started as stable.
	start bool
	prev  records.DeployStatus
}

func (o *Options) planRollback(prev records.DeployStatus, state serving.State, to int64, sawCanary *serving.VariantState) (*Result, *rollbackPlan, error) {
	stable, canary := state.Get(serving.Stable), state.Get(serving.Canary)
	res := &Result{Serving: state, DryRun: o.DryRun}
	p := &rollbackPlan{canary: canary, prev: prev}
	if canary == nil && sawCanary != nil && to == 0 {
		// Removed when the rollout in progress was preempted.
		p.preempted = sawCanary
		p.base = sawCanary.Model
		if stable != nil {
			p.base, p.cur = stable.Model, stable.Model.Version
		}
		res.Plan = append(res.Plan, fmt.Sprintf("abort canary v%d (removed when its rollout was preempted); stable v%d serves 100%%", sawCanary.Model.Version, p.cur))
		return res, p, nil
	}
	if stable != nil {
		p.base, p.cur = stable.Model, stable.Model.Version
	} else {
		p.base.Name = o.Config.Deploy.Model
		if p.base.Name == "" {
			p.base.Name = prev.Model
		}
		p.cur = recordedStable(prev, p.base.Name)
	}
	if p.cur == 0 && canary == nil {
		if prev.Phase == "" {
			return res, nil, &UsageError{Err: fmt.Errorf("nothing serves %s and no deploy status was recorded: there is nothing to roll back", p.base.Name),
				Fix: "deploy a version first with 'branchml-deploy run'"}
		}
		return res, nil, &UsageError{Err: fmt.Errorf("nothing serves %s and the deploy status (%s) records no stable version: there is nothing to roll back", p.base.Name, prev.Phase),
			Fix: "deploy a version with 'branchml-deploy run'"}
	}
	known := ServedVersions(prev.History)
	if p.cur > 0 && !slices.Contains(known, p.cur) {
		known = append(known, p.cur)
		slices.Sort(known)
	}
	if to > 0 && !slices.Contains(known, to) {
		return res, nil, &UsageError{Err: fmt.Errorf("--to %d: v%d never served %s (the deploy history knows %s)", to, to, p.base.Name, versionList(known)),
			Fix: "pass --to with one of the versions the history knows ('branchml-deploy history' lists them)"}
	}
	if to == 0 && canary == nil {
		to = RollbackTarget(prev.History, p.cur)
		if to == 0 {
			return res, nil, &UsageError{Err: fmt.Errorf("no version earlier than v%d in the deploy status history that was not rolled back from", p.cur),
				Fix: "pass --to VERSION to name the version to bring back ('branchml-deploy history' lists them)"}
		}
	}
	p.to = to
	if canary != nil {
		if stable != nil {
			res.Plan = append(res.Plan, fmt.Sprintf("abort canary v%d; stable v%d serves 100%%", canary.Model.Version, p.cur))
		} else {
			res.Plan = append(res.Plan, fmt.Sprintf("abort canary v%d", canary.Model.Version))
		}
	}
	p.start = stable == nil && to > 0 // nothing serves: start to as stable
	switch {
	case p.start && to == p.cur:
		res.Plan = append(res.Plan, fmt.Sprintf("start %s v%d, the recorded stable, at 100%% (nothing serves)", p.base.Name, to))
	case p.start:
		res.Plan = append(res.Plan, fmt.Sprintf("start %s v%d as stable at 100%% (nothing serves; the status records stable v%d)", p.base.Name, to, p.cur))
	case to > 0 && to != p.cur:
		res.Plan = append(res.Plan, fmt.Sprintf("bring back %s v%d at 100%% (replacing v%d)", p.base.Name, to, p.cur))
	}
	return res, p, nil
}

func (o *Options) doRollback(ctx context.Context, res *Result, p *rollbackPlan) (*Result, error) {
	base, cur, to := p.base, p.cur, p.to
	if p.start {
		spec, err := o.spec()
		if err != nil {
			return res, &UsageError{Err: fmt.Errorf("nothing serves, so the model path comes from deploy.yaml: %w", err),
				Fix: "run in the deploy branch's workspace (--workspace) with a valid deploy.yaml"}
		}
		base.Name, base.Path = spec.Model.Name, spec.Model.Path
	}
	by := fmt.Sprintf("pid %d (%s)", os.Getpid(), o.by())
	var events []records.DeployEvent
	ev := func(v int64, w int, kind, msg string, from int64) {
		events = append(events, records.DeployEvent{Time: o.Clock.Now().UTC(), Version: v, Weight: w, Event: kind, Message: msg, From: from, By: by})
	}
	st := records.DeployStatus{APIVersion: records.APIVersion, Kind: "DeployStatus", Model: base.Name, SourceCommit: o.Commit, StableVersion: cur}
	record := func(runErr error) (*Result, error) {
		st.UpdatedAt = o.Clock.Now().UTC()
		wctx := ctx
		if ctx.Err() != nil {
			var cancel context.CancelFunc
			wctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
		}
		if now, err := o.Serving.State(wctx); err == nil {
			res.Serving = now
			if s := now.Get(serving.Stable); s != nil {
				st.StableVersion = s.Model.Version
			}
		}
		written, sha, err := o.write(wctx, st, events, records.ModelRef{Name: st.Model, Version: st.StableVersion})
		res.Status, res.WriteBack = written, sha
		if runErr != nil {
			return res, runErr
		}
		return res, err
	}
	failed := func(v int64, err error) (*Result, error) {
		st.Phase, st.Message = rollout.PhaseFailed, fmt.Sprintf("manual rollback to v%d failed: %v; v%d still serves", v, err, cur)
		if p.start {
			st.Message = fmt.Sprintf("manual rollback to v%d failed: %v; nothing serves", v, err)
		}
		ev(v, 0, rollout.EventFailed, st.Message, 0)
		return record(err)
	}
	if p.canary != nil {
		if err := o.Serving.Abort(ctx); err != nil {
			return res, fmt.Errorf("abort canary v%d: %w", p.canary.Model.Version, err)
		}
		ev(p.canary.Model.Version, 0, rollout.EventRolledBack, "manual rollback: canary aborted", 0)
	}
	if p.preempted != nil {
		ev(p.preempted.Model.Version, 0, rollout.EventRolledBack, "manual rollback: canary aborted (its rollout in progress was preempted)", 0)
	}
	m := base
	m.Version = to
	switch {
	case p.start:
		err := o.Serving.Deploy(ctx, serving.Stable, m)
		if err == nil {
			err = o.Serving.Route(ctx, 0)
		}
		if err != nil {
			return failed(to, fmt.Errorf("start %s v%d: %w", m.Name, to, err))
		}
		st.StableVersion = to
		if to == cur {
			ev(to, 100, rollout.EventRestored, fmt.Sprintf("manual rollback: v%d, the recorded stable, restored (nothing served)", to), 0)
		} else {
			ev(to, 100, rollout.EventRolledBack, fmt.Sprintf("manual rollback from v%d to v%d (nothing served)", cur, to), cur)
		}
	case to > 0 && to != cur:
		err := o.Serving.Deploy(ctx, serving.Canary, m)
		if err == nil {
			err = o.Serving.Route(ctx, 100)
		}
		if err == nil {
			err = o.Serving.Promote(ctx)
		}
		if err != nil {
			_ = o.Serving.Abort(context.WithoutCancel(ctx))
			return failed(to, fmt.Errorf("roll back %s to v%d: %w", m.Name, to, err))
		}
		st.StableVersion = to
		ev(to, 100, rollout.EventRolledBack, fmt.Sprintf("manual rollback from v%d to v%d", cur, to), cur)
	}
	st.Phase = rollout.PhaseRolledBack
	st.Message = fmt.Sprintf("manual rollback: v%d serves at 100%%; revert deploy.yaml too, or the next deploy brings the spec's version back", st.StableVersion)
	return record(nil)
}

// ServedVersions are the versions the history shows serving as stable
// (promoted, restored or brought back by a rollback), ascending.
func ServedVersions(h []records.DeployEvent) []int64 {
	var out []int64
	for _, e := range h {
		served := e.Event == rollout.EventPromoted || e.Event == rollout.EventRestored || (e.Event == rollout.EventRolledBack && e.From > 0)
		if served && e.Version > 0 && !slices.Contains(out, e.Version) {
			out = append(out, e.Version)
		}
	}
	slices.Sort(out)
	return out
}

// RollbackTarget is the version a plain rollback brings back, defined by
// the history h: walking from the newest event, the first version other
// than current that served as stable (promoted, restored, or brought back
// by a rollback) and that was not rolled back from after it served (a
// manual rollback's From, or a canary that was rolled back); 0 when none.
func RollbackTarget(h []records.DeployEvent, current int64) int64 {
	bad := map[int64]bool{}
	for i := len(h) - 1; i >= 0; i-- {
		e := h[i]
		switch {
		case e.Event == rollout.EventRolledBack && e.From > 0:
			bad[e.From] = true
		case e.Event == rollout.EventRolledBack:
			bad[e.Version] = true // a canary rolled back (by analysis or by hand)
			continue
		case e.Event != rollout.EventPromoted && e.Event != rollout.EventRestored:
			continue
		}
		if v := e.Version; v > 0 && v != current && !bad[v] {
			return v
		}
	}
	return 0
}

func versionList(vs []int64) string {
	if len(vs) == 0 {
		return "none"
	}
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = fmt.Sprintf("v%d", v)
	}
	return strings.Join(parts, ", ")
}

// Status reports what serves (from the backend) and the last status written.
func Status(ctx context.Context, o Options) (*Result, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	state, err := o.Serving.State(ctx)
	if err != nil {
		return nil, fmt.Errorf("read serving state: %w", err)
	}
	prev, err := o.previous(ctx)
	if err != nil {
		return nil, err
	}
	return &Result{Serving: state, Status: prev}, nil
}
