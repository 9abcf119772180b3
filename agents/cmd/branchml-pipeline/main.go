package main

import (
	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/cli/pipelinecmd"
)

func main() { cli.Main(pipelinecmd.App()) }
