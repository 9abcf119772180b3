package cluster

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const buildChildEnv = "BRANCHML_K8S_BUILDLOCK_CHILD"

// TestBuildLockChild is the other process of TestBuildWaitsForAnotherBuild.
func TestBuildLockChild(t *testing.T) {
	if os.Getenv(buildChildEnv) == "" {
		t.Skip("run by TestBuildWaitsForAnotherBuild")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bin, err := BinDir(ctx, os.Getenv(buildChildEnv), os.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString("bin " + bin + "\n")
}

// A second BinDir while another process builds the same version waits for
// that build and takes its result instead of building again: the parent
// holds the build lock, then puts a complete bin directory in place (as a
// finished build renames it) and lets go; the child, started meanwhile,
// says it waits and returns that directory without running go build.
func TestBuildWaitsForAnotherBuild(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("BRANCHML_K8S_CACHE", cache)
	src, err := SourceDir("")
	if err != nil {
		t.Fatal(err)
	}
	v, err := Version(src)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(cache, v)
	os.MkdirAll(dir, 0o755)
	lock, err := os.OpenFile(filepath.Join(dir, "build.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestBuildLockChild$", "-test.v")
	cmd.Env = append(os.Environ(), buildChildEnv+"="+src, "PATH=/nonexistent") // no go command: a build would fail
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	bin := filepath.Join(dir, "bin")
	os.MkdirAll(bin, 0o755)
	for _, b := range Binaries {
		os.WriteFile(filepath.Join(bin, b), []byte("#!/bin/sh\n"), 0o755)
	}
	lock.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "waiting for another build of the test bed's binaries into "+bin) || !strings.Contains(out.String(), "bin "+bin+"\n") {
		t.Fatalf("child output:\n%s\nwant it to wait, then return %s", out.String(), bin)
	}
}
