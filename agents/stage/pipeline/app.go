// Package pipeline is the branchml-pipeline agent: its commands and flags.
package pipeline

import (
	"errors"

	ucli "github.com/urfave/cli/v2"

	"github.com/branchml/branchml/agents/cli"
)

// App returns the branchml-pipeline application.
func App() *ucli.App {
	return cli.NewApp("branchml-pipeline", "the pipeline stage of branchml", cli.Command(cli.Spec{
		Name: "run", Usage: "run the pipeline stage", Stage: "pipeline", NeedsConfig: true, BuildFlags: true,
		Run: func(e *cli.Env) (*cli.Result, error) {
			return nil, cli.Failed("run", errors.New("not implemented yet"), "")
		},
	}))
}
