// Package snapshot is the branchml-snapshot agent: its commands and flags.
package snapshot

import (
	"errors"

	ucli "github.com/urfave/cli/v2"

	"github.com/branchml/branchml/agents/cli"
)

// App returns the branchml-snapshot application.
func App() *ucli.App {
	return cli.NewApp("branchml-snapshot", "the snapshot stage of branchml", cli.Command(cli.Spec{
		Name: "run", Usage: "run the snapshot stage", Stage: "snapshot", NeedsConfig: true, BuildFlags: true,
		Run: func(e *cli.Env) (*cli.Result, error) {
			return nil, cli.Failed("run", errors.New("not implemented yet"), "")
		},
	}))
}
