package main

import (
	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/cli/buildcmd"
)

func main() { cli.Main(buildcmd.App()) }
