// Command pause is the pod sandbox process of the test bed's Kubernetes
// node: it holds the pod's namespaces and does nothing else, as
// Kubernetes' build/pause/linux/pause.c does.
//
// It blocks until SIGINT or SIGTERM, then prints "Shutting down, got
// signal: <name>" to stderr and exits 0. On SIGCHLD it reaps every child
// that has exited (it is PID 1 of the pod when the pod shares its process
// namespace, so orphans of the pod's containers become its children).
// Started as any other PID than 1 it warns on stderr and runs all the
// same. "pause -v" prints its version and exits 0.
//
// Exit codes: 0 on SIGINT/SIGTERM or -v.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// version is what -v prints.
const version = "branchml-pause 1 (after kubernetes build/pause/linux/pause.c)"

func main() {
	for _, a := range os.Args[1:] {
		if strings.EqualFold(a, "-v") {
			fmt.Println(version)
			return
		}
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "Warning: pause should be the first process")
	}
	sig := make(chan os.Signal, 8)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sig {
		if s == syscall.SIGCHLD {
			reap()
			continue
		}
		fmt.Fprintf(os.Stderr, "Shutting down, got signal: %v\n", s)
		os.Exit(0)
	}
}

// reap waits for every exited child without blocking. Signals coalesce,
// so one SIGCHLD may stand for several exits.
func reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
	}
}
