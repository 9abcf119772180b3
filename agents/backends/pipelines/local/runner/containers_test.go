package runner_test

import (
	"os"
	"os/exec"
	"testing"

	"github.com/branchml/branchml/agents/backends/pipelines/local/runner"
)

// Why containers cannot run: not root, or no runtime on PATH.
func TestContainersUnavailable(t *testing.T) {
	if os.Geteuid() != 0 {
		if why, fix := runner.ContainersUnavailable(); why != "not root (the OCI runtime mounts each image's file system)" || fix != "run as root" {
			t.Fatalf("not root: %q, %q", why, fix)
		}
		return
	}
	// With runc on PATH (CI installs it) containers are available.
	if _, err := exec.LookPath("runc"); err == nil {
		if why, _ := runner.ContainersUnavailable(); why != "" {
			t.Fatalf("with runc on PATH: %q", why)
		}
	}
	t.Setenv("PATH", t.TempDir())
	if why, fix := runner.ContainersUnavailable(); why != "no OCI runtime (runc or crun) on PATH" || fix != "apt-get install runc" {
		t.Fatalf("no runtime on PATH: %q, %q", why, fix)
	}
}
