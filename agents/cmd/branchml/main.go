// Command branchml is the operators' umbrella command; see agents/README.md.
package main

import (
	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/quickstart"
	"github.com/branchml/branchml/agents/umbrella"
)

func main() {
	umbrella.Register(quickstart.Command())
	cli.Main(umbrella.App())
}
