package traincmd

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/backends/forge/gitremote"
	"github.com/branchml/branchml/agents/backends/pipelines"
	"github.com/branchml/branchml/agents/backends/pipelines/local"
	"github.com/branchml/branchml/agents/backends/pipelines/local/runner"
	"github.com/branchml/branchml/agents/backends/pipelines/local/runner/runnertest"
	"github.com/branchml/branchml/agents/backends/registry"
	"github.com/branchml/branchml/agents/backends/storage"
	sbackends "github.com/branchml/branchml/agents/backends/storage/storagefactory"
	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/records"
	"github.com/branchml/branchml/agents/stages/snapshot/lineage"
)

const cfgYAML = `apiVersion: branchml.dev/v1
project: djia30
branches: {build: build-components, pipeline: kf-pipeline, train: training, deploy: deploy-model}
training:
  parameters: {epochs: 3}
  kpis:
  - {metric: validation.auc, op: ">", baseline: baselines.always_bullish.validation.auc}
  timeout: 1m
  stallTimeout: 1m
snapshot: {enabled: true}
`

// TestAppEndToEnd runs `branchml-train run` and `status` as Jenkins would,
// on the local backends: a bare git remote, the embedded registry holding a
// real image, the local runner executing real processes, local volumes.
func TestAppEndToEnd(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	ws := filepath.Join(dir, "ws")
	os.MkdirAll(ws, 0o755)
	os.WriteFile(filepath.Join(ws, "branchml.yaml"), []byte(cfgYAML+"backends:\n  stateDir: "+state+"\n"), 0o644)

	addr, stop, err := registry.EnsureLocal(ctx, state)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	ref := runnertest.Push(t, addr, "djia30/train")

	f, err := gitremote.Init(ctx, filepath.Join(state, "forge", "djia30.git"), map[string][]byte{"README.md": []byte("x\n")},
		[]string{"main", "kf-pipeline", "training", "deploy-model"})
	if err != nil {
		t.Fatal(err)
	}
	// The pipeline stage's side: a version uploaded to the local backend and its lock.
	up, _ := local.New(filepath.Join(state, "pipelines"), runner.New(nil))
	v, err := up.UploadVersion(ctx, pipelines.Upload{PipelineName: "djia30-sentiment", VersionName: "v1", Spec: runnertest.TrainSpec(ref, false)})
	if err != nil {
		t.Fatal(err)
	}
	lock, _ := json.Marshal(records.PipelineLock{Backend: "local", PipelineID: v.PipelineID, PipelineName: v.PipelineName, VersionID: v.VersionID, VersionName: v.VersionName})
	if _, err := f.WriteBack(ctx, forge.WriteBack{Branch: "kf-pipeline", Files: map[string][]byte{records.PipelineLockPath: lock}, Message: "lock"}); err != nil {
		t.Fatal(err)
	}

	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := cli.Run(ctx, App(), append([]string{"branchml-train"}, args...), cli.Streams{Out: &out, Err: &errb})
		return code, out.String(), errb.String()
	}
	resultFile := filepath.Join(dir, "result.json")
	code, out, logs := run("run", "--workspace", ws, "--commit", "c0ffee00c0ffee00c0ffee00", "--poll-interval", "20ms", "--result", resultFile)
	if code != 0 {
		t.Fatalf("run exit %d\n%s\n%s", code, out, logs)
	}
	var res struct {
		OK      bool `json:"ok"`
		Outputs struct {
			RunID       string            `json:"runId"`
			State       string            `json:"state"`
			Model       records.ModelRef  `json:"model"`
			PullRequest forge.PullRequest `json:"pullRequest"`
			LineageID   string            `json:"lineageId"`
		} `json:"outputs"`
	}
	raw, _ := os.ReadFile(resultFile)
	json.Unmarshal(raw, &res)
	if !res.OK || res.Outputs.State != "SUCCEEDED" || res.Outputs.Model.Version != 1 || res.Outputs.PullRequest.Head != "branchml/promote-djia30-v1" || res.Outputs.LineageID == "" {
		t.Errorf("result = %s", raw)
	}
	if lin, err := f.ReadFile(ctx, "training", records.LineageDir+"/"+res.Outputs.LineageID+".json"); err != nil || !strings.Contains(string(lin), res.Outputs.RunID) {
		t.Errorf("lineage record %s: %v %s", res.Outputs.LineageID, err, lin)
	}
	if !strings.Contains(out, "run "+res.Outputs.RunID+" (djia30-c0ffee00c0ff) SUCCEEDED; KPI gate passed; pull request #1 branchml/promote-djia30-v1 → deploy-model") {
		t.Errorf("summary = %s", out)
	}

	code, out, logs = run("status", "--config", filepath.Join(ws, "branchml.yaml"), "-o", "json", res.Outputs.RunID)
	if code != 0 || !strings.Contains(out, `"state": "SUCCEEDED"`) {
		t.Errorf("status exit %d: %s %s", code, out, logs)
	}
	code, _, logs = run("status", "--config", filepath.Join(ws, "branchml.yaml"), "6f0b6c1e-4a8e-5b59-9d57-0c1b2a6d4e11")
	if code != 1 || !strings.Contains(logs, "not found") {
		t.Errorf("status of unknown run: exit %d %s", code, logs)
	}

	// A PR build plans only.
	code, out, logs = run("run", "--workspace", ws, "--commit", "feedfeedfeedfeedfeed", "--change-id", "7")
	if code != 0 || !strings.Contains(out, "plan: start run djia30-feedfeedfeed of pipeline version "+v.VersionID) {
		t.Errorf("plan exit %d: %s %s", code, out, logs)
	}
}

// On Jenkins every write-back to the training branch starts a build of the
// new tip. Those builds reuse the run, and must not move the branch (or the
// builds never end) nor take snapshots: run the stage for the tip three
// times, through the real snapshot stage and local storage.
func TestAppRerunsForWriteBackCommitsChangeNothing(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	ws := filepath.Join(dir, "ws")
	os.MkdirAll(ws, 0o755)
	cfgBytes := []byte(cfgYAML + "backends:\n  stateDir: " + state + "\n")
	os.WriteFile(filepath.Join(ws, "branchml.yaml"), cfgBytes, 0o644)

	addr, stop, err := registry.EnsureLocal(ctx, state)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	ref := runnertest.Push(t, addr, "djia30/train")
	remote := filepath.Join(state, "forge", "djia30.git")
	f, err := gitremote.Init(ctx, remote, map[string][]byte{"README.md": []byte("x\n"), "branchml.yaml": cfgBytes},
		[]string{"main", "kf-pipeline", "training", "deploy-model"})
	if err != nil {
		t.Fatal(err)
	}
	up, _ := local.New(filepath.Join(state, "pipelines"), runner.New(nil))
	v, err := up.UploadVersion(ctx, pipelines.Upload{PipelineName: "djia30-sentiment", VersionName: "v1", Spec: runnertest.TrainSpec(ref, false)})
	if err != nil {
		t.Fatal(err)
	}
	lock, _ := json.Marshal(records.PipelineLock{Backend: "local", PipelineID: v.PipelineID, PipelineName: v.PipelineName, VersionID: v.VersionID, VersionName: v.VersionName})
	if _, err := f.WriteBack(ctx, forge.WriteBack{Branch: "kf-pipeline", Files: map[string][]byte{records.PipelineLockPath: lock}, Message: "lock"}); err != nil {
		t.Fatal(err)
	}
	git := func(args ...string) string {
		out, err := exec.Command("git", append([]string{"--git-dir", remote}, args...)...).Output()
		if err != nil {
			t.Fatalf("git %v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	cfg, err := config.Load(filepath.Join(ws, "branchml.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := sbackends.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	snapshots := func() int {
		n := 0
		for _, vol := range []string{"djia30-data", "djia30-model"} {
			list, _ := st.ListSnapshots(ctx, vol)
			n += len(list)
		}
		return n
	}
	type result struct {
		Summary string `json:"summary"`
		Outputs struct {
			RunID     string `json:"runId"`
			LineageID string `json:"lineageId"`
			Reused    bool   `json:"reused"`
		} `json:"outputs"`
	}
	run := func(c string) result {
		t.Helper()
		resultFile := filepath.Join(dir, "result.json")
		var out, errb bytes.Buffer
		code := cli.Run(ctx, App(), []string{"branchml-train", "run", "--workspace", ws, "--config", filepath.Join(ws, "branchml.yaml"),
			"--commit", c, "--poll-interval", "20ms", "--result", resultFile}, cli.Streams{Out: &out, Err: &errb})
		if code != 0 {
			t.Fatalf("run for %s: exit %d\n%s\n%s", c, code, out.String(), errb.String())
		}
		var r result
		raw, _ := os.ReadFile(resultFile)
		json.Unmarshal(raw, &r)
		return r
	}
	src := git("rev-parse", "refs/heads/training")
	first := run(src)
	if first.Outputs.Reused || first.Outputs.LineageID != lineage.ID(src, first.Outputs.RunID) || snapshots() != 2 {
		t.Fatalf("first = %+v, %d snapshots", first, snapshots())
	}
	tip, count := git("rev-parse", "refs/heads/training"), git("rev-list", "--count", "refs/heads/training")
	promo, promoCount := git("rev-parse", "refs/heads/branchml/promote-djia30-v1"), git("rev-list", "--count", "refs/heads/branchml/promote-djia30-v1")
	if tip == src {
		t.Fatal("nothing written back")
	}
	for i := 0; i < 3; i++ {
		c := git("rev-parse", "refs/heads/training") // the build of the newest tip
		r := run(c)
		if !r.Outputs.Reused || r.Outputs.RunID != first.Outputs.RunID || r.Outputs.LineageID != first.Outputs.LineageID || !strings.Contains(r.Summary, "(reused)") {
			t.Errorf("build %d: %+v", i+1, r)
		}
		if got := git("rev-parse", "refs/heads/training"); got != tip {
			t.Errorf("build %d moved training to %s: %s", i+1, got, git("log", "-1", "--format=%s", "refs/heads/training"))
		}
		if got := git("rev-list", "--count", "refs/heads/training"); got != count {
			t.Errorf("build %d: training has %s commits, want %s", i+1, got, count)
		}
		if git("rev-parse", "refs/heads/branchml/promote-djia30-v1") != promo || git("rev-list", "--count", "refs/heads/branchml/promote-djia30-v1") != promoCount {
			t.Errorf("build %d moved the promotion branch", i+1)
		}
		if n := snapshots(); n != 2 {
			t.Errorf("build %d: %d snapshots, want 2", i+1, n)
		}
	}
	lins, _ := os.ReadDir(filepath.Join(state, "pipelines", "runs"))
	if len(lins) != 1 {
		t.Errorf("runs = %d, want 1", len(lins))
	}
}

// stages.train.requireApproval: a commit pushed onto the training branch is
// refused (exit 2, the fix text) before any backend is opened or a run
// started or recorded; one merged through an approved pull request gets
// past the gate (here to the missing pipeline lock).
func TestAppRequireApproval(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	os.WriteFile(filepath.Join(dir, "branchml.yaml"), []byte(cfgYAML+"stages:\n  train: {requireApproval: true}\nbackends:\n  stateDir: "+state+"\n"), 0o644)
	f, err := gitremote.Init(ctx, filepath.Join(state, "forge", "djia30.git"), map[string][]byte{"README.md": []byte("x\n")}, []string{"main", "kf-pipeline", "training", "deploy-model"})
	if err != nil {
		t.Fatal(err)
	}
	opened := 0 // the pipelines and storage backends the stage opened
	w := DefaultWiring
	w.Pipelines = func(e *cli.Env) (pipelines.Backend, func(), error) { opened++; return DefaultWiring.Pipelines(e) }
	w.Storage = func(e *cli.Env) (storage.Backend, error) { opened++; return DefaultWiring.Storage(e) }
	run := func(commit string) (int, string) {
		var out, errb bytes.Buffer
		code := cli.Run(ctx, AppWith(w), []string{"branchml-train", "run", "--workspace", dir, "--commit", commit}, cli.Streams{Out: &out, Err: &errb})
		return code, errb.String()
	}
	tips := func() []gitremote.Branch { b, _ := f.Branches(ctx); return b }
	pushed, err := f.WriteBack(ctx, forge.WriteBack{Branch: "training", Message: "a push", Files: map[string][]byte{"a.txt": []byte("a\n")}})
	if err != nil {
		t.Fatal(err)
	}
	before := tips()
	code, logs := run(pushed)
	if code != 2 || !strings.Contains(logs, "stages.train.requireApproval: commit "+pushed[:12]+" on training did not arrive through a merged pull request") ||
		!strings.Contains(logs, "fix: merge into training through a pull request with an approving review ('branchml pr open --head BRANCH --base training', approve, merge), or set stages.train.requireApproval: false") {
		t.Fatalf("unreviewed commit: exit %d\n%s", code, logs)
	}
	if after := tips(); opened != 0 || !reflect.DeepEqual(after, before) {
		t.Fatalf("a refused run opened %d backends; branches %+v, were %+v", opened, after, before)
	}

	f.WriteBack(ctx, forge.WriteBack{Branch: "main", Message: "a change", Files: map[string][]byte{"b.txt": []byte("b\n")}})
	pr, _ := f.EnsurePullRequest(ctx, forge.PullRequest{Head: "main", Base: "training", Title: "t", Author: "ds1"})
	if _, err := f.Review(ctx, pr.Number, "bob", "APPROVED", ""); err != nil {
		t.Fatal(err)
	}
	merged, err := f.MergeAs(ctx, pr.Number, "bob")
	if err != nil {
		t.Fatal(err)
	}
	code, logs = run(merged)
	if code != 2 || opened != 2 || strings.Contains(logs, "requireApproval") || !strings.Contains(logs, "find the pipeline version: "+records.PipelineLockPath+" on branch kf-pipeline") {
		t.Fatalf("approved merge: exit %d, %d backends opened\n%s", code, opened, logs)
	}
}
