package main

import (
	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/cli/traincmd"
)

func main() { cli.Main(traincmd.App()) }
