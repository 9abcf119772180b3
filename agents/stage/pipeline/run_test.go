package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/forge"
	"github.com/branchml/branchml/agents/forge/gitremote"
	fake "github.com/branchml/branchml/agents/internal/fake/kfp"
	"github.com/branchml/branchml/agents/pipelines/kfp"
	"github.com/branchml/branchml/agents/records"
)

const (
	commit      = "3f2a9c1b7d4e5f60718293a4b5c6d7e8f9012345"
	digestPrep  = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	digestTrain = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	digestServe = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
)

func lockJSON(t *testing.T) []byte {
	l := records.ComponentsLock{APIVersion: records.APIVersion, Kind: "ComponentsLock", SourceCommit: "b0", Registry: "127.0.0.1:5000",
		Components: map[string]records.LockedComponent{
			"prepare-data": {Repository: "djia30/prepare-data", Image: "127.0.0.1:5000/djia30/prepare-data@" + digestPrep, Digest: digestPrep},
			"train":        {Repository: "djia30/train", Image: "127.0.0.1:5000/djia30/train@" + digestTrain, Digest: digestTrain},
			"serve":        {Repository: "djia30/serve", Image: "127.0.0.1:5000/djia30/serve@" + digestServe, Digest: digestServe},
		}}
	b, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type env struct {
	cfg   *config.Config
	forge *gitremote.Forge
	kfp   *fake.Server
	c     *kfp.Client
	ws    string
}

func setup(t *testing.T, spec string, withLock bool) *env {
	t.Helper()
	ws := t.TempDir()
	raw, err := os.ReadFile(spec)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(ws, "pipeline.yaml"), raw, 0o644)
	ctx := context.Background()
	f, err := gitremote.Init(ctx, filepath.Join(t.TempDir(), "ml.git"), map[string][]byte{"README.md": []byte("ml\n")}, []string{"main", "build-components", "kf-pipeline"})
	if err != nil {
		t.Fatal(err)
	}
	if withLock {
		if _, err := f.WriteBack(ctx, forge.WriteBack{Branch: "build-components", Files: map[string][]byte{records.ComponentsLockPath: lockJSON(t)}, Message: "branchml build: lock for b0"}); err != nil {
			t.Fatal(err)
		}
	}
	s := fake.New()
	t.Cleanup(s.Close)
	c, err := kfp.New(s.URL, kfp.WithRetry(kfp.RetryPolicy{Attempts: 2, Initial: time.Millisecond}), kfp.WithRequestTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{Project: "djia30", Dir: ws,
		Branches: map[string]string{"build": "build-components", "pipeline": "kf-pipeline"},
		Pipeline: config.Pipeline{Name: "djia30-sentiment", Spec: "pipeline.yaml", Description: "DJIA",
			Resources: map[string]config.Resources{"train": {CPU: "2", Memory: "2Gi"}}},
		Backends: config.Backends{Pipelines: config.PipelinesBackend{Type: "kfp", Endpoint: s.URL}},
	}
	return &env{cfg: cfg, forge: f, kfp: s, c: c, ws: ws}
}

func (e *env) run(t *testing.T, dry bool) (*cli.Result, string, error) {
	var out bytes.Buffer
	res, err := Run(context.Background(), Options{Config: e.cfg, Forge: e.forge, Backend: e.c, Workspace: e.ws, Commit: commit, DryRun: dry, Out: &out})
	return res, out.String(), err
}

const small = "../../pipelinespec/testdata/small.yaml"

func TestRunTwice(t *testing.T) {
	e := setup(t, small, true)
	res, _, err := e.run(t, false)
	if err != nil {
		t.Fatal(err)
	}
	o := res.Outputs.(*Outputs)
	if o.Status != "created" || o.VersionName != "3f2a9c1b7d4e-"+strings.TrimPrefix(o.SpecHash, "sha256:")[:12] {
		t.Errorf("outputs = %+v", o)
	}
	tip1, _ := e.forge.ReadFile(context.Background(), "kf-pipeline", records.PipelineLockPath)
	var lock records.PipelineLock
	if err := json.Unmarshal(tip1, &lock); err != nil {
		t.Fatal(err)
	}
	want := records.PipelineLock{APIVersion: "branchml.dev/v1", Kind: "PipelineLock", SourceCommit: commit, Backend: "kfp", Endpoint: e.kfp.URL,
		PipelineID: o.PipelineID, PipelineName: "djia30-sentiment", VersionID: o.VersionID, VersionName: o.VersionName, SpecHash: o.SpecHash,
		Images: map[string]string{"exec-prepare-data": "127.0.0.1:5000/djia30/prepare-data@" + digestPrep, "exec-train": "127.0.0.1:5000/djia30/train@" + digestTrain}}
	js1, _ := json.Marshal(lock)
	js2, _ := json.Marshal(want)
	if string(js1) != string(js2) {
		t.Errorf("lock\n%s\nwant\n%s", js1, js2)
	}
	composed, _ := e.forge.ReadFile(context.Background(), "kf-pipeline", ComposedPath)
	if v := e.kfp.Versions(""); len(v) != 1 || string(v[0].Spec) != string(composed) {
		t.Fatalf("server versions %d; spec on branch and server differ", len(v))
	}

	res2, _, err := e.run(t, false)
	if err != nil {
		t.Fatal(err)
	}
	o2 := res2.Outputs.(*Outputs)
	if o2.Status != "unchanged" || o2.VersionID != o.VersionID || o2.Commit != o.Commit {
		t.Errorf("second run = %+v, first %+v", o2, o)
	}
	if !strings.Contains(res2.Summary, "unchanged") {
		t.Errorf("summary %q", res2.Summary)
	}
	if len(e.kfp.Pipelines()) != 1 || len(e.kfp.Versions("")) != 1 {
		t.Errorf("pipelines %d versions %d", len(e.kfp.Pipelines()), len(e.kfp.Versions("")))
	}
}

func TestNothingWrittenOnFailure(t *testing.T) {
	e := setup(t, small, true)
	e.kfp.Inject(fake.On("POST", "upload_version$", 0, fake.Unavailable()))
	_, _, err := e.run(t, false)
	var ce *cli.Error
	if !errors.As(err, &ce) || ce.Code != cli.ExitFailed || !strings.Contains(ce.Fix, "unavailable") {
		t.Fatalf("err = %v", err)
	}
	for _, p := range []string{records.PipelineLockPath, ComposedPath} {
		if _, err := e.forge.ReadFile(context.Background(), "kf-pipeline", p); !errors.Is(err, forge.ErrNotFound) {
			t.Errorf("%s written: %v", p, err)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	e := setup(t, small, false)
	_, _, err := e.run(t, false)
	if cli.CodeOf(err) != cli.ExitUsage || !strings.Contains(err.Error(), ".branchml/components.lock.json on branch build-components") {
		t.Errorf("no lock: %v", err)
	}
	e = setup(t, small, true)
	e.cfg.Pipeline.Resources = map[string]config.Resources{"evaluate": {CPU: "1"}}
	_, _, err = e.run(t, false)
	if cli.CodeOf(err) != cli.ExitUsage || !strings.Contains(err.Error(), "task evaluate: pipeline.resources names a task") {
		t.Errorf("bad resources: %v", err)
	}
	if len(e.kfp.Requests()) != 0 {
		t.Error("calls made on bad input")
	}
}

func TestDryRun(t *testing.T) {
	e := setup(t, small, true)
	res, out, err := e.run(t, true)
	if err != nil {
		t.Fatal(err)
	}
	if o := res.Outputs.(*Outputs); o.Status != "planned" || !strings.HasPrefix(out, "diff against nothing (first version):\n--- nothing (first version)\n+++ composed\n+components:\n") {
		t.Errorf("first dry run: %+v\n%s", o, out)
	}
	if _, _, err := e.run(t, false); err != nil {
		t.Fatal(err)
	}
	e.kfp.ResetRequests()
	e.cfg.Pipeline.Resources["train"] = config.Resources{CPU: "4", Memory: "2Gi"}
	res, out, err = e.run(t, true)
	if err != nil {
		t.Fatal(err)
	}
	o := res.Outputs.(*Outputs)
	for _, s := range []string{"diff against version 3f2a9c1b7d4e-", "-          cpuLimit: 2\n", "+          cpuLimit: 4\n", "-          resourceCpuLimit: \"2\"\n", "+          resourceCpuLimit: \"4\"\n"} {
		if !strings.Contains(out, s) {
			t.Errorf("diff lacks %q:\n%s", s, out)
		}
	}
	if strings.Count(o.Diff, "\n+ ") != 4 || strings.Count(o.Diff, "\n- ") != 4 {
		t.Errorf("diff:\n%s", o.Diff)
	}
	for _, r := range e.kfp.Requests() {
		if r.Method != "GET" {
			t.Errorf("dry run sent %s", r)
		}
	}
	if len(e.kfp.Versions("")) != 1 {
		t.Error("dry run uploaded")
	}
	// Unchanged spec: empty diff.
	e.cfg.Pipeline.Resources["train"] = config.Resources{CPU: "2", Memory: "2Gi"}
	res, _, err = e.run(t, true)
	if err != nil || res.Outputs.(*Outputs).Diff != "" || !strings.Contains(res.Summary, "unchanged against version") {
		t.Errorf("unchanged dry run: %+v %v", res, err)
	}
}

// The worked example composes with a lock of its components, twice to the same hash.
func TestExample(t *testing.T) {
	spec := "../../../examples/djia30/pipeline.yaml"
	if _, err := os.Stat(spec); err != nil {
		t.Skip("examples/djia30/pipeline.yaml not there yet")
	}
	cfg, err := config.Load("../../../examples/djia30/branchml.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e := setup(t, spec, true)
	e.cfg.Pipeline = cfg.Pipeline
	e.cfg.Pipeline.Spec = "pipeline.yaml"
	res, _, err := e.run(t, false)
	if err != nil {
		t.Fatal(err)
	}
	res2, _, err := e.run(t, false)
	if err != nil {
		t.Fatal(err)
	}
	o1, o2 := res.Outputs.(*Outputs), res2.Outputs.(*Outputs)
	if o1.SpecHash != o2.SpecHash || o1.Status != "created" || o2.Status != "unchanged" || len(e.kfp.Versions("")) != 1 {
		t.Errorf("example: %+v then %+v", o1, o2)
	}
	for el, img := range o1.Images {
		if !strings.Contains(img, "@sha256:") {
			t.Errorf("%s: %s not pinned", el, img)
		}
	}
}

func TestDiff(t *testing.T) {
	got := Diff("a\nb\nc\n", "a\nB\nc\nd\n", "old", "new")
	want := "--- old\n+++ new\n a\n-b\n+B\n c\n+d\n"
	if got != want {
		t.Errorf("Diff =\n%s\nwant\n%s", got, want)
	}
}
