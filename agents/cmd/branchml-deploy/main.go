// Command branchml-deploy runs the deploy stage of branchml; see agents/README.md.
package main

import (
	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/stage/deploy"
)

func main() { cli.Main(deploy.App()) }
