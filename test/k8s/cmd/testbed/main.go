// Command testbed builds, starts and stops the Kubernetes test bed by hand:
//
//	testbed build   build the binaries into the cache (once per machine); prints their directory
//	testbed up      start the test bed in the background (state in .work/k8s); prints the kubeconfig path
//	testbed down    stop it
//
// (make k8s-build, make k8s-up, make k8s-down; see test/k8s/README.md).
// "up" starts "testbed serve" in its own session: that process holds the
// cluster (every component dies with it) until "down" sends it SIGTERM.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/branchml/branchml/test/k8s/cluster"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: testbed build|up|down")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	src, err := cluster.SourceDir("")
	if err != nil {
		fmt.Fprintln(os.Stderr, "testbed:", err)
		os.Exit(2)
	}
	dir := filepath.Join(src, ".work", "k8s")
	switch os.Args[1] {
	case "build":
		var bin string
		if bin, err = cluster.BinDir(ctx, src, os.Stderr); err == nil {
			fmt.Println(bin)
		}
	case "up":
		err = up(src, dir)
	case "serve":
		err = serve(ctx, src, dir)
	case "down":
		err = down(dir)
	default:
		fmt.Fprintf(os.Stderr, "testbed: unknown command %q (build, up, down)\n", os.Args[1])
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "testbed:", err)
		os.Exit(1)
	}
}

func pidOf(dir string) int {
	raw, err := os.ReadFile(filepath.Join(dir, "testbed.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return 0
	}
	return pid
}

func up(src, dir string) error {
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if pid := pidOf(dir); pid != 0 {
		fmt.Fprintf(os.Stderr, "the test bed already runs (pid %d)\n", pid)
		fmt.Println(kubeconfig)
		return nil
	}
	// Build in the foreground, so its progress shows.
	if _, err := cluster.BinDir(context.Background(), src, os.Stderr); err != nil {
		return err
	}
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(dir, "testbed.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(self, "serve")
	cmd.Dir = src
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	for {
		if _, err := os.Stat(filepath.Join(dir, "ready")); err == nil {
			fmt.Fprintf(os.Stderr, "test bed up (pid %d, logs in %s); stop it with make k8s-down\n", cmd.Process.Pid, dir)
			fmt.Println(kubeconfig)
			return nil
		}
		select {
		case err := <-exited:
			raw, _ := os.ReadFile(filepath.Join(dir, "testbed.log"))
			return fmt.Errorf("the test bed did not start (%v):\n%s", err, raw)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func serve(ctx context.Context, src, dir string) error {
	c, err := cluster.Start(ctx, cluster.Options{Dir: dir, Source: src, Progress: os.Stdout})
	if err != nil {
		return err
	}
	defer c.Stop()
	if err := os.WriteFile(filepath.Join(dir, "testbed.pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	defer os.Remove(filepath.Join(dir, "testbed.pid"))
	if err := os.WriteFile(filepath.Join(dir, "ready"), []byte(c.Kubeconfig+"\n"), 0o644); err != nil {
		return err
	}
	fmt.Printf("kubeconfig %s\nserver %s\nhostpath data %s\n", c.Kubeconfig, c.Server, c.HostPathDir)
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fmt.Println("stopping")
			return nil
		case <-t.C:
			if ex := c.Exited(); len(ex) > 0 {
				return errors.Join(ex...)
			}
		}
	}
}

func down(dir string) error {
	pid := pidOf(dir)
	if pid == 0 {
		fmt.Fprintln(os.Stderr, "the test bed is not running")
		return nil
	}
	syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 300; i++ {
		if syscall.Kill(pid, 0) != nil {
			os.Remove(filepath.Join(dir, "ready"))
			fmt.Fprintln(os.Stderr, "test bed stopped")
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	syscall.Kill(-pid, syscall.SIGKILL) // its session's group; components die with it
	return fmt.Errorf("pid %d did not stop within 30 s: killed", pid)
}
