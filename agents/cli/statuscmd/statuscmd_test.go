package statuscmd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/backends/forge/gitremote"
	"github.com/branchml/branchml/agents/backends/serving"
	"github.com/branchml/branchml/agents/backends/serving/local"
	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/cli/snapshotcmd"
	"github.com/branchml/branchml/agents/cli/statuscmd"
	"github.com/branchml/branchml/agents/cli/traincmd"
	"github.com/branchml/branchml/agents/records"
	"github.com/branchml/branchml/agents/stages/snapshot/lineage"
)

func js(v any) []byte { b, _ := json.MarshalIndent(v, "", "  "); return b }

// "What is deployed, from which commit, run and data snapshot" in one
// command: status reads the stages' records and the serving plane; the
// list commands list runs and lineage records; a corrupted record is an
// error naming it.
func TestStatusAndLists(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	remote := filepath.Join(state, "forge", "djia30.git")
	cfgText := "apiVersion: branchml.dev/v1\nproject: djia30\nbranches: {build: build-components, pipeline: kf-pipeline, train: training, deploy: deploy-model}\n" +
		"deploy: {model: djia30}\nbackends:\n  stateDir: " + state + "\n"
	f, err := gitremote.Init(ctx, remote, map[string][]byte{"branchml.yaml": []byte(cfgText)}, []string{"main", "build-components", "kf-pipeline", "training", "deploy-model"})
	if err != nil {
		t.Fatal(err)
	}
	ws := filepath.Join(dir, "ws")
	os.MkdirAll(ws, 0o755)
	os.WriteFile(filepath.Join(ws, "branchml.yaml"), []byte(cfgText), 0o644)
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	rec := &lineage.Record{APIVersion: lineage.APIVersion, Kind: lineage.Kind, SchemaVersion: lineage.SchemaVersion,
		ID: lineage.ID("aaaaaaaaaaaa1111", "run-2"), Source: lineage.Source{Branch: "training", Commit: "aaaaaaaaaaaa1111"},
		Pipeline: lineage.Pipeline{ID: "p", VersionID: "v-7a3e", VersionName: "9f2c4e1-7a3e5b21"}, Run: lineage.Run{ID: "run-2"},
		Data:        lineage.SnapshotRef{Volume: "djia30-data", Snapshot: "djia30-data-lin-x"},
		Model:       lineage.Model{Name: "djia30", Version: 2, Snapshot: lineage.SnapshotRef{Volume: "djia30-model", Snapshot: "djia30-model-lin-x"}},
		PullRequest: &lineage.PullRequest{Number: 5, Author: "ds1", Approvers: []string{"reviewer"}, MergedBy: "reviewer"}, CreatedAt: t0}
	rec.ID = lineage.ID(rec.Source.Commit, rec.Run.ID)
	lin, _ := rec.Marshal()
	for branch, files := range map[string]map[string][]byte{
		"build-components": {records.ComponentsLockPath: js(records.ComponentsLock{SourceCommit: "bbbbbbbbbbbb2222", Registry: "127.0.0.1:5000", Components: map[string]records.LockedComponent{"train": {}, "serve": {}}})},
		"kf-pipeline":      {records.PipelineLockPath: js(records.PipelineLock{SourceCommit: "cccccccccccc3333", Backend: "local", PipelineName: "djia30-sentiment", VersionID: "v-7a3e", VersionName: "9f2c4e1-7a3e5b21"})},
		"training": {records.TrainingLockPath: js(records.RunRecord{RunID: "run-2", State: "SUCCEEDED", SourceCommit: "aaaaaaaaaaaa1111", Gate: "passed", PullRequest: "#6", Model: &records.ModelRef{Name: "djia30", Version: 2}, StartedAt: t0}),
			records.RunsDir + "/run-1.json": js(records.RunRecord{RunID: "run-1", DisplayName: "djia30-aaaaaaaaaaaa", State: "SUCCEEDED", SourceCommit: "dddddddddddd", Model: &records.ModelRef{Name: "djia30", Version: 1}, StartedAt: t0.Add(-time.Hour)}),
			records.RunsDir + "/run-2.json": js(records.RunRecord{RunID: "run-2", DisplayName: "djia30-bbbbbbbbbbbb", State: "SUCCEEDED", SourceCommit: "aaaaaaaaaaaa1111", Gate: "passed", Model: &records.ModelRef{Name: "djia30", Version: 2}, StartedAt: t0}),
			lineage.Path(rec.ID):            lin},
		"deploy-model": {records.DeployStatusPath: js(records.DeployStatus{Model: "djia30", Phase: "Succeeded", StableVersion: 2, SourceCommit: "eeeeeeeeeeee4444", UpdatedAt: t0})},
	} {
		if _, err := f.WriteBack(ctx, forge.WriteBack{Branch: branch, Message: "records", Files: files}); err != nil {
			t.Fatal(err)
		}
	}
	// What serves: v2 on a plane with a real server.
	bin := filepath.Join(dir, "fake-tfserving")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/branchml/branchml/agents/internal/fake/tfserving/cmd/fake-tfserving").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	os.MkdirAll(filepath.Join(dir, "models", "djia30", "2"), 0o755)
	plane, err := local.New("djia30", []string{bin}, local.WithStateDir(state), local.WithHost(), local.WithOwner("branchml quickstart --serve"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plane.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer plane.Close(ctx)
	if err := plane.Deploy(ctx, serving.Stable, records.ModelRef{Name: "djia30", Version: 2, Path: filepath.Join(dir, "models", "djia30")}); err != nil {
		t.Fatal(err)
	}
	run := func(app *ucli.App, args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := cli.Run(ctx, app, append([]string{app.Name}, args...), cli.Streams{Out: &out, Err: &errb})
		return code, out.String(), errb.String()
	}
	branchml := cli.NewApp("branchml", "test", statuscmd.Command())
	train, snapshot := traincmd.App(), snapshotcmd.App()
	code, out, errs := run(branchml, "status", "--workspace", ws)
	if code != 0 {
		t.Fatalf("status = %d\n%s\n%s", code, out, errs)
	}
	for _, want := range []string{
		"djia30: model djia30\nstages (the last record each wrote back):\n",
		"  build     build-components  2 components pushed to 127.0.0.1:5000, for commit bbbbbbbbbbbb\n",
		"  pipeline  kf-pipeline       djia30-sentiment version 9f2c4e1-7a3e5b21 (v-7a3e) on local, for commit cccccccccccc\n",
		"  train     training          run run-2 SUCCEEDED, model djia30 v2, KPI gate passed, pull request #6, for commit aaaaaaaaaaaa\n",
		"  deploy    deploy-model      Succeeded, stable v2, updated 2026-12-01T12:00:00Z, for commit eeeeeeeeeeee\n",
		fmt.Sprintf("serving (local, %s, plane pid %d (branchml quickstart --serve, since ", plane.URL(), os.Getpid()),
		"  stable djia30 v2 at 100% since ",
		"         from training commit aaaaaaaaaaaa (pull request #5 by ds1, approved by reviewer, merged by reviewer)\n",
		"         run run-2 of pipeline version 9f2c4e1-7a3e5b21 (v-7a3e)\n",
		"         data snapshot djia30-data-lin-x, model snapshot djia30-model-lin-x (lineage " + rec.ID + ")",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "\n"); n > 24 {
		t.Errorf("status takes %d lines, not one screen:\n%s", n, out)
	}
	code, out, _ = run(branchml, "status", "--workspace", ws, "-o", "json")
	var sj struct {
		Outputs statuscmd.Status `json:"outputs"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &sj) != nil || len(sj.Outputs.Served) != 1 || sj.Outputs.Served[0].Lineage.Run.ID != "run-2" {
		t.Fatalf("status -o json = %d\n%s", code, out)
	}
	// branchml-train list
	code, out, errs = run(train, "list", "--workspace", ws)
	if code != 0 || !strings.HasPrefix(out, "run-1  djia30-aaaaaaaaaaaa      SUCCEEDED   djia30 v1  commit dddddddddddd  started 2026-12-01T11:00:00Z\nrun-2  ") {
		t.Fatalf("train list = %d\n%s\n%s", code, out, errs)
	}
	// branchml-train status takes the --workspace its error suggests.
	if code, _, errs = run(train, "status", "no-such-run", "--workspace", ws); code != 1 || strings.Contains(errs, "flag provided but not defined") {
		t.Fatalf("train status --workspace = %d\n%s", code, errs)
	}
	// branchml-snapshot lineage list (from the training branch through the forge)
	code, out, errs = run(snapshot, "lineage", "list", "--config", filepath.Join(ws, "branchml.yaml"))
	if code != 0 || out != rec.ID+"  djia30 v2  run run-2  commit aaaaaaaaaaaa  PR #5 (approved by reviewer)  data djia30-data-lin-x  model djia30-model-lin-x\n" {
		t.Fatalf("lineage list = %d\n%q\n%s", code, out, errs)
	}
	// lineage graph -o json is JSON.
	code, out, _ = run(snapshot, "lineage", "graph", "--config", filepath.Join(ws, "branchml.yaml"), "-o", "json")
	var gj struct {
		Outputs struct {
			Format string   `json:"format"`
			Graph  string   `json:"graph"`
			Recs   []string `json:"records"`
		} `json:"outputs"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &gj) != nil || gj.Outputs.Format != "dot" || !strings.HasPrefix(gj.Outputs.Graph, "digraph") || len(gj.Outputs.Recs) != 1 {
		t.Fatalf("lineage graph -o json = %d\n%s", code, out)
	}
	// A corrupted record: an error naming it, exit 2.
	f.WriteBack(ctx, forge.WriteBack{Branch: "training", Message: "truncate", Files: map[string][]byte{records.TrainingLockPath: []byte(`{"runId": "run-`)}})
	if code, _, errs = run(branchml, "status", "--workspace", ws); code != 2 || !strings.Contains(errs, ".branchml/training.lock.json on branch training is corrupted") {
		t.Fatalf("status with a corrupted record = %d\n%s", code, errs)
	}
}
