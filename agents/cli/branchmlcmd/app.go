package branchmlcmd

import (
	ucli "github.com/urfave/cli/v2"

	"github.com/branchml/branchml/agents/cli"
)

// extra holds commands other packages add to branchml (registry, jenkins,
// quickstart) through Register, so that this package does not import them all.
var extra []*ucli.Command

// Register adds commands to the branchml application; call it from an init
// function of the package that implements them, and import that package in
// agents/cmd/branchml.
func Register(cmds ...*ucli.Command) { extra = append(extra, cmds...) }

// App returns the branchml application.
func App() *ucli.App {
	cmds := append([]*ucli.Command{ConfigCommand()}, extra...)
	return cli.NewApp("branchml", "branch-driven MLOps: configuration, Jenkins, local registry, quickstart", cmds...)
}
