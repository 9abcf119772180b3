package cluster

import (
	"context"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

const lockChildEnv = "BRANCHML_K8S_NODELOCK_CHILD"

// TestNodeLockChild is the other process of TestNodeLockIsMachineWide: it
// tries to take the node lock for as long as the parent says.
func TestNodeLockChild(t *testing.T) {
	wait := os.Getenv(lockChildEnv)
	if wait == "" {
		t.Skip("run by TestNodeLockIsMachineWide")
	}
	NodeLockFile = os.Getenv("BRANCHML_K8S_NODELOCK_FILE")
	d, _ := time.ParseDuration(wait)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	f, err := lockNode(ctx, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// One node per machine: a second process waits for the lock while the
// first holds it (and fails, naming the lock file and the holder's pid,
// when its context ends), and takes it once the first has let go.
func TestNodeLockIsMachineWide(t *testing.T) {
	NodeLockFile = t.TempDir() + "/node.lock"
	f, err := lockNode(context.Background(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	child := func(wait string) (string, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestNodeLockChild$", "-test.v")
		cmd.Env = append(os.Environ(), lockChildEnv+"="+wait, "BRANCHML_K8S_NODELOCK_FILE="+NodeLockFile)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := child("1s")
	if err == nil || !strings.Contains(out, "another test bed runs a node on this machine ("+NodeLockFile+")") || !strings.Contains(out, "waiting for the test bed node of pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second process while the lock is held: %v\n%s", err, out)
	}
	go func() { time.Sleep(500 * time.Millisecond); f.Close() }()
	if out, err := child("20s"); err != nil {
		t.Fatalf("second process after the first let go: %v\n%s", err, out)
	}
}
