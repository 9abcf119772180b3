// Command branchml-train runs the train stage of branchml; see agents/README.md.
package main

import (
	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/stage/train"
)

func main() { cli.Main(train.App()) }
