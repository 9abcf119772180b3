package main

import (
	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/cli/snapshotcmd"
)

func main() { cli.Main(snapshotcmd.App()) }
