package main

import (
	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/cli/branchmlcmd"
	"github.com/branchml/branchml/agents/cli/commitstatus"
	"github.com/branchml/branchml/agents/cli/deploycmd"
	"github.com/branchml/branchml/agents/cli/jenkinscmd"
	"github.com/branchml/branchml/agents/cli/kpicmd"
	"github.com/branchml/branchml/agents/cli/prcmd"
	"github.com/branchml/branchml/agents/cli/quickstart"
	"github.com/branchml/branchml/agents/cli/registrycmd"
	"github.com/branchml/branchml/agents/cli/runcmd"
	"github.com/branchml/branchml/agents/cli/statuscmd"
)

func main() {
	branchmlcmd.Register(registrycmd.Command(), jenkinscmd.Command(), quickstart.Command(), kpicmd.Command(), runcmd.Command(),
		prcmd.Command(), deploycmd.ServeCommand(), statuscmd.Command(), commitstatus.Command())
	cli.Main(branchmlcmd.App())
}
