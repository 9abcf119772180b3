package train

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/records"
	"github.com/branchml/branchml/agents/stages/train/kpi"
)

// snapshot calls the snapshot stage hook and records the lineage ID.
func (s *stage) snapshot(ctx context.Context) error {
	if !s.cfg.Snapshot.Enabled {
		s.log().Infof("snapshots are off (snapshot.enabled: false)")
		return nil
	}
	if s.o.Snapshotter == nil {
		s.log().Warnf("snapshot.enabled is true but no snapshot stage is wired; volumes not snapshotted")
		return nil
	}
	if s.res.Reused && s.rec.LineageID != "" {
		// The lineage is written after the snapshots are ready, and the record
		// names it only after that: this run is snapshotted already.
		s.res.LineageID = s.rec.LineageID
		s.log().Infof("run %s is snapshotted already: lineage %s", s.res.RunID, s.rec.LineageID)
		return nil
	}
	// The run's own commit (and build), also for a reused run: the lineage ID
	// is derived from commit and run, so it is the same ID on every attempt.
	buildURL := s.rec.BuildURL
	if buildURL == "" {
		buildURL = s.o.BuildURL
	}
	out, err := s.o.Snapshotter.Snapshot(ctx, SnapshotRequest{Config: s.cfg, Record: s.rec, DataVolume: s.res.DataVolume,
		ModelVolume: s.res.ModelVolume, SourceCommit: s.sourceCommit(), BuildURL: buildURL})
	if err != nil {
		var ce *agent.Error
		if errors.As(err, &ce) {
			return err
		}
		return agent.Failed("snapshot the volumes of run "+s.res.RunID, err, "check backends.storage and snapshot.class; rerun the stage to retry (the run is reused)")
	}
	if out != nil && out.LineageID != "" {
		s.res.LineageID, s.rec.LineageID = out.LineageID, out.LineageID
		s.log().Infof("lineage %s recorded", out.LineageID)
	}
	return nil
}

// gateAndPromote evaluates the KPIs, opens or updates the promotion pull
// request when they pass, and writes the record back with the verdict.
func (s *stage) gateAndPromote(ctx context.Context) error {
	g, err := s.decide(ctx)
	if err != nil {
		return err
	}
	s.res.Gate = &g
	s.rec.Gate, s.rec.GateReasons = g.Verdict, g.Reasons
	for _, line := range strings.Split(strings.TrimRight(g.Text(), "\n"), "\n") {
		s.log().Infof("KPI gate | %s", line)
	}
	for _, r := range g.Reasons {
		s.log().Warnf("KPI not met: %s", r)
	}
	var gateErr error
	if g.Verdict != kpi.Passed {
		gateErr = agent.Gate("KPI gate of run "+s.res.RunID, errors.New(strings.Join(g.Reasons, "; ")),
			"improve the model or the data, or adjust training.kpis; no pull request into the deploy branch was opened")
	} else if err := s.promote(ctx); err != nil {
		return err
	}
	if err := s.writeRecord(ctx); err != nil {
		return err
	}
	return gateErr
}

// PromoteBranch is the head branch of a model version's promotion PR.
func PromoteBranch(model string, version int64) string {
	return fmt.Sprintf("branchml/promote-%s-v%d", model, version)
}

func (s *stage) promote(ctx context.Context) error {
	deploy := s.cfg.Branches[config.StageDeploy]
	if deploy == "" {
		s.log().Warnf("branches.deploy is not set: no promotion pull request")
		return nil
	}
	m := s.res.Model
	if m == nil {
		return agent.Failed("promote run "+s.res.RunID, errors.New("the run record has no model reference"), "rerun with --rerun")
	}
	// A run whose promotion was merged already is not proposed again: the
	// deploy branch's deploy.yaml names it.
	if raw, err := s.o.Forge.ReadFile(ctx, deploy, records.DeploySpecPath); err == nil {
		var cur records.DeploySpec
		if yaml.Unmarshal(raw, &cur) == nil && cur.RunID == s.res.RunID {
			s.log().Infof("run %s is already promoted: %s on %s deploys %s v%d", s.res.RunID, records.DeploySpecPath, deploy, m.Name, m.Version)
			return nil
		}
	} else if !errors.Is(err, forge.ErrNotFound) {
		return agent.Failed("read "+records.DeploySpecPath+" on "+deploy, err, "check the forge (backends.forge) and its credentials")
	}
	spec := records.DeploySpec{APIVersion: records.APIVersion, Kind: "DeploySpec", Model: *m, LineageID: s.res.LineageID, RunID: s.res.RunID, SourceCommit: s.sourceCommit()}
	y, err := yaml.Marshal(spec)
	if err != nil {
		return agent.Failed("promote run "+s.res.RunID, err, "")
	}
	head := PromoteBranch(m.Name, m.Version)
	files := map[string][]byte{records.DeploySpecPath: y}
	// The configuration travels with the model: the deploy stage reads its
	// canary policy and backends from branchml.yaml as trained, so the
	// deploy branch need not have been merged from the others.
	if s.o.Config != nil && s.o.Config.File != "" {
		cfg, err := os.ReadFile(s.o.Config.File)
		if err != nil {
			return agent.Failed("promote run "+s.res.RunID, err, "")
		}
		files[filepath.Base(s.o.Config.File)] = cfg
	}
	if _, err := s.o.Forge.WriteBack(ctx, forge.WriteBack{Branch: head, From: deploy, Files: files,
		Message: fmt.Sprintf("branchml promote: %s v%d for %s", m.Name, m.Version, short(s.sourceCommit()))}); err != nil {
		return agent.Failed("write "+records.DeploySpecPath+" to "+head, err, "check the forge (backends.forge) and its credentials")
	}
	pr, err := s.o.Forge.EnsurePullRequest(ctx, forge.PullRequest{Head: head, Base: deploy,
		Title: fmt.Sprintf("Promote %s v%d (run %s)", m.Name, m.Version, s.res.DisplayName), Body: s.prBody()})
	if err != nil {
		return agent.Failed("open the promotion pull request "+head+" → "+deploy, err, "check the forge (backends.forge) and its credentials")
	}
	s.res.PullRequest = pr
	s.rec.PullRequest = pr.URL
	if s.rec.PullRequest == "" {
		s.rec.PullRequest = fmt.Sprintf("#%d", pr.Number)
	}
	s.log().Infof("pull request %s: %s → %s %s", s.rec.PullRequest, head, deploy, pr.URL)
	return nil
}

// prBody is the promotion PR's body: what is promoted, the metrics table,
// the KPI checks and the lineage ID. It is deterministic (the run's commit
// and build, not this one's), so updating the PR for the same run changes
// nothing.
func (s *stage) prBody() string {
	m := s.res.Model
	var b strings.Builder
	fmt.Fprintf(&b, "Promote model **%s** version **%d** to `%s`.\n\n", m.Name, m.Version, s.cfg.Branches[config.StageDeploy])
	fmt.Fprintf(&b, "- training commit: `%s`\n- run: `%s` (%s)\n", s.sourceCommit(), s.res.RunID, s.res.DisplayName)
	lineage := s.res.LineageID
	if lineage == "" {
		lineage = "none (snapshots off)"
	}
	fmt.Fprintf(&b, "- lineage ID: `%s`\n", lineage)
	fmt.Fprintf(&b, "- model: volume `%s`, base path `%s`, version `%d`\n", m.Volume, m.Path, m.Version)
	if u := s.rec.BuildURL; u != "" {
		fmt.Fprintf(&b, "- build: %s\n", u)
	} else if s.o.BuildURL != "" {
		fmt.Fprintf(&b, "- build: %s\n", s.o.BuildURL)
	}
	b.WriteString("\n### Metrics\n\n")
	b.WriteString(kpi.Table(s.res.Metrics))
	b.WriteString("\n### KPI gate: passed\n\n")
	b.WriteString("Each KPI: the model's value, the baseline's or champion's on the same examples, the improvement (positive is better) with its confidence interval, and the margin its lower bound must clear.\n\n")
	b.WriteString(s.res.Gate.Markdown())
	b.WriteString("\nMerging this pull request deploys the model with the deploy stage; reverting it redeploys the earlier version.\n")
	return b.String()
}
