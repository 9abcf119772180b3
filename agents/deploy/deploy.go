package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sirupsen/logrus"

	"github.com/branchml/branchml/agents/atomicfile"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/forge"
	"github.com/branchml/branchml/agents/records"
	"github.com/branchml/branchml/agents/rollout"
	"github.com/branchml/branchml/agents/serving"
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
	// Serving is the backend (see agents/serving/factory).
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
	Status records.DeployStatus `json:"status"`
	// Plan lists what was (or, with DryRun, would be) done.
	Plan     []string           `json:"plan"`
	Analyses []rollout.Analysis `json:"analyses,omitempty"`
	AB       *rollout.ABReport  `json:"ab,omitempty"`
	Serving  serving.State      `json:"serving"`
	// WriteBack is the commit SHA of the status write-back ("" when none).
	WriteBack string `json:"writeBack,omitempty"`
}

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

// Run makes the serving side match the deploy spec: nothing when the spec's
// version already serves alone; a direct deploy when nothing serves; else a
// canary rollout (promote, or roll back: ErrRolledBack) or an A/B
// experiment. The status is written back even when the rollout fails.
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
	res := &Result{Serving: state}
	stable, canary := state.Get(serving.Stable), state.Get(serving.Canary)
	want := spec.Model

	st := records.DeployStatus{APIVersion: records.APIVersion, Kind: "DeployStatus", Model: want.Name, SourceCommit: o.Commit, History: prev.History}
	if stable != nil {
		st.StableVersion = stable.Model.Version
	}
	var events []records.DeployEvent
	var runErr error
	switch {
	case canary == nil && stable != nil && stable.Model.Version == want.Version && stable.Model.Path == want.Path:
		res.Plan = append(res.Plan, fmt.Sprintf("nothing to do: %s v%d already serves at 100%%", want.Name, want.Version))
		if prev.Phase == rollout.PhaseSucceeded && prev.StableVersion == want.Version && prev.SourceCommit == o.Commit {
			res.Status = prev
			return res, nil
		}
		st.Phase, st.Message = rollout.PhaseSucceeded, res.Plan[0]
	case o.DryRun:
		if canary != nil {
			res.Plan = append(res.Plan, fmt.Sprintf("abort the leftover canary v%d", canary.Model.Version))
		}
		if stable == nil {
			res.Plan = append(res.Plan, fmt.Sprintf("deploy %s v%d as stable at 100%% (nothing serves yet)", want.Name, want.Version))
		} else if strategy == "canary" {
			res.Plan = append(res.Plan, fmt.Sprintf("canary %s v%d against stable v%d: steps %v every %v, threshold %d", want.Name, want.Version, stable.Model.Version, policy.Steps, policy.Interval, policy.Threshold))
		} else {
			ab := o.Config.Deploy.AB
			res.Plan = append(res.Plan, fmt.Sprintf("A/B %s v%d at %d%% against stable v%d for %v or %d requests", want.Name, want.Version, ab.Weight, stable.Model.Version, ab.Duration.Duration, ab.Requests))
		}
		res.Status = st
		res.Status.Phase = rollout.PhasePending
		return res, nil
	default:
		if canary != nil {
			res.Plan = append(res.Plan, fmt.Sprintf("abort the leftover canary v%d", canary.Model.Version))
			if err := o.Serving.Abort(ctx); err != nil {
				return res, fmt.Errorf("abort leftover canary %s v%d: %w", want.Name, canary.Model.Version, err)
			}
		}
		switch {
		case stable == nil:
			res.Plan = append(res.Plan, fmt.Sprintf("deploy %s v%d as stable at 100%%", want.Name, want.Version))
			runErr = o.Serving.Deploy(ctx, serving.Stable, want)
			if runErr == nil {
				runErr = o.Serving.Route(ctx, 0)
			}
			if runErr == nil {
				st.Phase, st.StableVersion, st.Message = rollout.PhaseSucceeded, want.Version, fmt.Sprintf("v%d deployed (nothing served before)", want.Version)
				events = append(events, records.DeployEvent{Time: o.Clock.Now().UTC(), Version: want.Version, Weight: 100, Event: rollout.EventPromoted, Message: st.Message})
			} else {
				st.Phase, st.Message = rollout.PhaseFailed, runErr.Error()
				events = append(events, records.DeployEvent{Time: o.Clock.Now().UTC(), Version: want.Version, Event: rollout.EventFailed, Message: runErr.Error()})
			}
		case strategy == "canary":
			res.Plan = append(res.Plan, fmt.Sprintf("canary %s v%d against stable v%d", want.Name, want.Version, stable.Model.Version))
			r, err := rollout.New(o.Serving, want, policy, rollout.WithClock(o.Clock), rollout.WithLogger(o.Log))
			if err != nil {
				return res, err
			}
			rs, err := r.Run(ctx)
			runErr = err
			res.Analyses = rs.Analyses
			events = rs.History
			st.Phase, st.Message = rs.Phase, rs.Reason
			st.StableVersion = rs.Stable.Version
			if rs.Phase == rollout.PhaseProgressing || rs.Phase == rollout.PhasePending {
				st.Phase = rollout.PhaseFailed
			}
		default:
			ab := o.Config.Deploy.AB
			res.Plan = append(res.Plan, fmt.Sprintf("A/B %s v%d at %d%% against stable v%d", want.Name, want.Version, ab.Weight, stable.Model.Version))
			rep, err := rollout.RunAB(ctx, o.Serving, want, rollout.ABPolicy{Weight: ab.Weight, Duration: ab.Duration.Duration, Requests: ab.Requests, Interval: policy.Interval, Bounds: policy},
				rollout.WithClock(o.Clock), rollout.WithLogger(o.Log))
			runErr = err
			res.AB = &rep
			events = rep.History
			if err == nil {
				st.Phase = rollout.PhaseSucceeded
				st.Message = fmt.Sprintf("A/B finished: %s (candidate v%d success %.2f%% p99 %.2fms; stable v%d success %.2f%% p99 %.2fms); merge a canary deploy.yaml to promote",
					rep.Verdict, want.Version, rep.CandidateAnalysis.SuccessRate, rep.CandidateAnalysis.P99Millis, rep.Stable.Version, rep.StableAnalysis.SuccessRate, rep.StableAnalysis.P99Millis)
			} else {
				st.Phase, st.Message = rollout.PhaseFailed, err.Error()
			}
		}
	}
	st.History = appendHistory(st.History, events)
	st.UpdatedAt = o.Clock.Now().UTC()
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
// current stable, from the status history) at 100% without analysis.
func Rollback(ctx context.Context, o Options, to int64) (*Result, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	state, err := o.Serving.State(ctx)
	if err != nil {
		return nil, fmt.Errorf("read serving state: %w", err)
	}
	prev := o.previous(ctx)
	stable, canary := state.Get(serving.Stable), state.Get(serving.Canary)
	res := &Result{Serving: state}
	if stable == nil {
		return res, &SpecError{Path: "serving", Err: errors.New("nothing serves: there is nothing to roll back")}
	}
	st := records.DeployStatus{APIVersion: records.APIVersion, Kind: "DeployStatus", Model: stable.Model.Name, SourceCommit: o.Commit, StableVersion: stable.Model.Version, History: prev.History}
	var events []records.DeployEvent
	ev := func(v int64, w int, kind, msg string) {
		events = append(events, records.DeployEvent{Time: o.Clock.Now().UTC(), Version: v, Weight: w, Event: kind, Message: msg})
	}
	if to == 0 && canary == nil {
		to = previousVersion(prev.History, stable.Model.Version)
		if to == 0 {
			return res, &SpecError{Path: records.DeployStatusPath, Err: fmt.Errorf("no earlier version than v%d in the history: pass --to VERSION", stable.Model.Version)}
		}
	}
	if canary != nil {
		res.Plan = append(res.Plan, fmt.Sprintf("abort canary v%d; stable v%d serves 100%%", canary.Model.Version, stable.Model.Version))
	}
	if to > 0 && to != stable.Model.Version {
		res.Plan = append(res.Plan, fmt.Sprintf("bring back %s v%d at 100%% (replacing v%d)", stable.Model.Name, to, stable.Model.Version))
	}
	if o.DryRun {
		res.Status = st
		return res, nil
	}
	if canary != nil {
		if err := o.Serving.Abort(ctx); err != nil {
			return res, fmt.Errorf("abort canary v%d: %w", canary.Model.Version, err)
		}
		ev(canary.Model.Version, 0, rollout.EventRolledBack, "manual rollback: canary aborted")
	}
	if to > 0 && to != stable.Model.Version {
		m := stable.Model
		m.Version = to
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
		ev(to, 100, rollout.EventRolledBack, fmt.Sprintf("manual rollback from v%d to v%d", stable.Model.Version, to))
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
