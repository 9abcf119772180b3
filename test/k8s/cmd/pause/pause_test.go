package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pauseBin is the binary the tests run, built by TestMain.
var pauseBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pause-test-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pauseBin = filepath.Join(dir, "pause")
	build := exec.Command("go", "build", "-trimpath", "-o", pauseBin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build pause: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// start runs cmd in its own process group, killed with it at the end of t.
func start(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
}

// waitExit waits up to 5 s for cmd and returns its exit code.
func waitExit(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			if ee, ok := err.(*exec.ExitError); ok {
				return ee.ExitCode()
			}
			t.Fatal(err)
		}
		return 0
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		t.Fatal("pause did not exit within 5 s of the signal")
		return -1
	}
}

func TestStopsOnSignalWithExitZero(t *testing.T) {
	for _, tc := range []struct {
		sig  syscall.Signal
		name string
	}{{syscall.SIGTERM, "terminated"}, {syscall.SIGINT, "interrupt"}} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			cmd := exec.Command(pauseBin)
			cmd.Stderr = &stderr
			start(t, cmd)
			time.Sleep(200 * time.Millisecond)
			if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
				t.Fatalf("pause is not running after 200 ms: %v (stderr %q)", err, stderr.String())
			}
			if err := cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			if rc := waitExit(t, cmd); rc != 0 {
				t.Fatalf("exit code %d after %v, want 0 (stderr %q)", rc, tc.sig, stderr.String())
			}
			want := "Warning: pause should be the first process\nShutting down, got signal: " + tc.name + "\n"
			if stderr.String() != want {
				t.Fatalf("stderr %q, want %q", stderr.String(), want)
			}
		})
	}
}

func TestVersionFlag(t *testing.T) {
	out, err := exec.Command(pauseBin, "-V").Output()
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != version+"\n" {
		t.Fatalf("pause -V printed %q, want %q", out, version+"\n")
	}
}

// procField returns the value of field (e.g. "PPid", "State") of
// /proc/<pid>/status, or ok false once the process is gone.
func procField(pid int, field string) (string, bool) {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return "", false
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, found := strings.CutPrefix(line, field+":"); found {
			return strings.TrimSpace(v), true
		}
	}
	return "", true
}

// A child of pause that exits is reaped, not left a zombie: sh starts
// `sleep` in the background and execs pause in its own process, so the
// sleep's parent is pause.
func TestReapsExitedChild(t *testing.T) {
	cmd := exec.Command("/bin/sh", "-c", `sleep 0.5 & echo $!; exec "$0"`, pauseBin)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start(t, cmd)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("child pid %q: %v", line, err)
	}
	ppid, ok := procField(child, "PPid")
	if !ok {
		t.Fatalf("sleep (pid %d) exited before it could be checked", child)
	}
	if ppid != strconv.Itoa(cmd.Process.Pid) {
		t.Fatalf("sleep's parent is %s, want pause's pid %d", ppid, cmd.Process.Pid)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		state, ok := procField(child, "State")
		if !ok {
			break // reaped
		}
		if time.Now().After(deadline) {
			t.Fatalf("sleep (pid %d) still in /proc 5 s on, state %q: pause did not reap it", child, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("pause exited after reaping: %v", err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if rc := waitExit(t, cmd); rc != 0 {
		t.Fatalf("exit code %d, want 0", rc)
	}
}
