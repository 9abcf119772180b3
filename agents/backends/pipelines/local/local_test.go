package local

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/branchml/branchml/agents/backends/pipelines"
	"github.com/branchml/branchml/agents/backends/pipelines/local/runner"
	"github.com/branchml/branchml/agents/backends/pipelines/local/runner/runnertest"
)

func newBackend(t *testing.T) (*Backend, string) {
	t.Helper()
	dir := t.TempDir()
	if os.Geteuid() != 0 {
		t.Skip("tasks in containers need root")
	}
	vols := t.TempDir()
	volumes := runner.VolumesFunc(func(_ context.Context, name string) (string, error) {
		p := filepath.Join(vols, name)
		return p, os.MkdirAll(p, 0o755)
	})
	b, err := New(dir, runner.New(runnertest.NewDirImages(t), runner.WithPollInterval(10*time.Millisecond), runner.WithVolumes(volumes)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, dir
}

func upload(t *testing.T, b *Backend, spec []byte) *pipelines.Version {
	t.Helper()
	v, err := b.UploadVersion(context.Background(), pipelines.Upload{PipelineName: "djia30-sentiment", VersionName: "abc123-1f2e", Spec: spec, SpecHash: "sha256:1f2e"})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestUploadVersionIsIdempotentByHash(t *testing.T) {
	b, dir := newBackend(t)
	spec := runnertest.TrainSpec("r/t@sha256:00", false)
	v1 := upload(t, b, spec)
	if !v1.Created || v1.PipelineID != id("pipeline", "djia30-sentiment") || v1.VersionID != id("version", v1.PipelineID, "sha256:1f2e") || v1.SpecHash != "sha256:1f2e" {
		t.Errorf("first upload = %+v", v1)
	}
	v2 := upload(t, b, spec)
	if v2.Created || v2.VersionID != v1.VersionID || !v2.CreatedAt.Equal(v1.CreatedAt) {
		t.Errorf("second upload = %+v", v2)
	}
	got, err := os.ReadFile(filepath.Join(dir, "pipelines", v1.PipelineID, "versions", v1.VersionID+".yaml"))
	if err != nil || string(got) != string(spec) {
		t.Errorf("stored spec differs: %v", err)
	}
	_, err = b.UploadVersion(context.Background(), pipelines.Upload{PipelineName: "p", VersionName: "v", Spec: []byte("root: {}")})
	if err == nil || !strings.Contains(err.Error(), "pipeline p version v: pipeline spec has no root DAG") {
		t.Errorf("bad spec upload = %v", err)
	}
}

func TestRunLifecycle(t *testing.T) {
	b, _ := newBackend(t)
	v := upload(t, b, runnertest.TrainSpec("r/t@sha256:00", false))
	models := t.TempDir()
	req := pipelines.RunRequest{Experiment: "djia30", DisplayName: "djia30-abc123-r0", PipelineID: v.PipelineID, VersionID: v.VersionID,
		Parameters: map[string]any{"data_path": "/d", "model_base_path": models, "model_version": 7}}
	run, err := b.CreateRun(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if run.ID != id("run", "djia30", "djia30-abc123-r0") || run.DisplayName != "djia30-abc123-r0" || run.ExperimentID != id("experiment", "djia30") {
		t.Errorf("run = %+v", run)
	}
	b.Wait(run.ID)
	got, err := b.GetRun(context.Background(), run.ID)
	if err != nil || got.State != pipelines.StateSucceeded || len(got.Tasks) != 2 || got.Tasks[1].Name != "train" || got.Tasks[1].State != pipelines.StateSucceeded {
		t.Fatalf("GetRun = %+v, %v", got, err)
	}
	again, err := b.CreateRun(context.Background(), req)
	if err != nil || again.ID != run.ID || again.State != pipelines.StateSucceeded {
		t.Errorf("second CreateRun = %+v, %v", again, err)
	}
	m, err := b.Artifact(context.Background(), run.ID, "train", "metrics", "")
	if err != nil || string(m) != runnertest.TrainMetrics {
		t.Errorf("metrics = %q, %v", m, err)
	}
	if _, err := b.Artifact(context.Background(), run.ID, "train", "nope", ""); !errors.Is(err, pipelines.ErrNotFound) {
		t.Errorf("missing artifact = %v", err)
	}
	if _, err := b.Artifact(context.Background(), run.ID, "../../x", "metrics", ""); !errors.Is(err, pipelines.ErrNotFound) {
		t.Errorf("escaping task name = %v", err)
	}
	os.MkdirAll(runner.OutputArtifactPath(b.RunDir(run.ID), "train", "model"), 0o755)
	os.WriteFile(filepath.Join(runner.OutputArtifactPath(b.RunDir(run.ID), "train", "model"), "model.json"), []byte("{}"), 0o644)
	if _, err := b.Artifact(context.Background(), run.ID, "train", "model", ""); err == nil || !strings.Contains(err.Error(), "is a directory (model.json): name a file") {
		t.Errorf("dir artifact without file = %v", err)
	}
	if got, err := b.Artifact(context.Background(), run.ID, "train", "model", "model.json"); err != nil || string(got) != "{}" {
		t.Errorf("dir artifact file = %q, %v", got, err)
	}
}

func TestUnknownRun(t *testing.T) {
	b, _ := newBackend(t)
	for _, id := range []string{"6f0b6c1e-4a8e-5b59-9d57-0c1b2a6d4e11", "../../etc"} {
		if _, err := b.GetRun(context.Background(), id); !errors.Is(err, pipelines.ErrNotFound) {
			t.Errorf("GetRun(%s) = %v", id, err)
		}
		if err := b.CancelRun(context.Background(), id); !errors.Is(err, pipelines.ErrNotFound) {
			t.Errorf("CancelRun(%s) = %v", id, err)
		}
	}
	if _, err := b.CreateRun(context.Background(), pipelines.RunRequest{DisplayName: "x", PipelineID: "p", VersionID: "v"}); !errors.Is(err, pipelines.ErrNotFound) {
		t.Errorf("CreateRun of unknown version = %v", err)
	}
}

func TestCancelRunFromAnotherBackend(t *testing.T) {
	b, dir := newBackend(t)
	spec := []byte(`
pipelineInfo: {name: sleepy}
root: {dag: {tasks: {sleep: {componentRef: {name: c}}}}}
components: {c: {executorLabel: e}}
deploymentSpec: {executors: {e: {container: {image: "r/t@sha256:00", args: [sleep, 60s]}}}}
`)
	v, err := b.UploadVersion(context.Background(), pipelines.Upload{PipelineName: "sleepy", VersionName: "v1", Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	run, err := b.CreateRun(context.Background(), pipelines.RunRequest{Experiment: "e", DisplayName: "sleep", PipelineID: v.PipelineID, VersionID: v.VersionID})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := New(dir, nil) // another process's view: same state directory
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, err := other.GetRun(context.Background(), run.ID)
		if err != nil {
			t.Fatal(err)
		}
		if r.State == pipelines.StateRunning && r.Tasks[0].State == pipelines.StateRunning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run never started: %+v", r)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := other.CancelRun(context.Background(), run.ID); err != nil {
		t.Fatal(err)
	}
	b.Wait(run.ID)
	r, err := other.GetRun(context.Background(), run.ID)
	if err != nil || r.State != pipelines.StateCanceled || r.Tasks[0].State != pipelines.StateCanceled {
		t.Errorf("after cancel = %+v, %v", r, err)
	}
}

func TestArtifactOfACachedTask(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("tasks in containers need root")
	}
	dir, vols := t.TempDir(), t.TempDir()
	volumes := runner.VolumesFunc(func(_ context.Context, name string) (string, error) {
		p := filepath.Join(vols, name)
		return p, os.MkdirAll(p, 0o755)
	})
	b, err := New(dir, runner.New(runnertest.NewDirImages(t), runner.WithVolumes(volumes), runner.WithCacheDir(filepath.Join(dir, "cache"))))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	spec := strings.Replace(string(runnertest.TrainSpec("r/t@sha256:00", false)), "        componentRef: {name: comp-", "        cachingOptions: {enableCache: true}\n        componentRef: {name: comp-", -1)
	v := upload(t, b, []byte(spec))
	var ids []string
	for _, name := range []string{"first", "second"} {
		run, err := b.CreateRun(context.Background(), pipelines.RunRequest{Experiment: "e", DisplayName: name, PipelineID: v.PipelineID, VersionID: v.VersionID,
			Parameters: map[string]any{"data_path": "/d", "model_base_path": "/models", "model_version": 1}})
		if err != nil {
			t.Fatal(err)
		}
		b.Wait(run.ID)
		ids = append(ids, run.ID)
	}
	st, _ := runner.ReadState(b.RunDir(ids[1]))
	if st.State != pipelines.StateSucceeded || !st.Tasks[0].Cached || !st.Tasks[1].Cached {
		t.Fatalf("second run = %s %+v", st.State, st.Tasks)
	}
	if m, err := b.Artifact(context.Background(), ids[1], "train", "metrics", ""); err != nil || string(m) != runnertest.TrainMetrics {
		t.Errorf("metrics of the cached task = %q, %v", m, err)
	}
}
