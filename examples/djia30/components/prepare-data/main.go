// Command prepare-data turns the DJIA 30 CSVs into train/validation/test
// splits with features, labels, schema.json and stats.json (see the README).
// Exit codes: 0 ok, 1 failure, 2 bad usage or bad input data.
package main

import (
	"os"

	"github.com/branchml/djia30/internal/prepcmd"
)

func main() { os.Exit(prepcmd.Main(os.Args[1:], os.Stderr)) }
