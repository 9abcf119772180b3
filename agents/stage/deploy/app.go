// Package deploy is the branchml-deploy agent: its commands and flags.
package deploy

import (
	"errors"

	ucli "github.com/urfave/cli/v2"

	"github.com/branchml/branchml/agents/cli"
)

// App returns the branchml-deploy application.
func App() *ucli.App {
	return cli.NewApp("branchml-deploy", "the deploy stage of branchml", cli.Command(cli.Spec{
		Name: "run", Usage: "run the deploy stage", Stage: "deploy", NeedsConfig: true, BuildFlags: true,
		Run: func(e *cli.Env) (*cli.Result, error) {
			return nil, cli.Failed("run", errors.New("not implemented yet"), "")
		},
	}))
}
