package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/backends/serving"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/atomicfile"
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

// previous returns the status last written back ("" phase when none).
func (o *Options) previous(ctx context.Context) records.DeployStatus {
	var st records.DeployStatus
	if o.Forge != nil {
		if raw, err := o.Forge.ReadFile(ctx, o.branch(), records.DeployStatusPath); err == nil {
			if json.Unmarshal(raw, &st) == nil {
				return st
			}
		} else if !errors.Is(err, forge.ErrNotFound) {
			o.Log.Warnf("read previous deploy status: %v", err)
		}
	}
	if o.StatusFile != "" {
		if raw, err := os.ReadFile(o.StatusFile); err == nil {
			_ = json.Unmarshal(raw, &st)
		}
	}
	return st
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
	state, err := o.Serving.State(ctx)
	if err != nil {
		return nil, fmt.Errorf("read serving state of %s: %w", spec.Model.Name, err)
	}
	prev := o.previous(ctx)
	res := &Result{Serving: state, DryRun: o.DryRun}
	stable, canary := state.Get(serving.Stable), state.Get(serving.Canary)
	want := spec.Model
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

	st := records.DeployStatus{APIVersion: records.APIVersion, Kind: "DeployStatus", Model: want.Name, SourceCommit: o.Commit, History: prev.History, StableVersion: stableVersion()}
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
		res.Plan = append(res.Plan, fmt.Sprintf("canary %s v%d against stable v%d: steps %v every %v, threshold %d", want.Name, want.Version, sv, policy.Steps, policy.Interval, policy.Threshold))
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
func (o *Options) finish(ctx context.Context, res *Result, st records.DeployStatus, events []records.DeployEvent, runErr error, want records.ModelRef) (*Result, error) {
	if cause := ctx.Err(); cause != nil {
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
	st.History = appendHistory(st.History, events)
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
	res.Status = st
	sha, werr := o.write(ctx, st, want)
	res.WriteBack = sha
	if werr != nil {
		o.Log.Errorf("record the deploy status: %v", werr)
	}
	if runErr != nil {
		return res, runErr
	}
	return res, werr
}

func appendHistory(h, ev []records.DeployEvent) []records.DeployEvent {
	out := append(append([]records.DeployEvent(nil), h...), ev...)
	if len(out) > MaxHistory {
		out = out[len(out)-MaxHistory:]
	}
	return out
}

// write stores the status in StatusFile and writes it back to the deploy branch.
func (o *Options) write(ctx context.Context, st records.DeployStatus, m records.ModelRef) (string, error) {
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
// brings back version to (default: the version that served before the
// current stable, from the status history) at 100% without analysis. When
// nothing serves, the recorded status says what the current stable is and
// to is started as stable (its path from deploy.yaml). With DryRun it only
// plans, from the recorded status.
func Rollback(ctx context.Context, o Options, to int64) (*Result, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if to < 0 {
		return nil, &UsageError{Err: fmt.Errorf("--to %d: a model version is a positive integer", to),
			Fix: "pass --to VERSION (e.g. --to 1), or leave --to out to bring back the version before the current stable"}
	}
	state, err := o.Serving.State(ctx)
	if err != nil {
		return nil, fmt.Errorf("read serving state: %w", err)
	}
	prev := o.previous(ctx)
	stable, canary := state.Get(serving.Stable), state.Get(serving.Canary)
	res := &Result{Serving: state, DryRun: o.DryRun}
	// base is the served model (name and path); cur the current stable
	// version: serving, else recorded.
	var base records.ModelRef
	var cur int64
	if stable != nil {
		base, cur = stable.Model, stable.Model.Version
	} else {
		base.Name = o.Config.Deploy.Model
		if base.Name == "" {
			base.Name = prev.Model
		}
		cur = recordedStable(prev, base.Name)
	}
	if cur == 0 && canary == nil {
		if prev.Phase == "" {
			return res, &UsageError{Err: fmt.Errorf("nothing serves %s and no deploy status was recorded: there is nothing to roll back", base.Name),
				Fix: "deploy a version first with 'branchml-deploy run'"}
		}
		return res, &UsageError{Err: fmt.Errorf("nothing serves %s and the deploy status (%s) records no stable version: there is nothing to roll back", base.Name, prev.Phase),
			Fix: "deploy a version with 'branchml-deploy run'"}
	}
	if to == 0 && canary == nil {
		to = previousVersion(prev.History, cur)
		if to == 0 {
			return res, &UsageError{Err: fmt.Errorf("no version earlier than v%d in the deploy status history", cur),
				Fix: "pass --to VERSION to name the version to bring back"}
		}
	}
	st := records.DeployStatus{APIVersion: records.APIVersion, Kind: "DeployStatus", Model: base.Name, SourceCommit: o.Commit, StableVersion: cur, History: prev.History}
	if canary != nil {
		if stable != nil {
			res.Plan = append(res.Plan, fmt.Sprintf("abort canary v%d; stable v%d serves 100%%", canary.Model.Version, cur))
		} else {
			res.Plan = append(res.Plan, fmt.Sprintf("abort canary v%d", canary.Model.Version))
		}
	}
	start := stable == nil && to > 0 // nothing serves: start to as stable
	switch {
	case start && to == cur:
		res.Plan = append(res.Plan, fmt.Sprintf("start %s v%d, the recorded stable, at 100%% (nothing serves)", base.Name, to))
	case start:
		res.Plan = append(res.Plan, fmt.Sprintf("start %s v%d as stable at 100%% (nothing serves; the status records stable v%d)", base.Name, to, cur))
	case to > 0 && to != cur:
		res.Plan = append(res.Plan, fmt.Sprintf("bring back %s v%d at 100%% (replacing v%d)", base.Name, to, cur))
	}
	if o.DryRun {
		res.Status = prev
		return res, nil
	}
	if start {
		spec, err := o.spec()
		if err != nil {
			return res, &UsageError{Err: fmt.Errorf("nothing serves, so the model path comes from deploy.yaml: %w", err),
				Fix: "run in the deploy branch's workspace (--workspace) with a valid deploy.yaml"}
		}
		base.Name, base.Path = spec.Model.Name, spec.Model.Path
	}
	var events []records.DeployEvent
	ev := func(v int64, w int, kind, msg string) {
		events = append(events, records.DeployEvent{Time: o.Clock.Now().UTC(), Version: v, Weight: w, Event: kind, Message: msg})
	}
	if canary != nil {
		if err := o.Serving.Abort(ctx); err != nil {
			return res, fmt.Errorf("abort canary v%d: %w", canary.Model.Version, err)
		}
		ev(canary.Model.Version, 0, rollout.EventRolledBack, "manual rollback: canary aborted")
	}
	m := base
	m.Version = to
	switch {
	case start:
		err := o.Serving.Deploy(ctx, serving.Stable, m)
		if err == nil {
			err = o.Serving.Route(ctx, 0)
		}
		if err != nil {
			return res, fmt.Errorf("start %s v%d: %w", m.Name, to, err)
		}
		st.StableVersion = to
		if to == cur {
			ev(to, 100, rollout.EventRestored, fmt.Sprintf("manual rollback: v%d, the recorded stable, restored (nothing served)", to))
		} else {
			ev(to, 100, rollout.EventRolledBack, fmt.Sprintf("manual rollback from v%d to v%d (nothing served)", cur, to))
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
			return res, fmt.Errorf("roll back %s to v%d: %w", m.Name, to, err)
		}
		st.StableVersion = to
		ev(to, 100, rollout.EventRolledBack, fmt.Sprintf("manual rollback from v%d to v%d", cur, to))
	}
	st.Phase = rollout.PhaseRolledBack
	st.Message = fmt.Sprintf("manual rollback: v%d serves at 100%%; revert deploy.yaml too, or the next deploy brings the spec's version back", st.StableVersion)
	st.History = appendHistory(st.History, events)
	st.UpdatedAt = o.Clock.Now().UTC()
	res.Status = st
	if now, err := o.Serving.State(ctx); err == nil {
		res.Serving = now
	}
	sha, err := o.write(ctx, st, records.ModelRef{Name: st.Model, Version: st.StableVersion})
	res.WriteBack = sha
	return res, err
}

// previousVersion is the newest promoted version in h other than current.
func previousVersion(h []records.DeployEvent, current int64) int64 {
	for i := len(h) - 1; i >= 0; i-- {
		if h[i].Event == rollout.EventPromoted && h[i].Version != current && h[i].Version > 0 {
			return h[i].Version
		}
	}
	return 0
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
	return &Result{Serving: state, Status: o.previous(ctx)}, nil
}
