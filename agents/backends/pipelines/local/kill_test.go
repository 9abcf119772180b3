package local

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/branchml/branchml/agents/backends/pipelines"
	"github.com/branchml/branchml/agents/backends/pipelines/local/runner"
	"github.com/branchml/branchml/agents/backends/pipelines/local/runner/runnertest"
)

// helperEnv makes the test binary a runner process of its own (see
// TestMain): it creates the run of the spec in $BML_HELPER_SPEC under the
// state directory $BML_HELPER_DIR, follows it, and prints its final state.
const helperEnv = "BML_HELPER_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(helperEnv); dir != "" {
		os.Exit(helper(dir))
	}
	os.Exit(m.Run())
}

func helper(dir string) int {
	vols := os.Getenv("BML_HELPER_VOLUMES")
	volumes := runner.VolumesFunc(func(_ context.Context, name string) (string, error) {
		p := filepath.Join(vols, name)
		return p, os.MkdirAll(p, 0o755)
	})
	images := &runnertest.DirImages{Root: os.Getenv("BML_HELPER_IMAGE"), Env: []string{"PATH=/ko-app"}}
	b, err := New(dir, runner.New(images, runner.WithVolumes(volumes), runner.WithPollInterval(10*time.Millisecond)), WithAdoption())
	if err != nil {
		fmt.Println(err)
		return 1
	}
	spec, _ := os.ReadFile(os.Getenv("BML_HELPER_SPEC"))
	ctx := context.Background()
	v, err := b.UploadVersion(ctx, pipelines.Upload{PipelineName: "p", VersionName: "v", Spec: spec})
	if err != nil {
		fmt.Println(err)
		return 1
	}
	run, err := b.CreateRun(ctx, pipelines.RunRequest{Experiment: "e", DisplayName: "r", PipelineID: v.PipelineID, VersionID: v.VersionID})
	if err != nil {
		fmt.Println(err)
		return 1
	}
	for {
		r, err := b.GetRun(ctx, run.ID)
		if err != nil {
			fmt.Println(err)
			return 1
		}
		if pipelines.Terminal(r.State) {
			js, _ := json.Marshal(r)
			fmt.Println(string(js))
			return 0
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const waitSpec = `
pipelineInfo: {name: wait}
root:
  dag:
    tasks:
      count: {componentRef: {name: c-count}}
      wait: {componentRef: {name: c-wait}, dependentTasks: [count]}
components: {c-wait: {executorLabel: e-wait}, c-count: {executorLabel: e-count}}
deploymentSpec:
  executors:
    e-count: {container: {image: "r/t@sha256:00", args: [append, /scratch/count, ran]}}
    e-wait: {container: {image: "r/t@sha256:00", args: [waitfor, /scratch/go]}}
---
platforms: {kubernetes: {deploymentSpec: {executors: {e-wait: {pvcMount: [{constant: scratch, mountPath: /scratch}]}, e-count: {pvcMount: [{constant: scratch, mountPath: /scratch}]}}}}}
`

type helperEnvs struct{ state, vols, spec, image string }

func newHelperEnvs(t *testing.T) helperEnvs {
	if os.Geteuid() != 0 {
		t.Skip("tasks in containers need root")
	}
	h := helperEnvs{state: t.TempDir(), vols: t.TempDir(), spec: filepath.Join(t.TempDir(), "spec.yaml"), image: runnertest.NewDirImages(t).Root}
	os.WriteFile(h.spec, []byte(waitSpec), 0o644)
	return h
}

func (h helperEnvs) start(t *testing.T) (*exec.Cmd, *strings.Builder) {
	exe, _ := os.Executable()
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), helperEnv+"="+h.state, "BML_HELPER_VOLUMES="+h.vols, "BML_HELPER_SPEC="+h.spec, "BML_HELPER_IMAGE="+h.image)
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, out
}

func waiting() int {
	n := 0
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if strings.Contains(string(b), "waitfor\x00/scratch/go") {
			n++
		}
	}
	return n
}

func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 1000; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// A runner killed with SIGKILL (Jenkins' way after its grace period) takes
// its task containers with it, and the next runner continues the run
// instead of failing it: the finished task is not run again.
func TestSIGKILLedRunnerLeavesNoTaskAndTheRunContinues(t *testing.T) {
	h := newHelperEnvs(t)
	cmd, _ := h.start(t)
	poll(t, "the waiting task", func() bool { return waiting() == 1 })
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	poll(t, "the task to die with its runner", func() bool { return waiting() == 0 })
	os.WriteFile(filepath.Join(h.vols, "scratch", "go"), nil, 0o644)
	cmd2, out := h.start(t)
	if err := cmd2.Wait(); err != nil {
		t.Fatalf("second runner: %v\n%s", err, out)
	}
	var run pipelines.Run
	if err := json.Unmarshal([]byte(out.String()), &run); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if run.State != pipelines.StateSucceeded || len(run.Tasks) != 2 || run.Tasks[1].State != pipelines.StateSucceeded {
		t.Errorf("continued run = %+v", run)
	}
	if got, _ := os.ReadFile(filepath.Join(h.vols, "scratch", "count")); string(got) != "ran\n" {
		t.Errorf("the finished task ran %q", got)
	}
	st, _ := runner.ReadState(filepath.Join(h.state, "runs", run.ID))
	if st.Resumed != 1 {
		t.Errorf("resumed = %d", st.Resumed)
	}
	// The continued task ran under a name of its own, never one the dead
	// runner's reaper may still kill or unmount.
	for _, ts := range st.Tasks {
		if ts.Name == "wait" && !strings.Contains(ts.Container, "-r1-") {
			t.Errorf("the continued task's container %q: want a name of the resumed run (-r1-)", ts.Container)
		}
	}
}

// Two runners asked for the same run at once (two 'branchml-train run
// --rerun' of one commit): one executes it, the other follows it; each
// task runs once and both see it succeed.
func TestTwoRunnersOfOneRunExecuteItOnce(t *testing.T) {
	h := newHelperEnvs(t)
	a, outA := h.start(t)
	b, outB := h.start(t)
	poll(t, "the waiting task", func() bool { return waiting() >= 1 })
	time.Sleep(200 * time.Millisecond)
	if n := waiting(); n != 1 {
		t.Errorf("%d copies of the task run", n)
	}
	os.WriteFile(filepath.Join(h.vols, "scratch", "go"), nil, 0o644)
	if err := a.Wait(); err != nil {
		t.Fatalf("a: %v %s", err, outA)
	}
	if err := b.Wait(); err != nil {
		t.Fatalf("b: %v %s", err, outB)
	}
	for _, out := range []string{outA.String(), outB.String()} {
		var run pipelines.Run
		if err := json.Unmarshal([]byte(out), &run); err != nil || run.State != pipelines.StateSucceeded {
			t.Errorf("run = %s (%v)", out, err)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(h.vols, "scratch", "count")); string(got) != "ran\n" {
		t.Errorf("the first task ran %q", got)
	}
}
