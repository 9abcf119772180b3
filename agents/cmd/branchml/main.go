package main

import (
	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/cli/branchmlcmd"
	"github.com/branchml/branchml/agents/cli/commitstatus"
	"github.com/branchml/branchml/agents/cli/jenkinscmd"
	"github.com/branchml/branchml/agents/cli/quickstart"
	"github.com/branchml/branchml/agents/cli/registrycmd"
)

func main() {
	branchmlcmd.Register(registrycmd.Command(), jenkinscmd.Command(), quickstart.Command(), commitstatus.Command())
	cli.Main(branchmlcmd.App())
}
