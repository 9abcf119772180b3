// Package train is the branchml-train agent: its commands and flags.
package train

import (
	"errors"

	ucli "github.com/urfave/cli/v2"

	"github.com/branchml/branchml/agents/cli"
)

// App returns the branchml-train application.
func App() *ucli.App {
	return cli.NewApp("branchml-train", "the train stage of branchml", cli.Command(cli.Spec{
		Name: "run", Usage: "run the train stage", Stage: "train", NeedsConfig: true, BuildFlags: true,
		Run: func(e *cli.Env) (*cli.Result, error) {
			return nil, cli.Failed("run", errors.New("not implemented yet"), "")
		},
	}))
}
