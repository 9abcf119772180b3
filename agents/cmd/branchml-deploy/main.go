package main

import (
	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/cli/deploycmd"
)

func main() { cli.Main(deploycmd.App()) }
