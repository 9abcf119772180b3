package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/backends/forge/gitremote"
	"github.com/branchml/branchml/agents/backends/storage"
	"github.com/branchml/branchml/agents/backends/storage/local"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/records"
	"github.com/branchml/branchml/agents/stages/snapshot/lineage"
	"github.com/branchml/branchml/agents/stages/train"
)

const commit = "9f2c4e1a7b3d5c6e8f0a1b2c3d4e5f6a7b8c9d0e"

var t0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

func testConfig(t *testing.T) *config.Config {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "branchml.yaml")
	os.WriteFile(path, []byte("apiVersion: branchml.dev/v1\nproject: djia30\nbranches: {build: build-components, pipeline: kf-pipeline, train: training, deploy: deploy-model}\n"), 0o644)
	cfg, err := config.Load(path, config.WithEnviron(nil))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func testInput() Input {
	return Input{
		Run: records.RunRecord{APIVersion: records.APIVersion, Kind: "RunRecord", SourceCommit: commit, Backend: "local",
			RunID: "run-5d1c2a", Experiment: "djia30", PipelineID: "djia30-sentiment", VersionID: "v-7a3e", State: "SUCCEEDED",
			Parameters: map[string]any{"epochs": 30.0}, Metrics: map[string]any{"validation": map[string]any{"auc": 0.57}},
			Model:      &records.ModelRef{Name: "djia30", Version: 3, Volume: "djia30-model", Path: "/models/djia30"},
			DataVolume: "djia30-data", StartedAt: t0, FinishedAt: t0.Add(4 * time.Minute)},
		Pipeline: records.PipelineLock{Backend: "local", PipelineID: "djia30-sentiment", PipelineName: "djia30-sentiment",
			VersionID: "v-7a3e", VersionName: "9f2c4e1-7a3e5b21", SpecHash: "sha256:7a3e"},
		Components: records.ComponentsLock{Components: map[string]records.LockedComponent{
			"train":        {Image: "127.0.0.1:5000/djia30/train@sha256:bb22", Digest: "sha256:bb22"},
			"prepare-data": {Image: "127.0.0.1:5000/djia30/prepare-data@sha256:aa11", Digest: "sha256:aa11"},
		}},
		Build: agent.BuildContext{Branch: "training", Commit: commit, BuildURL: "https://jenkins.example.com/job/djia30/42/", BuildUser: "ana"},
	}
}

type world struct {
	cfg    *config.Config
	st     *local.Backend
	forge  *gitremote.Forge
	remote string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	ctx := context.Background()
	w := &world{cfg: testConfig(t)}
	var err error
	if w.st, err = local.New(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"djia30-data", "djia30-model"} {
		vol, err := w.st.EnsureVolume(ctx, storage.VolumeSpec{Name: v})
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(vol.Path, v+".txt"), []byte("content of "+v), 0o644)
	}
	w.remote = filepath.Join(t.TempDir(), "djia30.git")
	if w.forge, err = gitremote.Init(ctx, w.remote, map[string][]byte{"README.md": []byte("djia30\n")}, []string{"main", "training"}); err != nil {
		t.Fatal(err)
	}
	return w
}

func quiet() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(os.Stderr)
	l.SetLevel(logrus.WarnLevel)
	return l
}

func TestRunSnapshotsRecordsAndWritesBack(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	opts := Options{Config: w.cfg, Storage: w.st, Forge: w.forge, Input: testInput(), Log: quiet(), Now: func() time.Time { return t0.Add(6 * time.Minute) }}
	rec, err := Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	id := lineage.ID(commit, "run-5d1c2a")
	if rec.ID != id || rec.Data.Snapshot != "djia30-data-"+id || rec.Model.Snapshot.Snapshot != "djia30-model-"+id {
		t.Fatalf("record ids: %s %s %s", rec.ID, rec.Data.Snapshot, rec.Model.Snapshot.Snapshot)
	}
	dm, _ := w.st.Meta(rec.Data.Snapshot)
	if rec.Data.Handle != dm.Handle || rec.Data.Handle == "" {
		t.Fatalf("data handle %q, snapshot has %q", rec.Data.Handle, dm.Handle)
	}
	wantLabels := map[string]string{storage.KeyCommit: commit, storage.KeyRunID: "run-5d1c2a", storage.KeyPipelineVersion: "v-7a3e",
		storage.KeyLineageID: id, storage.KeyRole: "data"}
	if !reflect.DeepEqual(dm.Labels, wantLabels) {
		t.Fatalf("labels = %v\nwant %v", dm.Labels, wantLabels)
	}
	var attached lineage.Record
	if err := json.Unmarshal([]byte(dm.Annotations[storage.AnnotationLineage]), &attached); err != nil || attached.ID != id {
		t.Fatalf("attached lineage = %+v, %v", attached, err)
	}
	// Written back to training as one file.
	raw, err := w.forge.ReadFile(ctx, "training", ".branchml/lineage/"+id+".json")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := rec.Marshal()
	if string(raw) != string(want) {
		t.Fatalf("written record:\n%s\nwant\n%s", raw, want)
	}
	got, err := lineage.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if got.Images[0].Component != "prepare-data" || got.Images[1].Digest != "sha256:bb22" || got.StartedBy.User != "ana" ||
		got.Model.Version != 3 || got.Pipeline.VersionName != "9f2c4e1-7a3e5b21" || got.Config.Path != "branchml.yaml" {
		t.Fatalf("record = %+v", got)
	}
	// Twice for the same commit and run: same record, no new snapshot.
	rec2, err := Run(ctx, opts)
	if err != nil || rec2.Data.Handle != rec.Data.Handle {
		t.Fatalf("second run = %+v, %v", rec2, err)
	}
	if list, _ := w.st.ListSnapshots(ctx, "djia30-data"); len(list) != 1 {
		t.Fatalf("%d data snapshots after two runs, want 1", len(list))
	}
}

// A rerun for a recorded run (a later build reusing it, from another
// commit, at another time) takes no snapshot and commits nothing: the
// record on the training branch is returned as it is, with its ID made
// from the run's own commit.
func TestRunAgainForARecordedRunChangesNothing(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	opts := Options{Config: w.cfg, Storage: w.st, Forge: w.forge, Input: testInput(), Log: quiet(), Now: func() time.Time { return t0.Add(6 * time.Minute) }}
	rec, err := Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	id := lineage.ID(commit, "run-5d1c2a")
	written, _ := w.forge.ReadFile(ctx, "training", lineage.Path(id))
	tip, count := git(t, w.remote, "rev-parse", "refs/heads/training"), git(t, w.remote, "rev-list", "--count", "refs/heads/training")
	for i, build := range []string{commit, "1111111111111111111111111111111111111111", "2222222222222222222222222222222222222222"} {
		opts.Input.Build.Commit = build // the build of a write-back commit reusing the run
		opts.Input.Build.BuildURL = "https://jenkins.example.com/job/djia30/" + strconv.Itoa(43+i) + "/"
		opts.Now = func() time.Time { return t0.Add(time.Duration(10+i) * time.Minute) }
		again, err := Run(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		if again.ID != id || again.Data.Handle != rec.Data.Handle || !again.CreatedAt.Equal(rec.CreatedAt) || again.Source.Commit != commit {
			t.Errorf("build %d: record %+v", i, again)
		}
		if got := git(t, w.remote, "rev-parse", "refs/heads/training"); got != tip {
			t.Errorf("build %d moved training", i)
		}
		if got := git(t, w.remote, "rev-list", "--count", "refs/heads/training"); got != count {
			t.Errorf("build %d: %s commits on training, want %s", i, got, count)
		}
		for _, v := range []string{"djia30-data", "djia30-model"} {
			if list, _ := w.st.ListSnapshots(ctx, v); len(list) != 1 {
				t.Errorf("build %d: %d snapshots of %s, want 1", i, len(list), v)
			}
		}
	}
	if got, _ := w.forge.ReadFile(ctx, "training", lineage.Path(id)); string(got) != string(written) {
		t.Error("lineage record rewritten")
	}
	// Without the run's commit, the build's is used.
	in := testInput()
	in.Run.SourceCommit, in.Build.Commit = "", "3333333333333333333333333333333333333333"
	plan, err := Plan(w.cfg, in, w.st, t0)
	if err != nil || plan.ID != lineage.ID(in.Build.Commit, "run-5d1c2a") {
		t.Errorf("plan = %+v, %v", plan, err)
	}
}

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := exec.Command("git", append([]string{"--git-dir", dir}, args...)...).Output()
	if err != nil {
		t.Fatalf("git %v: %v", args, err)
	}
	return strings.TrimSpace(string(out))
}

func TestRunRefusesBadInputAndPlansDryRun(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	in := testInput()
	in.Run.State = "FAILED"
	_, err := Run(ctx, Options{Config: w.cfg, Storage: w.st, Input: in, Log: quiet()})
	if agent.CodeOf(err) != agent.ExitUsage {
		t.Fatalf("failed run: %v (code %d)", err, agent.CodeOf(err))
	}
	in = testInput()
	in.Build.Commit, in.Run.SourceCommit = "", ""
	if _, err := Run(ctx, Options{Config: w.cfg, Storage: w.st, Input: in, Log: quiet()}); agent.CodeOf(err) != agent.ExitUsage {
		t.Fatalf("no commit: %v", err)
	}
	rec, err := Run(ctx, Options{Config: w.cfg, Storage: w.st, Forge: w.forge, Input: testInput(), DryRun: true, Log: quiet()})
	if err != nil || rec.Data.Handle != "" {
		t.Fatalf("dry run = %+v, %v", rec, err)
	}
	if list, _ := w.st.ListSnapshots(ctx, "djia30-data"); len(list) != 0 {
		t.Fatal("dry run took a snapshot")
	}
	// A missing volume fails with a fix and records nothing.
	in = testInput()
	in.Run.DataVolume = "nope"
	_, err = Run(ctx, Options{Config: w.cfg, Storage: w.st, Forge: w.forge, Input: in, Log: quiet()})
	var ce *agent.Error
	if !errors.As(err, &ce) || ce.Code != agent.ExitFailed || !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("missing volume: %v", err)
	}
	if _, err := w.forge.ReadFile(ctx, "training", lineage.Path(lineage.ID(commit, "run-5d1c2a"))); err == nil {
		t.Fatal("lineage recorded although a snapshot failed")
	}
}

func TestTrainHook(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	in := testInput()
	pl, _ := json.Marshal(in.Pipeline)
	if _, err := w.forge.WriteBack(ctx, trainWB("kf-pipeline", records.PipelineLockPath, pl)); err != nil {
		t.Fatal(err)
	}
	h := &TrainHook{Storage: w.st, Forge: w.forge, Log: quiet(), Build: agent.BuildContext{BuildUser: "ana"}}
	res, err := h.Snapshot(ctx, train.SnapshotRequest{Config: w.cfg, Record: &in.Run, DataVolume: "djia30-data", ModelVolume: "djia30-model", SourceCommit: commit})
	if err != nil {
		t.Fatal(err)
	}
	id := lineage.ID(commit, "run-5d1c2a")
	if res.LineageID != id || !reflect.DeepEqual(res.Snapshots, []string{"djia30-data-" + id, "djia30-model-" + id}) {
		t.Fatalf("result = %+v", res)
	}
	raw, _ := w.forge.ReadFile(ctx, "training", lineage.Path(id))
	rec, err := lineage.Parse(raw)
	if err != nil || rec.Pipeline.VersionName != "9f2c4e1-7a3e5b21" || rec.StartedBy.User != "ana" {
		t.Fatalf("record = %+v, %v", rec, err)
	}
}

func TestPrune(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	clock := t0
	st, _ := local.New(t.TempDir(), local.WithClock(func() time.Time { clock = clock.Add(time.Minute); return clock }))
	vol, _ := st.EnsureVolume(ctx, storage.VolumeSpec{Name: "d"})
	for _, n := range []string{"d-1", "d-2", "d-3", "d-4", "d-5"} {
		os.WriteFile(filepath.Join(vol.Path, "f"), []byte(n), 0o644)
		if _, err := st.Snapshot(ctx, "d", storage.SnapshotSpec{Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	_ = w
	recs := []*lineage.Record{{Data: lineage.SnapshotRef{Snapshot: "d-1"}, Model: lineage.Model{Name: "djia30", Version: 1, Snapshot: lineage.SnapshotRef{Snapshot: "m-1"}}}}
	prot := Protected(recs, &records.DeployStatus{Model: "djia30", StableVersion: 1}, "d-2")
	if !reflect.DeepEqual(prot, map[string]bool{"d-1": true, "m-1": true, "d-2": true}) {
		t.Fatalf("protected = %v", prot)
	}
	plan, err := Prune(ctx, PruneOptions{Storage: st, Volumes: []string{"d"}, Keep: 2, Protected: prot, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	want := &PruneResult{Deleted: []string{"d-3"}, Kept: []string{"d-5", "d-4", "d-2", "d-1"}, Protected: []string{"d-2", "d-1"}}
	if !reflect.DeepEqual(plan, want) {
		t.Fatalf("plan = %+v\nwant %+v", plan, want)
	}
	if list, _ := st.ListSnapshots(ctx, "d"); len(list) != 5 {
		t.Fatal("dry run deleted")
	}
	if _, err := Prune(ctx, PruneOptions{Storage: st, Volumes: []string{"d"}, Keep: 2, Protected: prot}); err != nil {
		t.Fatal(err)
	}
	list, _ := st.ListSnapshots(ctx, "d")
	var names []string
	for _, s := range list {
		names = append(names, s.Name)
	}
	if !reflect.DeepEqual(names, []string{"d-5", "d-4", "d-2", "d-1"}) {
		t.Fatalf("after prune: %v", names)
	}
	if _, err := Prune(ctx, PruneOptions{Storage: st, Volumes: []string{"d"}, Keep: 0}); err == nil {
		t.Fatal("keep 0 accepted")
	}
}

func trainWB(branch, path string, data []byte) forge.WriteBack {
	return forge.WriteBack{Branch: branch, From: "main", Files: map[string][]byte{path: data}, Message: "branchml pipeline: lock for test"}
}

// The lineage names the reviewed pull request whose merge put the training
// commit on its branch: number, author, approvers, who merged.
func TestLineageNamesThePullRequest(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	if _, err := w.forge.WriteBack(ctx, forge.WriteBack{Branch: "main", Message: "pipeline change", Files: map[string][]byte{"pipeline.yaml": []byte("x\n")}}); err != nil {
		t.Fatal(err)
	}
	pr, err := w.forge.EnsurePullRequest(ctx, forge.PullRequest{Head: "main", Base: "training", Title: "Merge kf-pipeline into training", Author: "ana"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.forge.Review(ctx, pr.Number, "bob", "APPROVED", ""); err != nil {
		t.Fatal(err)
	}
	merge, err := w.forge.MergeAs(ctx, pr.Number, "bob")
	if err != nil {
		t.Fatal(err)
	}
	in := testInput()
	in.Run.SourceCommit, in.Build.Commit = merge, merge
	rec, err := Run(ctx, Options{Config: w.cfg, Storage: w.st, Forge: w.forge, Input: in, Log: quiet(), Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	want := &lineage.PullRequest{Number: 1, URL: pr.URL, Title: "Merge kf-pipeline into training", Author: "ana", Approvers: []string{"bob"}, MergedBy: "bob", MergeCommit: merge}
	got := rec.PullRequest
	if got == nil || got.MergedAt == nil {
		t.Fatalf("pull request = %+v", got)
	}
	got.MergedAt = nil
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("pull request = %+v\nwant %+v", got, want)
	}
}
