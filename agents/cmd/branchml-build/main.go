// Command branchml-build runs the build stage of branchml; see agents/README.md.
package main

import (
	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/stage/build"
)

func main() { cli.Main(build.App()) }
