package pipelinecmd

import (
	ucli "github.com/urfave/cli/v2"

	"github.com/branchml/branchml/agents/backends/forge/forgefactory"
	"github.com/branchml/branchml/agents/backends/pipelines/local/runner"
	"github.com/branchml/branchml/agents/backends/pipelines/pipelinesfactory"
	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/cli/commitstatus"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/stages/pipeline"
)

// App returns the branchml-pipeline application.
func App() *ucli.App {
	return cli.NewApp("branchml-pipeline", "the pipeline stage of branchml", cli.Command(cli.Spec{
		Name: "run", Usage: "compose, validate and upload the pipeline; write the pipeline lock back", Stage: "pipeline",
		NeedsConfig: true, BuildFlags: true,
		Description: "Reads pipeline.spec, pins its images to the components lock of the build branch, sets pipeline.resources, " +
			"validates it and uploads a pipeline version unless one with the same content hash exists; writes " +
			".branchml/pipeline.lock.json and .branchml/pipeline.composed.yaml to the pipeline branch. " +
			"With --dry-run it prints the diff against the newest version and changes nothing. " +
			"The KFP token comes from KFP_TOKEN or KFP_TOKEN_FILE.",
		Run: commitstatus.Wrap("pipeline", func(e *cli.Env) (*agent.Result, error) {
			f, err := forgefactory.New(e.Config, forgefactory.WithLogger(e.Log))
			if err != nil {
				return nil, agent.Usage("open the forge", err, "check backends.forge in branchml.yaml")
			}
			if err := forgefactory.RequireApproval(e.Ctx, e.Config, f, config.StagePipeline, e.Build.Commit, e.DryRun); err != nil {
				return nil, err
			}
			b, err := pipelinesfactory.New(e.Config, pipelinesfactory.WithLogger(e.Log), pipelinesfactory.WithRunner(runner.New(nil)))
			if err != nil {
				return nil, agent.Usage("open the pipelines backend", err, "check backends.pipelines in branchml.yaml and KFP_TOKEN")
			}
			out := e.Out // the diff; with -o json it is only in outputs.diff
			if e.Output == "json" {
				out = nil
			}
			return pipeline.Run(e.Ctx, pipeline.Options{
				Config: e.Config, Forge: f, Backend: b, Workspace: e.Build.Workspace, Commit: e.Build.Commit,
				DryRun: e.DryRun, Log: e.Log, Out: out,
			})
		}),
	}))
}
