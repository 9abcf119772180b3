package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/backends/forge/gitremote"
	"github.com/branchml/branchml/agents/backends/pipelines"
	"github.com/branchml/branchml/agents/backends/pipelines/kfp"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/agent"
	fake "github.com/branchml/branchml/agents/internal/fake/kfp"
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

func (e *env) run(t *testing.T, dry bool) (*agent.Result, string, error) {
	return e.runAt(t, commit, dry)
}

func (e *env) runAt(t *testing.T, c string, dry bool) (*agent.Result, string, error) {
	var out bytes.Buffer
	res, err := Run(context.Background(), Options{Config: e.cfg, Forge: e.forge, Backend: e.c, Workspace: e.ws, Commit: c, DryRun: dry, Out: &out})
	return res, out.String(), err
}

// git runs git on the bare remote and returns its trimmed output.
func (e *env) git(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("git", append([]string{"--git-dir", e.forge.Remote()}, args...)...).Output()
	if err != nil {
		t.Fatalf("git %v: %v", args, err)
	}
	return strings.TrimSpace(string(out))
}

// tip is the commit kf-pipeline points at.
func (e *env) tip(t *testing.T) string { return e.git(t, "rev-parse", "refs/heads/kf-pipeline") }

// commits counts the commits of kf-pipeline.
func (e *env) commits(t *testing.T) string {
	return e.git(t, "rev-list", "--count", "refs/heads/kf-pipeline")
}

func (e *env) lock(t *testing.T) records.PipelineLock {
	t.Helper()
	raw, err := e.forge.ReadFile(context.Background(), "kf-pipeline", records.PipelineLockPath)
	if err != nil {
		t.Fatal(err)
	}
	var l records.PipelineLock
	if err := json.Unmarshal(raw, &l); err != nil {
		t.Fatal(err)
	}
	return l
}

const small = "pipelinespec/testdata/small.yaml"

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
	if o2.Status != "unchanged" || o2.VersionID != o.VersionID || o2.Commit != "" || o.Commit == "" {
		t.Errorf("second run = %+v, first %+v", o2, o)
	}
	if tip := e.tip(t); tip != o.Commit {
		t.Errorf("second run moved kf-pipeline from %s to %s", o.Commit, tip)
	}
	if !strings.HasSuffix(res2.Summary, " unchanged; nothing written back") {
		t.Errorf("summary %q", res2.Summary)
	}
	if len(e.kfp.Pipelines()) != 1 || len(e.kfp.Versions("")) != 1 {
		t.Errorf("pipelines %d versions %d", len(e.kfp.Pipelines()), len(e.kfp.Versions("")))
	}
}

// On Jenkins every write-back commit starts another build of the pipeline
// branch; an unchanged version must write nothing back, or the builds never
// end. The lock keeps the sourceCommit of the commit that created the
// version.
func TestWriteBackIsIdempotent(t *testing.T) {
	ctx := context.Background()
	e := setup(t, small, true)
	res, _, err := e.run(t, false)
	if err != nil {
		t.Fatal(err)
	}
	first := res.Outputs.(*Outputs)
	tip, count := e.tip(t), e.commits(t)
	if first.Status != "created" || first.Commit != tip || count != "2" { // init, the pipeline lock
		t.Fatalf("first run: %+v; tip %s, %s commits", first, tip, count)
	}
	composed, _ := e.forge.ReadFile(ctx, "kf-pipeline", ComposedPath)
	// Three builds: of the write-back commit itself, then of two more commits.
	for i, c := range []string{tip, "4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a", "5b5b5b5b5b5b5b5b5b5b5b5b5b5b5b5b5b5b5b5b"} {
		res, _, err := e.runAt(t, c, false)
		if err != nil {
			t.Fatalf("build %d: %v", i, err)
		}
		o := res.Outputs.(*Outputs)
		if o.Status != "unchanged" || o.Commit != "" || o.VersionID != first.VersionID || o.VersionName != first.VersionName ||
			res.Summary != "pipeline djia30-sentiment version "+first.VersionName+" unchanged; nothing written back" {
			t.Errorf("build %d: %q %+v", i, res.Summary, o)
		}
		if got := e.tip(t); got != tip {
			t.Errorf("build %d moved kf-pipeline from %s to %s", i, tip, got)
		}
		if got := e.commits(t); got != count {
			t.Errorf("build %d: kf-pipeline has %s commits, want %s", i, got, count)
		}
		if l := e.lock(t); l.SourceCommit != commit || l.VersionID != first.VersionID {
			t.Errorf("build %d: lock %+v, want sourceCommit %s", i, l, commit)
		}
	}
	if got, _ := e.forge.ReadFile(ctx, "kf-pipeline", ComposedPath); !bytes.Equal(got, composed) {
		t.Error("composed spec changed")
	}

	// A composed spec edited on the branch is rewritten alone; the lock stays.
	if _, err := e.forge.WriteBack(ctx, forge.WriteBack{Branch: "kf-pipeline", Files: map[string][]byte{ComposedPath: []byte("edited\n")}, Message: "edit"}); err != nil {
		t.Fatal(err)
	}
	edited := e.tip(t)
	res, _, err = e.runAt(t, edited, false)
	if err != nil {
		t.Fatal(err)
	}
	if o := res.Outputs.(*Outputs); o.Status != "unchanged" || o.Commit == "" || o.Commit != e.tip(t) || e.commits(t) != "4" {
		t.Errorf("after an edit: %+v, %s commits", o, e.commits(t))
	}
	if got, _ := e.forge.ReadFile(ctx, "kf-pipeline", ComposedPath); !bytes.Equal(got, composed) {
		t.Error("composed spec not restored")
	}
	if l := e.lock(t); l.SourceCommit != commit {
		t.Errorf("lock rewritten: %+v", l)
	}
	if msg := e.git(t, "log", "-1", "--format=%s", "refs/heads/kf-pipeline"); msg != "branchml pipeline: composed spec of version "+first.VersionName+" for "+edited {
		t.Errorf("message %q", msg)
	}
	tip = e.tip(t)
	if res, _, err = e.runAt(t, tip, false); err != nil || res.Outputs.(*Outputs).Commit != "" || e.tip(t) != tip {
		t.Errorf("after the restore: %+v %v", res, err)
	}

	// A new spec is a new version and a new lock made by its commit; going
	// back to the first spec finds the first version but the lock names the
	// second, so the lock is rewritten (once).
	e.cfg.Pipeline.Resources["train"] = config.Resources{CPU: "4", Memory: "2Gi"}
	const c2, c3 = "6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c", "7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d"
	res, _, err = e.runAt(t, c2, false)
	if err != nil {
		t.Fatal(err)
	}
	second := res.Outputs.(*Outputs)
	if l := e.lock(t); second.Status != "created" || l.SourceCommit != c2 || l.VersionID != second.VersionID || e.commits(t) != "5" {
		t.Errorf("new spec: %+v, lock %+v", second, l)
	}
	e.cfg.Pipeline.Resources["train"] = config.Resources{CPU: "2", Memory: "2Gi"}
	for i := 0; i < 2; i++ {
		res, _, err = e.runAt(t, c3, false)
		if err != nil {
			t.Fatal(err)
		}
		o := res.Outputs.(*Outputs)
		if l := e.lock(t); o.Status != "unchanged" || o.VersionID != first.VersionID || l.VersionID != first.VersionID || l.SourceCommit != c3 || e.commits(t) != "6" {
			t.Errorf("back to the first spec (%d): %+v, lock %+v, %s commits", i, o, l, e.commits(t))
		}
	}
}

func TestNothingWrittenOnFailure(t *testing.T) {
	e := setup(t, small, true)
	e.kfp.Inject(fake.On("POST", "upload_version$", 0, fake.Unavailable()))
	_, _, err := e.run(t, false)
	var ce *agent.Error
	if !errors.As(err, &ce) || ce.Code != agent.ExitFailed || !strings.Contains(ce.Fix, "unavailable") {
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
	if agent.CodeOf(err) != agent.ExitUsage || !strings.Contains(err.Error(), ".branchml/components.lock.json on branch build-components") {
		t.Errorf("no lock: %v", err)
	}
	e = setup(t, small, true)
	e.cfg.Pipeline.Resources = map[string]config.Resources{"evaluate": {CPU: "1"}}
	_, _, err = e.run(t, false)
	if agent.CodeOf(err) != agent.ExitUsage || !strings.Contains(err.Error(), "task evaluate: pipeline.resources names a task") {
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
	for _, s := range []string{"diff against version 3f2a9c1b7d4e-", "-          cpuLimit: 2\n", "+          cpuLimit: 4\n", "-          resourceCpuLimit: '2'\n", "+          resourceCpuLimit: '4'\n"} {
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

// A plan-only (PR) build while the KFP API server is down plans offline:
// it says that the server could not be reached and what it still checked.
func TestDryRunWhenKFPIsDown(t *testing.T) {
	e := setup(t, small, true)
	if _, _, err := e.run(t, false); err != nil { // a composed spec on the branch
		t.Fatal(err)
	}
	e.kfp.Close()
	e.cfg.Pipeline.Resources["train"] = config.Resources{CPU: "4", Memory: "2Gi"}
	res, out, err := e.run(t, true)
	if err != nil {
		t.Fatal(err)
	}
	o := res.Outputs.(*Outputs)
	if !strings.Contains(o.Offline, "the KFP API server at "+e.kfp.URL+" could not be reached") ||
		!strings.Contains(res.Summary, "planned offline: the KFP API server at "+e.kfp.URL+" could not be reached") ||
		!strings.Contains(res.Summary, "checked without it: the spec composes and validates, 2 images pinned, diff against .branchml/pipeline.composed.yaml on kf-pipeline") ||
		!strings.Contains(out, "+          cpuLimit: 4\n") {
		t.Errorf("offline plan: %s\n%+v\n%s", res.Summary, o, out)
	}
	// An answer that refuses us (401) still fails the plan.
	s := fake.New(fake.WithToken("other"))
	defer s.Close()
	c, _ := kfp.New(s.URL, kfp.WithRetry(kfp.RetryPolicy{Attempts: 1}))
	e.c = c
	if _, _, err := e.run(t, true); agent.CodeOf(err) != agent.ExitFailed || !strings.Contains(err.Error(), "401") {
		t.Errorf("401: %v", err)
	}
}

// refusing is a backend that cannot run the spec (as the local runner says).
type refusing struct{ pipelines.Backend }

func (refusing) CheckSpec(context.Context, []byte) error {
	return errors.New("not supported by the local runner: pipeline workspaces ({{$.workspace_path}}) (task train)")
}

func TestBackendRefusesAtPlanAndUploadAlike(t *testing.T) {
	e := setup(t, filepath.Join("pipelinespec", "testdata", "small.yaml"), true)
	for _, dry := range []bool{true, false} {
		var out bytes.Buffer
		_, err := Run(context.Background(), Options{Config: e.cfg, Forge: e.forge, Backend: refusing{e.c}, Workspace: e.ws, Commit: commit, DryRun: dry, Out: &out})
		var ae *agent.Error
		if !errors.As(err, &ae) || ae.Code != agent.ExitUsage || !strings.Contains(err.Error(), "not supported by the local runner: pipeline workspaces ({{$.workspace_path}}) (task train)") {
			t.Errorf("dry %v: %v", dry, err)
		}
	}
	if n := len(e.kfp.Pipelines()); n != 0 {
		t.Errorf("%d pipelines uploaded", n)
	}
}
