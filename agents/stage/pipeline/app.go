// Package pipeline is the branchml-pipeline agent (the kf-pipeline stage):
// Run composes the KFP v2 IR with the built image digests and the
// configured resources, uploads it as a pipeline version (idempotent by
// content hash) and writes the pipeline lock back; App wires it to flags.
package pipeline

import (
	ucli "github.com/urfave/cli/v2"

	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/forge/forges"
	"github.com/branchml/branchml/agents/pipelines/backends"
	"github.com/branchml/branchml/agents/runner"
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
		Run: func(e *cli.Env) (*cli.Result, error) {
			f, err := forges.New(e.Config, forges.WithLogger(e.Log))
			if err != nil {
				return nil, cli.Usage("open the forge", err, "check backends.forge in branchml.yaml")
			}
			b, err := backends.New(e.Config, backends.WithLogger(e.Log), backends.WithRunner(runner.New(nil)))
			if err != nil {
				return nil, cli.Usage("open the pipelines backend", err, "check backends.pipelines in branchml.yaml and KFP_TOKEN")
			}
			out := e.Out // the diff; with -o json it is only in outputs.diff
			if e.Output == "json" {
				out = nil
			}
			return Run(e.Ctx, Options{
				Config: e.Config, Forge: f, Backend: b, Workspace: e.Build.Workspace, Commit: e.Build.Commit,
				DryRun: e.DryRun, Log: e.Log, Out: out,
			})
		},
	}))
}
