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
	_, runc := exec.LookPath("runc")
	_, crun := exec.LookPath("crun")
	if why, _ := runner.ContainersUnavailable(); (runc == nil || crun == nil) != (why == "") {
		t.Fatalf("with runc %v, crun %v on PATH: %q", runc, crun, why)
	}
	t.Setenv("PATH", t.TempDir())
	if why, fix := runner.ContainersUnavailable(); why != "no OCI runtime (runc or crun) on PATH" || fix != "apt-get install runc" {
		t.Fatalf("no runtime on PATH: %q, %q", why, fix)
	}
}
