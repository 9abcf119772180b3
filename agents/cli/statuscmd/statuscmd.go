package statuscmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/backends/forge/forgefactory"
	"github.com/branchml/branchml/agents/backends/serving"
	"github.com/branchml/branchml/agents/backends/serving/local"
	"github.com/branchml/branchml/agents/backends/serving/servingfactory"
	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/records"
	"github.com/branchml/branchml/agents/stages/deploy"
	"github.com/branchml/branchml/agents/stages/snapshot/lineage"
)

// Stage is one stage's last record.
type Stage struct {
	Stage  string `json:"stage"`
	Branch string `json:"branch"`
	// Record is the file read ("" when the stage wrote none yet).
	Record string `json:"record,omitempty"`
	// SourceCommit is the commit the stage last ran for.
	SourceCommit string `json:"sourceCommit,omitempty"`
	// Summary is the record in a line.
	Summary string `json:"summary"`
}

// Served is one variant that serves, with where its model came from.
type Served struct {
	serving.VariantState
	Weight int `json:"weight"`
	// Lineage is the lineage record of the served model version (nil when
	// none names it).
	Lineage *lineage.Record `json:"lineage,omitempty"`
}

// Status is the whole screen.
type Status struct {
	Project string  `json:"project"`
	Model   string  `json:"model"`
	Stages  []Stage `json:"stages"`
	// Serving is what serves now; Plane the local serving plane's owner.
	Serving serving.State        `json:"serving"`
	Plane   string               `json:"plane,omitempty"`
	Served  []Served             `json:"served"`
	Deploy  records.DeployStatus `json:"deploy,omitzero"`
	// Pipeline is the pipeline version of the pipeline branch.
	Pipeline records.PipelineLock `json:"pipeline,omitzero"`
}

// Command is `branchml status`.
func Command() *ucli.Command {
	return cli.Command(cli.Spec{
		Name: "status", Usage: "one screen: each stage's last result, and what serves at which weight since when, from which commit, run, snapshots and pipeline version",
		Description: "Reads the records the stages wrote back to their branches (through backends.forge) and what serves\n" +
			"(the local serving plane, or backends.serving), and starts nothing. A record that does not parse is an\n" +
			"error naming it, never skipped.",
		Stage: "status", NeedsConfig: true, BuildFlags: true,
		Flags: []ucli.Flag{&ucli.StringFlag{Name: "state-dir", Usage: "local backend state `DIR` (default backends.stateDir)"}},
		Run: func(e *cli.Env) (*agent.Result, error) {
			f, err := forgefactory.New(e.Config, forgefactory.WithLogger(e.Log))
			if err != nil {
				return nil, agent.Usage("open the forge", err, "check backends.forge in branchml.yaml")
			}
			dir := e.CLI.String("state-dir")
			if dir == "" {
				dir = servingfactory.StateDir(e.Config)
			}
			st, err := Read(e.Ctx, e.Config, f, dir)
			if err != nil {
				return nil, err
			}
			res := &agent.Result{Summary: st.Text(), Outputs: st}
			if e.Output != "json" && e.CLI.String("result") == "" {
				res.Outputs = struct{}{}
			}
			return res, nil
		},
	})
}

// CorruptError is a record on a branch that does not parse.
type CorruptError struct {
	Branch, Path string
	Err          error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("%s on branch %s is corrupted: %v", e.Path, e.Branch, e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// read reads path on branch into v; false when the file does not exist.
func read(ctx context.Context, f forge.Forge, branch, p string, v any) (bool, error) {
	raw, err := f.ReadFile(ctx, branch, p)
	if errors.Is(err, forge.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, agent.Failed("read "+p+" on "+branch, err, "check backends.forge; a temporary failure: run again")
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return false, agent.Usage("read "+p, &CorruptError{Branch: branch, Path: p, Err: err},
			fmt.Sprintf("restore it from %s's history (git log -p %s -- %s), then run again", branch, branch, p))
	}
	return true, nil
}

// Read gathers the status of cfg's repository: the records on the stage
// branches through f, and what serves (local: the plane of stateDir).
func Read(ctx context.Context, cfg *config.Config, f forge.Forge, stateDir string) (*Status, error) {
	st := &Status{Project: cfg.Project, Model: cfg.Deploy.Model}
	br := func(k string) string { return cfg.Branches[k] }
	// build
	var cl records.ComponentsLock
	s := Stage{Stage: config.StageBuild, Branch: br(config.StageBuild), Summary: "no components lock yet"}
	if ok, err := read(ctx, f, s.Branch, records.ComponentsLockPath, &cl); err != nil {
		return nil, err
	} else if ok {
		s.Record, s.SourceCommit = records.ComponentsLockPath, cl.SourceCommit
		s.Summary = fmt.Sprintf("%d components pushed to %s", len(cl.Components), cl.Registry)
	}
	st.Stages = append(st.Stages, s)
	// pipeline
	s = Stage{Stage: config.StagePipeline, Branch: br(config.StagePipeline), Summary: "no pipeline version yet"}
	if ok, err := read(ctx, f, s.Branch, records.PipelineLockPath, &st.Pipeline); err != nil {
		return nil, err
	} else if ok {
		p := st.Pipeline
		s.Record, s.SourceCommit = records.PipelineLockPath, p.SourceCommit
		s.Summary = fmt.Sprintf("%s version %s (%s) on %s", p.PipelineName, p.VersionName, p.VersionID, p.Backend)
	}
	st.Stages = append(st.Stages, s)
	// train
	var run records.RunRecord
	s = Stage{Stage: config.StageTrain, Branch: br(config.StageTrain), Summary: "no training run yet"}
	if ok, err := read(ctx, f, s.Branch, records.TrainingLockPath, &run); err != nil {
		return nil, err
	} else if ok {
		s.Record, s.SourceCommit = records.TrainingLockPath, run.SourceCommit
		s.Summary = fmt.Sprintf("run %s %s", run.RunID, run.State)
		if run.Model != nil {
			s.Summary += fmt.Sprintf(", model %s v%d", run.Model.Name, run.Model.Version)
		}
		if run.Gate != "" {
			s.Summary += ", KPI gate " + run.Gate
		}
		if pr := run.PullRequest; pr != "" {
			if strings.HasPrefix(pr, "file://") { // the local forge's record: <meta>/pulls/<n>.json
				pr = "#" + strings.TrimSuffix(path.Base(pr), ".json")
			}
			s.Summary += ", pull request " + pr
		}
	}
	st.Stages = append(st.Stages, s)
	// deploy
	s = Stage{Stage: config.StageDeploy, Branch: br(config.StageDeploy), Summary: "not deployed yet"}
	if ok, err := read(ctx, f, s.Branch, records.DeployStatusPath, &st.Deploy); err != nil {
		return nil, err
	} else if ok {
		d := st.Deploy
		s.Record, s.SourceCommit = records.DeployStatusPath, d.SourceCommit
		s.Summary = fmt.Sprintf("%s, stable v%d", d.Phase, d.StableVersion)
		if d.CanaryVersion > 0 {
			s.Summary += fmt.Sprintf(", canary v%d at %d%%", d.CanaryVersion, d.CanaryWeight)
		}
		if !d.UpdatedAt.IsZero() {
			s.Summary += ", updated " + d.UpdatedAt.UTC().Format(time.RFC3339)
		}
	}
	st.Stages = append(st.Stages, s)
	// What serves.
	if t := cfg.Backends.Serving.Type; t == "" || t == local.Name {
		sv, err := local.ReadState(ctx, stateDir, cfg.Deploy.Model)
		if err != nil {
			return nil, agent.Usage("read the local serving state", err, "see the message: the file named is corrupted")
		}
		st.Serving = sv
		if owner, _, ok := local.PlaneOwner(stateDir, cfg.Deploy.Model); ok {
			st.Plane = owner.String()
		}
	} else {
		b, closeB, err := servingfactory.New(ctx, cfg, servingfactory.Options{StateDir: stateDir})
		if err != nil {
			return nil, agent.Usage("open the serving backend", err, "check backends.serving")
		}
		defer closeB(context.WithoutCancel(ctx))
		if st.Serving, err = b.State(ctx); err != nil {
			return nil, agent.Failed("read what serves", err, "a temporary failure: run again")
		}
	}
	lins, err := lineage.LoadBranch(ctx, f, br(config.StageTrain))
	var re *lineage.RecordError
	switch {
	case errors.As(err, &re):
		return nil, agent.Usage("read the lineage records", err, fmt.Sprintf("restore it from %s's history (git log -p %s -- %s)", br(config.StageTrain), br(config.StageTrain), records.LineageDir))
	case err != nil:
		return nil, agent.Failed("read the lineage records", err, "check backends.forge; a temporary failure: run again")
	}
	st.Served = []Served{}
	for _, v := range []serving.Variant{serving.Stable, serving.Canary} {
		vs := st.Serving.Get(v)
		if vs == nil {
			continue
		}
		sd := Served{VariantState: *vs, Weight: deploy.Weight(st.Serving, v), Lineage: lineage.ForModel(lins, vs.Model.Name, vs.Model.Version)}
		st.Served = append(st.Served, sd)
	}
	if st.Serving.Variants == nil {
		st.Serving.Variants = []serving.VariantState{}
	}
	return st, nil
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// Text is the status on one screen.
func (st *Status) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: model %s\n", st.Project, st.Model)
	b.WriteString("stages (the last record each wrote back):\n")
	for _, s := range st.Stages {
		line := fmt.Sprintf("  %-9s %-17s %s", s.Stage, s.Branch, s.Summary)
		if s.SourceCommit != "" {
			line += ", for commit " + short(s.SourceCommit)
		}
		b.WriteString(line + "\n")
	}
	if len(st.Served) == 0 {
		b.WriteString("serving: nothing")
		if st.Deploy.StableVersion > 0 {
			fmt.Fprintf(&b, " (the deploy status records stable v%d; 'branchml-deploy run' restores it)", st.Deploy.StableVersion)
		}
		b.WriteString("\n")
	} else {
		where := []string{st.Serving.Backend}
		if st.Serving.Endpoint != "" {
			where = append(where, st.Serving.Endpoint)
		}
		if st.Plane != "" {
			where = append(where, "plane "+st.Plane)
		}
		fmt.Fprintf(&b, "serving (%s):\n", strings.Join(where, ", "))
	}
	for _, s := range st.Served {
		line := fmt.Sprintf("  %-6s %s v%d at %d%%", s.Variant, s.Model.Name, s.Model.Version, s.Weight)
		if !s.Since.IsZero() {
			line += " since " + s.Since.UTC().Format(time.RFC3339)
		}
		if s.PID > 0 {
			line += fmt.Sprintf(" (pid %d)", s.PID)
		}
		b.WriteString(line + "\n")
		l := s.Lineage
		if l == nil {
			b.WriteString("         lineage: none recorded for this version\n")
			continue
		}
		from := "from training commit " + short(l.Source.Commit)
		if pr := l.PullRequest; pr != nil {
			approved := "approved by " + strings.Join(pr.Approvers, ", ")
			if len(pr.Approvers) == 0 {
				approved = "not approved"
			}
			from += fmt.Sprintf(" (pull request #%d by %s, %s, merged by %s)", pr.Number, orDash(pr.Author), approved, orDash(pr.MergedBy))
		}
		fmt.Fprintf(&b, "         %s\n", from)
		fmt.Fprintf(&b, "         run %s of pipeline version %s (%s)\n", l.Run.ID, orDash(l.Pipeline.VersionName), l.Pipeline.VersionID)
		fmt.Fprintf(&b, "         data snapshot %s, model snapshot %s (lineage %s)\n", l.Data.Snapshot, l.Model.Snapshot.Snapshot, l.ID)
	}
	for _, o := range st.Serving.Orphans {
		fmt.Fprintf(&b, "  orphan %s v%d (pid %d): runs but nothing routes to it; the next serving plane stops it\n", o.Model.Name, o.Model.Version, o.PID)
	}
	if m := st.Deploy.Message; m != "" {
		fmt.Fprintf(&b, "last deploy: %s: %s\n", st.Deploy.Phase, m)
	}
	return strings.TrimRight(b.String(), "\n")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
