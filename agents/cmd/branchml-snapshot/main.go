// Command branchml-snapshot runs the snapshot stage of branchml; see agents/README.md.
package main

import (
	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/stage/snapshot"
)

func main() { cli.Main(snapshot.App()) }
