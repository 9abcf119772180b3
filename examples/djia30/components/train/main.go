// Command train fits the DJIA 30 direction classifier on prepare-data's output
// and writes a TF Serving model version (see the README).
// Exit codes: 0 ok, 1 failure, 2 bad usage or bad input data.
package main

import (
	"os"

	"github.com/branchml/djia30/internal/traincmd"
)

func main() { os.Exit(traincmd.Main(os.Args[1:], os.Stderr)) }
