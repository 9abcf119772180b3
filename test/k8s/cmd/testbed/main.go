// Command testbed builds, starts and stops the Kubernetes test bed by hand
// (make k8s-build, make k8s-up, make k8s-down); see test/k8s/README.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/branchml/branchml/test/k8s/cluster"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: testbed build|up|down")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "build":
		var src, bin string
		if src, err = cluster.SourceDir(""); err == nil {
			if bin, err = cluster.BinDir(ctx, src, os.Stderr); err == nil {
				fmt.Println(bin)
			}
		}
	default:
		fmt.Fprintf(os.Stderr, "testbed: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "testbed:", err)
		os.Exit(1)
	}
}
