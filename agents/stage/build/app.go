// Package build is the branchml-build agent: its commands and flags.
package build

import (
	"errors"

	ucli "github.com/urfave/cli/v2"

	"github.com/branchml/branchml/agents/cli"
)

// App returns the branchml-build application.
func App() *ucli.App {
	return cli.NewApp("branchml-build", "the build stage of branchml", cli.Command(cli.Spec{
		Name: "run", Usage: "run the build stage", Stage: "build", NeedsConfig: true, BuildFlags: true,
		Run: func(e *cli.Env) (*cli.Result, error) {
			return nil, cli.Failed("run", errors.New("not implemented yet"), "")
		},
	}))
}
