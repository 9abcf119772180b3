package quickstart

import (
	"context"

	"github.com/branchml/branchml/agents/stage/build"
	"github.com/branchml/branchml/agents/stage/pipeline"
	"github.com/branchml/branchml/agents/stage/train"
)

// flow is the seed's flow as merges: ds1 → build-components → kf-pipeline →
// training → (PR) → deploy-model.
func (r *run) flow(ctx context.Context) error {
	if _, err := r.stage(ctx, "build", stageCall{agent: "branchml-build", app: build.App, from: "ds1", branch: "build-components"}, nil); err != nil {
		return err
	}
	if _, err := r.stage(ctx, "pipeline", stageCall{agent: "branchml-pipeline", app: pipeline.App, from: "build-components", branch: "kf-pipeline"}, nil); err != nil {
		return err
	}
	extra := map[string]any{}
	if r.opt.Rerun {
		extra["rerun"] = true
	}
	if _, err := r.stage(ctx, "train", stageCall{agent: "branchml-train", app: train.App, from: "kf-pipeline", branch: "training"}, extra); err != nil {
		return err
	}
	return nil
}
