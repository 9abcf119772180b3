// Command branchml-pipeline runs the pipeline stage of branchml; see agents/README.md.
package main

import (
	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/stage/pipeline"
)

func main() { cli.Main(pipeline.App()) }
