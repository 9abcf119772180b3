// Command serve is a TensorFlow Serving-compatible REST model server for the
// DJIA 30 model (flags mirror tensorflow_model_server; see the README).
// Exit codes: 0 ok (stopped by SIGINT/SIGTERM), 1 failure, 2 bad usage.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/branchml/djia30/internal/servecmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(servecmd.Main(ctx, os.Args[1:], os.Stderr))
}
