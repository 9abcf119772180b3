// Command branchml is the operators' umbrella command; see agents/README.md.
package main

import (
	"github.com/branchml/branchml/agents/cli"
	jenkinscmd "github.com/branchml/branchml/agents/jenkins/cmd"
	"github.com/branchml/branchml/agents/quickstart"
	"github.com/branchml/branchml/agents/registry"
	"github.com/branchml/branchml/agents/umbrella"
)

func main() {
	umbrella.Register(registry.Command(), jenkinscmd.Command(), quickstart.Command())
	cli.Main(umbrella.App())
}
