package main

import (
	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/cli/branchmlcmd"
	"github.com/branchml/branchml/agents/cli/jenkinscmd"
	"github.com/branchml/branchml/agents/cli/kpicmd"
	"github.com/branchml/branchml/agents/cli/quickstart"
	"github.com/branchml/branchml/agents/cli/registrycmd"
	"github.com/branchml/branchml/agents/cli/runcmd"
)

func main() {
	branchmlcmd.Register(registrycmd.Command(), jenkinscmd.Command(), quickstart.Command(), kpicmd.Command(), runcmd.Command())
	cli.Main(branchmlcmd.App())
}
