package train

import (
	"context"
	"errors"

	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/stages/train/kpi"
)

// decide evaluates the KPIs: point checks on the run's metrics, KPIs with
// confidence on the predictions artifact of the run (training.gate) and of
// the champion, the run that made the model serving on the deploy branch.
// A predictions artifact that is missing or malformed fails the stage (exit
// 1): the gate cannot decide, so nothing is promoted.
func (s *stage) decide(ctx context.Context) (kpi.Result, error) {
	kpis := s.cfg.Training.KPIs
	in := kpi.Input{Gate: s.cfg.Training.Gate, KPIs: kpis, Metrics: s.res.Metrics}
	if kpi.HasConfidenceKPIs(kpis) {
		p, err := s.predictions(ctx, s.res.RunID, "predictions of run "+s.res.RunID)
		if err != nil {
			return kpi.Result{}, err
		}
		in.Predictions = p
	}
	if kpi.NeedsChampion(kpis) {
		deploy := s.cfg.Branches[config.StageDeploy]
		ref, why, err := (*kpi.ChampionRef)(nil), "no champion: branches.deploy is not set", error(nil)
		if deploy != "" {
			ref, why, err = kpi.FindChampion(ctx, s.o.Forge, deploy, s.cfg.Deploy.Model)
		}
		switch {
		case errors.Is(err, kpi.ErrChampionUnknown):
			return kpi.Result{}, agent.Failed("find the champion on "+deploy, err, "revert deploy.yaml on "+deploy+" to the serving version (or let the deploy stage finish), then run the stage again")
		case err != nil:
			return kpi.Result{}, agent.Failed("find the champion on "+deploy, err, "check the forge (backends.forge) and its credentials")
		case ref == nil:
			in.NoChampion = why
		case ref.RunID == s.res.RunID:
			in.NoChampion = "this run made the champion " + ref.Short()
		default:
			p, err := s.predictions(ctx, ref.RunID, "champion's predictions (run "+ref.RunID+")")
			if err != nil {
				return kpi.Result{}, err
			}
			in.Champion = &kpi.Champion{Ref: *ref, Predictions: p}
		}
	}
	res, err := kpi.Decide(in)
	if err != nil {
		return kpi.Result{}, agent.Failed("evaluate the KPIs of run "+s.res.RunID, err, "fix the predictions the pipeline writes, or training.gate and training.kpis in branchml.yaml")
	}
	return res, nil
}

// predictions fetches and parses the gate split's predictions artifact of
// run id.
func (s *stage) predictions(ctx context.Context, id, what string) (*kpi.Predictions, error) {
	ref := s.cfg.Training.Gate.Predictions
	raw, err := s.o.Pipelines.Artifact(ctx, id, ref.Task, ref.Artifact, ref.File)
	if err != nil {
		return nil, agent.Failed("read the "+what, err, "the pipeline's task "+ref.Task+" must write output artifact "+ref.Artifact+" (training.gate.predictions)")
	}
	p, err := kpi.ParsePredictions(what, raw, s.cfg.Training.Gate.Split)
	if err != nil {
		return nil, agent.Failed("read the "+what, err, "fix what task "+ref.Task+" writes to "+ref.Artifact)
	}
	return p, nil
}
