package train

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"sigs.k8s.io/yaml"

	"github.com/branchml/branchml/agents/backends/forge/gitremote"
	"github.com/branchml/branchml/agents/backends/pipelines"
	plocal "github.com/branchml/branchml/agents/backends/pipelines/local"
	"github.com/branchml/branchml/agents/backends/pipelines/local/runner"
	"github.com/branchml/branchml/agents/backends/pipelines/local/runner/runnertest"
	"github.com/branchml/branchml/agents/backends/storage"
	slocal "github.com/branchml/branchml/agents/backends/storage/local"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/records"
	"github.com/branchml/branchml/agents/stages/snapshot/lineage"
	"github.com/branchml/branchml/agents/stages/train/follow"
)

const commit = "0123456789abcdef0123456789abcdef01234567"

const configYAML = `apiVersion: branchml.dev/v1
project: djia30
branches: {build: build-components, pipeline: kf-pipeline, train: training, deploy: deploy-model}
training:
  experiment: djia30
  parameters: {epochs: 3}
  data: {provision: true, size: 1Gi, parameter: data_path, source: data}
  model: {size: 1Gi, parameter: model_base_path, versionParameter: model_version}
  kpis:
  - {metric: validation.auc, op: ">", value: 0.5}
  - {metric: validation.auc, op: ">", baseline: baselines.always_bullish.validation.auc}
  timeout: 1m
  stallTimeout: 1m
snapshot: {enabled: true}
deploy: {model: djia30}
backends:
  pipelines: {type: local}
`

// snapshotter is the snapshot stage as far as train sees it: the lineage ID
// is derived from commit and run (lineage.ID), and the volumes are
// snapshotted in the storage backend under "<volume>-<lineage ID>".
type snapshotter struct {
	mu    sync.Mutex
	reqs  []SnapshotRequest
	err   error
	store *slocal.Backend
}

func (s *snapshotter) Snapshot(ctx context.Context, r SnapshotRequest) (*SnapshotResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, r)
	if s.err != nil {
		return nil, s.err
	}
	id := lineage.ID(r.SourceCommit, r.Record.RunID)
	var names []string
	for _, v := range []string{r.DataVolume, r.ModelVolume} {
		snap, err := s.store.Snapshot(ctx, v, storage.SnapshotSpec{Name: v + "-" + id})
		if err != nil {
			return nil, err
		}
		names = append(names, snap.Name)
	}
	return &SnapshotResult{LineageID: id, Snapshots: names}, nil
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type env struct {
	t     *testing.T
	dir   string
	cfg   *config.Config
	forge *gitremote.Forge
	pipes *plocal.Backend
	store *slocal.Backend
	snap  *snapshotter
	log   *syncBuffer
}

func (e *env) logString() string { return e.log.String() }

func setup(t *testing.T, failTrain bool, cfgYAML string) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "repo", "data"), 0o755)
	os.WriteFile(filepath.Join(dir, "repo", "data", "AAPL.csv"), []byte("Date,Open\n2017-01-03,115.8\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "repo", "branchml.yaml"), []byte(cfgYAML+"  stateDir: "+filepath.Join(dir, "state")+"\n"), 0o644)
	cfg, err := config.Load(filepath.Join(dir, "repo", "branchml.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	pipes, err := plocal.New(filepath.Join(dir, "state"), runner.New(runnertest.NewDirImages(t), runner.WithPollInterval(10*time.Millisecond),
		runner.WithIsolation(runner.IsolationProcess))) // the stage reads the model the train task writes to the volume path it passes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pipes.Close() })
	v, err := pipes.UploadVersion(ctx, pipelines.Upload{PipelineName: "djia30-sentiment", VersionName: "abc-1234", Spec: runnertest.TrainSpec("r/t@sha256:00", failTrain)})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, dir, cfg, "local", v)
	e.pipes = pipes
	return e
}

// newEnv is the stage's surroundings in dir, for the pipeline version v
// uploaded to the pipelines backend of type backend: the ML repository's
// forge (a bare git remote with main, kf-pipeline, training and
// deploy-model) with v's pipeline lock on kf-pipeline, and the storage
// backend under dir/state.
func newEnv(t *testing.T, dir string, cfg *config.Config, backend string, v *pipelines.Version) *env {
	t.Helper()
	ctx := context.Background()
	f, err := gitremote.Init(ctx, filepath.Join(dir, "remote.git"), map[string][]byte{"README.md": []byte("djia30\n")},
		[]string{"main", "kf-pipeline", "training", "deploy-model"})
	if err != nil {
		t.Fatal(err)
	}
	lock, _ := json.Marshal(records.PipelineLock{APIVersion: records.APIVersion, Kind: "PipelineLock", SourceCommit: "feed", Backend: backend,
		PipelineID: v.PipelineID, PipelineName: v.PipelineName, VersionID: v.VersionID, VersionName: v.VersionName, SpecHash: v.SpecHash})
	if _, err := f.WriteBack(ctx, forgeWB("kf-pipeline", records.PipelineLockPath, lock)); err != nil {
		t.Fatal(err)
	}
	store, err := slocal.New(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, dir: dir, cfg: cfg, forge: f, store: store, snap: &snapshotter{store: store}, log: &syncBuffer{}}
}

func (e *env) opts() Options {
	log := logrus.New()
	log.Out = e.log
	log.Formatter = &logrus.TextFormatter{DisableTimestamp: true}
	return Options{Config: e.cfg, Commit: commit, BuildURL: "https://ci/job/1", Forge: e.forge, Pipelines: e.pipes, Storage: e.store,
		Snapshotter: e.snap, Log: log, Follow: follow.Options{Interval: 10 * time.Millisecond}}
}

func (e *env) read(ref, path string) string {
	e.t.Helper()
	b, err := e.forge.ReadFile(context.Background(), ref, path)
	if err != nil {
		e.t.Fatalf("read %s:%s: %v", ref, path, err)
	}
	return string(b)
}

func (e *env) tip(branch string) string {
	bs, _ := e.forge.Branches(context.Background())
	for _, b := range bs {
		if b.Name == branch {
			return b.Commit
		}
	}
	return ""
}

// git runs git on the bare remote and returns its trimmed output.
func (e *env) git(args ...string) string {
	e.t.Helper()
	out, err := exec.Command("git", append([]string{"--git-dir", e.forge.Remote()}, args...)...).Output()
	if err != nil {
		e.t.Fatalf("git %v: %v", args, err)
	}
	return strings.TrimSpace(string(out))
}

// commits counts the commits of branch.
func (e *env) commits(branch string) string {
	return e.git("rev-list", "--count", "refs/heads/"+branch)
}

// snapshots counts the snapshots of the data and model volumes.
func (e *env) snapshots() int {
	n := 0
	for _, v := range []string{"djia30-data", "djia30-model"} {
		list, err := e.store.ListSnapshots(context.Background(), v)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			e.t.Fatal(err)
		}
		n += len(list)
	}
	return n
}

func (e *env) record() records.RunRecord {
	e.t.Helper()
	var rec records.RunRecord
	if err := json.Unmarshal([]byte(e.read("training", records.TrainingLockPath)), &rec); err != nil {
		e.t.Fatal(err)
	}
	return rec
}

func TestRunTrainsSnapshotsAndPromotes(t *testing.T) {
	e := setup(t, false, configYAML)
	ctx := context.Background()
	res, err := Run(ctx, e.opts())
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, e.log)
	}
	modelDir := filepath.Join(e.dir, "state", "storage", "volumes", "djia30-model", "djia30")
	if _, err := os.Stat(modelDir); err != nil {
		// the storage layout belongs to storage/local; find the volume through it
		v, _ := e.store.EnsureVolume(ctx, storageSpec("djia30-model"))
		modelDir = filepath.Join(v.Path, "djia30")
	}
	dataVol, _ := e.store.EnsureVolume(ctx, storageSpec("djia30-data"))
	if res.State != pipelines.StateSucceeded || res.DisplayName != "djia30-0123456789ab" || res.Reused {
		t.Fatalf("result = %+v", res)
	}
	wantParams := map[string]any{"epochs": float64(3), "data_path": dataVol.Path, "model_base_path": modelDir, "model_version": int64(1)}
	if js(res.Parameters) != js(wantParams) {
		t.Errorf("params = %s, want %s", js(res.Parameters), js(wantParams))
	}
	if got, _ := os.ReadFile(filepath.Join(dataVol.Path, "AAPL.csv")); string(got) != "Date,Open\n2017-01-03,115.8\n" {
		t.Errorf("data not copied: %q", got)
	}
	if got, _ := os.ReadFile(filepath.Join(modelDir, "1", "model.json")); string(got) != "data from "+dataVol.Path {
		t.Errorf("model = %q", got)
	}
	var wantMetrics map[string]any
	json.Unmarshal([]byte(runnertest.TrainMetrics), &wantMetrics)
	if js(res.Metrics) != js(wantMetrics) {
		t.Errorf("metrics = %s", js(res.Metrics))
	}
	if res.Model == nil || *res.Model != (records.ModelRef{Name: "djia30", Version: 1, Volume: "djia30-model", Path: "djia30"}) {
		t.Errorf("model = %+v", res.Model)
	}
	lineage := lineage.ID(commit, res.RunID)
	if res.LineageID != lineage || len(e.snap.reqs) != 1 || e.snap.reqs[0].DataVolume != "djia30-data" || e.snap.reqs[0].ModelVolume != "djia30-model" || e.snap.reqs[0].Record.State != "SUCCEEDED" {
		t.Errorf("snapshot = %+v %+v", res.LineageID, e.snap.reqs)
	}
	// The run record, as the lock and under runs/.
	lockJSON := e.read("training", records.TrainingLockPath)
	if runJSON := e.read("training", records.RunsDir+"/"+res.RunID+".json"); runJSON != lockJSON {
		t.Errorf("runs/<id>.json differs from the lock")
	}
	var rec records.RunRecord
	json.Unmarshal([]byte(lockJSON), &rec)
	if rec.SourceCommit != commit || rec.State != "SUCCEEDED" || rec.Gate != "passed" || rec.LineageID != lineage || rec.PullRequest == "" ||
		rec.DisplayName != "djia30-0123456789ab" || rec.Backend != "local" || rec.DataVolume != "djia30-data" || len(rec.Tasks) != 2 || rec.BuildURL != "https://ci/job/1" {
		t.Errorf("record = %s", lockJSON)
	}
	// The promotion PR and its deploy.yaml.
	var spec records.DeploySpec
	if err := yaml.Unmarshal([]byte(e.read("branchml/promote-djia30-v1", records.DeploySpecPath)), &spec); err != nil {
		t.Fatal(err)
	}
	if spec != (records.DeploySpec{APIVersion: "branchml.dev/v1", Kind: "DeploySpec", Model: *res.Model, LineageID: lineage, RunID: res.RunID, SourceCommit: commit}) {
		t.Errorf("deploy.yaml = %+v", spec)
	}
	// The configuration travels with the model into the deploy branch.
	wantCfg, _ := os.ReadFile(e.cfg.File)
	if got := e.read("branchml/promote-djia30-v1", "branchml.yaml"); got != string(wantCfg) {
		t.Errorf("branchml.yaml on the promotion branch:\n%s\nwant\n%s", got, wantCfg)
	}
	prs, _ := e.forge.ListPullRequests(ctx, "open")
	if len(prs) != 1 || prs[0].Head != "branchml/promote-djia30-v1" || prs[0].Base != "deploy-model" || prs[0].Title != "Promote djia30 v1 (run djia30-0123456789ab)" {
		t.Fatalf("PRs = %+v", prs)
	}
	for _, want := range []string{"| **model** | validation | 0.5500 | 0.5800 | 0.6900 |", "| always_bullish | validation | 0.5300 | 0.5000 | 0.6900 |",
		"- lineage ID: `" + lineage + "`", "| validation.auc > baselines.always_bullish.validation.auc | 0.5800 | 0.5000 | – | – | – | passed (point check) |"} {
		if !strings.Contains(prs[0].Body, want) {
			t.Errorf("PR body lacks %q:\n%s", want, prs[0].Body)
		}
	}

	// Again for the same commit: the run is reused, nothing new is created.
	tip := e.tip("training")
	again, err := Run(ctx, e.opts())
	if err != nil {
		t.Fatalf("second Run: %v", err)
	}
	if !again.Reused || again.RunID != res.RunID || again.PullRequest.Number != prs[0].Number || e.tip("training") != tip {
		t.Errorf("second run = %+v; training tip moved: %v", again, e.tip("training") != tip)
	}
	runs, _ := os.ReadDir(filepath.Join(e.dir, "state", "runs"))
	prs, _ = e.forge.ListPullRequests(ctx, "")
	if len(runs) != 1 || len(prs) != 1 {
		t.Errorf("runs %d, PRs %d; want 1, 1", len(runs), len(prs))
	}

	// Once the promotion is merged, running again proposes nothing new.
	if _, err := e.forge.MergePullRequest(ctx, prs[0].Number); err != nil {
		t.Fatal(err)
	}
	merged, err := Run(ctx, e.opts())
	if err != nil {
		t.Fatalf("run after merge: %v", err)
	}
	prs, _ = e.forge.ListPullRequests(ctx, "all")
	if !merged.Reused || merged.PullRequest != nil || len(prs) != 1 || prs[0].State != "merged" {
		t.Errorf("after merge: run %+v, PRs %+v", merged, prs)
	}

	// --rerun: a new run with the next name and model version.
	o := e.opts()
	o.Rerun = true
	third, err := Run(ctx, o)
	if err != nil {
		t.Fatalf("rerun: %v", err)
	}
	if third.DisplayName != "djia30-0123456789ab-r1" || third.Model.Version != 2 || third.RunID == res.RunID || third.PullRequest.Head != "branchml/promote-djia30-v2" {
		t.Errorf("rerun = %+v", third)
	}
}

func TestFailedRunIsRecordedAndExits1(t *testing.T) {
	e := setup(t, true, configYAML)
	res, err := Run(context.Background(), e.opts())
	var ce *agent.Error
	if !errors.As(err, &ce) || ce.Code != agent.ExitFailed || err.Error() != "run "+res.RunID+": ended FAILED: task train failed: exited with code 3" ||
		ce.Fix != "fix task train (its log is above) and merge again, or retry with --rerun" {
		t.Fatalf("err = %v (code %d)", err, agent.CodeOf(err))
	}
	// The task's log lines sit between its header and its end marker.
	const logged = "level=error msg=\"task train failed: exited with code 3\"\n" +
		"level=error msg=\"--- the last 2 lines of the log of task train ---\"\n" +
		"level=error msg=\"train | line one\"\n" +
		"level=error msg=\"train | boom: something broke\"\n" +
		"level=error msg=\"--- end of the log of task train ---\"\n"
	if !strings.HasSuffix(e.log.String(), logged) {
		t.Errorf("log tail not printed between its header and its end:\n%s", e.log)
	}
	var rec records.RunRecord
	json.Unmarshal([]byte(e.read("training", records.TrainingLockPath)), &rec)
	if rec.State != "FAILED" || rec.Tasks[1].State != "FAILED" || rec.Tasks[1].LogTail != "line one\nboom: something broke" || rec.Gate != "" {
		t.Errorf("record = %+v", rec)
	}
	if len(e.snap.reqs) != 0 {
		t.Errorf("snapshot called for a failed run")
	}
	prs, _ := e.forge.ListPullRequests(context.Background(), "")
	if len(prs) != 0 {
		t.Errorf("PRs = %+v", prs)
	}
	// Again without --rerun: no new run, the same failure, named; the log
	// of the failed task again from the record; nothing written back.
	tip, n := e.tip("training"), e.commits("training")
	e.log = &syncBuffer{}
	_, err = Run(context.Background(), e.opts())
	if !errors.As(err, &ce) || ce.Code != agent.ExitFailed || err.Error() != "run "+res.RunID+" of commit 0123456789ab: ended FAILED (failed: train)" ||
		ce.Fix != "fix task train (its log is above) and merge again, or retry with --rerun" {
		t.Errorf("second = %v (fix %q)", err, ce.Fix)
	}
	if !strings.HasSuffix(e.log.String(), logged) {
		t.Errorf("second run: log tail:\n%s", e.log)
	}
	if e.tip("training") != tip || e.commits("training") != n {
		t.Errorf("second run wrote to training")
	}
	runs, _ := os.ReadDir(filepath.Join(e.dir, "state", "runs"))
	if len(runs) != 1 {
		t.Errorf("runs = %d", len(runs))
	}
}

func TestGateNotMetExits3AfterRecording(t *testing.T) {
	e := setup(t, false, strings.Replace(configYAML, "value: 0.5}", "value: 0.9}", 1))
	res, err := Run(context.Background(), e.opts())
	if agent.CodeOf(err) != agent.ExitGate || err.Error() != "KPI gate of run "+res.RunID+": validation.auc = 0.58 is not > 0.9" {
		t.Fatalf("err = %v (code %d)", err, agent.CodeOf(err))
	}
	var rec records.RunRecord
	json.Unmarshal([]byte(e.read("training", records.TrainingLockPath)), &rec)
	if rec.Gate != "failed" || strings.Join(rec.GateReasons, ";") != "validation.auc = 0.58 is not > 0.9" || rec.State != "SUCCEEDED" || rec.PullRequest != "" {
		t.Errorf("record = %+v", rec)
	}
	prs, _ := e.forge.ListPullRequests(context.Background(), "")
	if len(prs) != 0 {
		t.Errorf("PRs = %+v", prs)
	}
}

func TestDryRunPlansAndChangesNothing(t *testing.T) {
	e := setup(t, false, configYAML)
	o := e.opts()
	o.DryRun, o.Storage, o.Pipelines = true, nil, nil
	tip := e.tip("training")
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.RunID != "" || !res.DryRun || res.Parameters["model_version"] != int64(1) || res.Parameters["data_path"] != "<path of volume djia30-data>" {
		t.Errorf("plan = %+v", res)
	}
	if e.tip("training") != tip {
		t.Error("dry run wrote to the training branch")
	}
	runs, _ := os.ReadDir(filepath.Join(e.dir, "state", "runs"))
	vols, _ := os.ReadDir(filepath.Join(e.dir, "state", "storage", "volumes"))
	if len(runs)+len(vols) != 0 {
		t.Errorf("dry run created runs %v volumes %v", runs, vols)
	}
	want := `level=info msg="plan: start run \"djia30-0123456789ab\" of pipeline djia30-sentiment version abc-1234`
	if !strings.Contains(e.log.String(), want) || !strings.Contains(e.log.String(), `with parameters data_path=\"<path of volume djia30-data>\" epochs=3 model_base_path=\"<path of volume djia30-model>/djia30\" model_version=1"`) {
		t.Errorf("plan log:\n%s", e.log)
	}
}

func TestMissingPipelineLockAndBadOptions(t *testing.T) {
	e := setup(t, false, configYAML)
	o := e.opts()
	e.cfg.Branches["pipeline"] = "training"
	_, err := Run(context.Background(), o)
	var ce *agent.Error
	if !errors.As(err, &ce) || ce.Code != 2 || ce.Fix != "merge into training first so that the pipeline stage uploads a version and records it" {
		t.Errorf("missing lock = %v", err)
	}
	e.cfg.Branches["pipeline"] = "kf-pipeline"
	o.Commit = ""
	if _, err := Run(context.Background(), o); agent.CodeOf(err) != agent.ExitUsage {
		t.Errorf("no commit = %v", err)
	}
	o = e.opts()
	e.cfg.Training.Parameters["model_version"] = 3
	if _, err := Run(context.Background(), o); agent.CodeOf(err) != agent.ExitUsage || !strings.Contains(err.Error(), "training.parameters.model_version is set by the stage itself") {
		t.Errorf("param clash = %v", err)
	}
}

func TestSnapshotFailureFailsAfterRecord(t *testing.T) {
	e := setup(t, false, configYAML)
	e.snap.err = errors.New("VolumeSnapshot default/djia30-data-x: not ready in 5m")
	_, err := Run(context.Background(), e.opts())
	if agent.CodeOf(err) != 1 || !strings.Contains(err.Error(), "not ready in 5m") {
		t.Fatalf("err = %v", err)
	}
	var rec records.RunRecord
	json.Unmarshal([]byte(e.read("training", records.TrainingLockPath)), &rec)
	if rec.State != "SUCCEEDED" {
		t.Errorf("record = %+v", rec)
	}
}

func js(v any) string { b, _ := json.Marshal(v); return string(b) }

const sleepySpec = `
pipelineInfo: {name: sleepy}
root:
  inputDefinitions:
    parameters:
      data_path: {parameterType: STRING}
      model_base_path: {parameterType: STRING}
      model_version: {parameterType: NUMBER_INTEGER}
      epochs: {parameterType: NUMBER_INTEGER}
  dag: {tasks: {train: {componentRef: {name: c}}}}
components: {c: {executorLabel: e}}
deploymentSpec: {executors: {e: {container: {image: "r/t@sha256:00", args: [sleep, 60s]}}}}
`

func TestAbortCancelsTheRunAndRecordsIt(t *testing.T) {
	e := setup(t, false, configYAML)
	ctx := context.Background()
	v, err := e.pipes.UploadVersion(ctx, pipelines.Upload{PipelineName: "sleepy", VersionName: "v1", Spec: []byte(sleepySpec)})
	if err != nil {
		t.Fatal(err)
	}
	lock, _ := json.Marshal(records.PipelineLock{Backend: "local", PipelineID: v.PipelineID, VersionID: v.VersionID})
	if _, err := e.forge.WriteBack(ctx, forgeWB("kf-pipeline", records.PipelineLockPath, lock)); err != nil {
		t.Fatal(err)
	}
	actx, abort := context.WithCancel(ctx)
	go func() {
		for !strings.Contains(e.logString(), "tasks done, running train") {
			time.Sleep(10 * time.Millisecond)
		}
		abort() // as SIGTERM from Jenkins does through agents/cli
	}()
	res, err := Run(actx, e.opts())
	if !errors.Is(err, context.Canceled) || res == nil || res.RunID == "" {
		t.Fatalf("Run = %+v, %v", res, err)
	}
	e.pipes.Wait(res.RunID)
	run, _ := e.pipes.GetRun(ctx, res.RunID)
	if run.State != pipelines.StateCanceled {
		t.Errorf("run state = %s, want CANCELED", run.State)
	}
	var rec records.RunRecord
	json.Unmarshal([]byte(e.read("training", records.TrainingLockPath)), &rec)
	if rec.RunID != res.RunID || rec.State != pipelines.StateCanceling {
		t.Errorf("record = %+v", rec)
	}
}

func TestCommitsThatChangeNothingTrainingReadsReuseTheRun(t *testing.T) {
	e := setup(t, false, configYAML)
	ctx := context.Background()
	if _, err := e.forge.WriteBack(ctx, forgeWB("training", "branchml.yaml", []byte(configYAML))); err != nil {
		t.Fatal(err)
	}
	o := e.opts()
	o.Commit = e.tip("training")
	first, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	// The tip is now the stage's own write-back commit.
	o.Commit = e.tip("training")
	if o.Commit == first.Record.SourceCommit {
		t.Fatal("no write-back commit")
	}
	again, err := Run(ctx, o)
	if err != nil || !again.Reused || again.RunID != first.RunID {
		t.Fatalf("write-back commit: %+v, %v", again, err)
	}
	// A change of branchml.yaml is a new run.
	if _, err := e.forge.WriteBack(ctx, forgeWB("training", "branchml.yaml", []byte(strings.Replace(configYAML, "epochs: 3", "epochs: 4", 1)))); err != nil {
		t.Fatal(err)
	}
	o.Commit = e.tip("training")
	third, err := Run(ctx, o)
	if err != nil || third.Reused || third.RunID == first.RunID || third.Model.Version != 2 {
		t.Fatalf("config change: %+v, %v", third, err)
	}
	runs, _ := os.ReadDir(filepath.Join(e.dir, "state", "runs"))
	if len(runs) != 2 {
		t.Errorf("runs = %d, want 2", len(runs))
	}
}

// Every write-back to the training branch starts another Jenkins build of
// it, which reuses the run: such builds must not move the branch, take
// snapshots, make a new lineage ID or touch the promotion.
func TestReusedRunWritesNothingBack(t *testing.T) {
	e := setup(t, false, configYAML)
	ctx := context.Background()
	if _, err := e.forge.WriteBack(ctx, forgeWB("training", "branchml.yaml", []byte(configYAML))); err != nil {
		t.Fatal(err)
	}
	o := e.opts()
	o.Commit = e.tip("training")
	src := o.Commit
	first, err := Run(ctx, o)
	if err != nil {
		t.Fatalf("first: %v\n%s", err, e.log)
	}
	lin := lineage.ID(src, first.RunID)
	rec := e.record()
	if first.LineageID != lin || rec.LineageID != lin || rec.SourceCommit != src || e.snapshots() != 2 || len(e.snap.reqs) != 1 {
		t.Fatalf("first: lineage %s record %+v, %d snapshots, %d calls", first.LineageID, rec, e.snapshots(), len(e.snap.reqs))
	}
	head := PromoteBranch("djia30", 1)
	promoTip, promoCommits := e.tip(head), e.commits(head)
	prs, _ := e.forge.ListPullRequests(ctx, "")
	if len(prs) != 1 {
		t.Fatalf("PRs = %+v", prs)
	}
	body := prs[0].Body
	lockJSON := e.read("training", records.TrainingLockPath)
	tip, n := e.tip("training"), e.commits("training")

	check := func(name string, res *Result, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, e.log)
		}
		if !res.Reused || res.RunID != first.RunID || res.LineageID != lin || res.State != pipelines.StateSucceeded {
			t.Errorf("%s: %+v", name, res)
		}
		if got := e.tip("training"); got != tip {
			t.Errorf("%s moved training from %s to %s: %s", name, tip, got, e.git("log", "-1", "--format=%s", "refs/heads/training"))
		}
		if got := e.commits("training"); got != n {
			t.Errorf("%s: training has %s commits, want %s", name, got, n)
		}
		if got := e.read("training", records.TrainingLockPath); got != lockJSON {
			t.Errorf("%s changed the record:\n%s\nwas\n%s", name, got, lockJSON)
		}
		if e.snapshots() != 2 || len(e.snap.reqs) != 1 {
			t.Errorf("%s: %d snapshots, %d snapshot calls; want 2, 1", name, e.snapshots(), len(e.snap.reqs))
		}
		if e.tip(head) != promoTip || e.commits(head) != promoCommits {
			t.Errorf("%s moved the promotion branch", name)
		}
		prs, _ := e.forge.ListPullRequests(ctx, "")
		if len(prs) != 1 || prs[0].Body != body {
			t.Errorf("%s: PRs %+v", name, prs)
		}
	}
	// The same commit, then the write-back commit (the build Jenkins
	// starts for it) three times.
	o.Commit = src
	res, err := Run(ctx, o)
	check("same commit", res, err)
	o.Commit = tip
	for i := 0; i < 3; i++ {
		res, err := Run(ctx, o)
		check(fmt.Sprintf("write-back commit build %d", i+1), res, err)
	}
	var spec records.DeploySpec
	if err := yaml.Unmarshal([]byte(e.read(head, records.DeploySpecPath)), &spec); err != nil || spec.SourceCommit != src || spec.LineageID != lin {
		t.Errorf("deploy.yaml = %+v, %v", spec, err)
	}
	// Once the promotion is merged, the same.
	if _, err := e.forge.MergePullRequest(ctx, prs[0].Number); err != nil {
		t.Fatal(err)
	}
	promoTip = e.tip(head)
	res, err = Run(ctx, o)
	check("after the merge", res, err)
	runs, _ := os.ReadDir(filepath.Join(e.dir, "state", "runs"))
	if len(runs) != 1 {
		t.Errorf("runs = %d", len(runs))
	}
}

// A stage that failed after the run (here: the snapshot) is retried by a
// build of its own write-back commit: the snapshot is taken with the run's
// commit, so the lineage ID is the one the first attempt would have had.
func TestRetriedSnapshotUsesTheRunsCommit(t *testing.T) {
	e := setup(t, false, configYAML)
	ctx := context.Background()
	if _, err := e.forge.WriteBack(ctx, forgeWB("training", "branchml.yaml", []byte(configYAML))); err != nil {
		t.Fatal(err)
	}
	o := e.opts()
	o.Commit = e.tip("training")
	src := o.Commit
	e.snap.err = errors.New("VolumeSnapshot default/djia30-data-x: not ready in 5m")
	first, err := Run(ctx, o)
	if agent.CodeOf(err) != agent.ExitFailed {
		t.Fatalf("first: %v", err)
	}
	e.snap.err = nil
	o.Commit = e.tip("training")
	if o.Commit == src {
		t.Fatal("no write-back commit")
	}
	res, err := Run(ctx, o)
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	lin := lineage.ID(src, first.RunID)
	if !res.Reused || res.LineageID != lin || len(e.snap.reqs) != 2 || e.snap.reqs[1].SourceCommit != src || e.snapshots() != 2 {
		t.Errorf("retry: %+v; requests %+v; %d snapshots", res, e.snap.reqs, e.snapshots())
	}
	if rec := e.record(); rec.LineageID != lin || rec.SourceCommit != src {
		t.Errorf("record = %+v", rec)
	}
	if msg := e.git("log", "-1", "--format=%s", "refs/heads/training"); msg != "branchml train: run "+res.RunID+" SUCCEEDED for "+src[:12] {
		t.Errorf("message %q", msg)
	}
}

// An interrupted run (CANCELING as the aborted stage recorded it, or
// CANCELED) is never reused: the next attempt starts a new run, named with
// the next rerun suffix, and later attempts reuse that one.
func TestCancelledRunIsReplaced(t *testing.T) {
	for _, state := range []string{pipelines.StateCanceling, pipelines.StateCanceled} {
		t.Run(state, func(t *testing.T) {
			e := setup(t, false, configYAML)
			ctx := context.Background()
			trainLock := e.read("kf-pipeline", records.PipelineLockPath)
			v, err := e.pipes.UploadVersion(ctx, pipelines.Upload{PipelineName: "sleepy", VersionName: "v1", Spec: []byte(sleepySpec)})
			if err != nil {
				t.Fatal(err)
			}
			lock, _ := json.Marshal(records.PipelineLock{Backend: "local", PipelineID: v.PipelineID, VersionID: v.VersionID})
			if _, err := e.forge.WriteBack(ctx, forgeWB("kf-pipeline", records.PipelineLockPath, lock)); err != nil {
				t.Fatal(err)
			}
			actx, abort := context.WithCancel(ctx)
			go func() {
				for !strings.Contains(e.logString(), "tasks done, running train") {
					time.Sleep(10 * time.Millisecond)
				}
				abort()
			}()
			aborted, err := Run(actx, e.opts())
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("aborted: %+v, %v", aborted, err)
			}
			e.pipes.Wait(aborted.RunID)
			if state == pipelines.StateCanceled {
				rec := e.record()
				rec.State = pipelines.StateCanceled
				js, _ := json.MarshalIndent(rec, "", "  ")
				wb := forgeWB("training", records.TrainingLockPath, append(js, '\n'))
				wb.Files[records.RunsDir+"/"+rec.RunID+".json"] = wb.Files[records.TrainingLockPath]
				if _, err := e.forge.WriteBack(ctx, wb); err != nil {
					t.Fatal(err)
				}
			}
			if rec := e.record(); rec.State != state || rec.DisplayName != "djia30-0123456789ab" {
				t.Fatalf("record = %+v", rec)
			}
			if _, err := e.forge.WriteBack(ctx, forgeWB("kf-pipeline", records.PipelineLockPath, []byte(trainLock))); err != nil {
				t.Fatal(err)
			}

			res, err := Run(ctx, e.opts())
			if err != nil {
				t.Fatalf("after the abort: %v\n%s", err, e.log)
			}
			// The interrupted run made no model: its version is given again.
			if res.Reused || res.RunID == aborted.RunID || res.DisplayName != "djia30-0123456789ab-r1" || res.State != pipelines.StateSucceeded ||
				res.Model.Version != 1 || res.LineageID != lineage.ID(commit, res.RunID) {
				t.Errorf("after the abort: %+v", res)
			}
			var old records.RunRecord
			if err := json.Unmarshal([]byte(e.read("training", records.RunsDir+"/"+aborted.RunID+".json")), &old); err != nil || old.State != pipelines.StateCanceled {
				t.Errorf("the interrupted run's record is %s (%v), want %s", old.State, err, pipelines.StateCanceled)
			}
			want := "level=warning msg=\"run " + aborted.RunID + " (djia30-0123456789ab) of commit 0123456789ab was " + state +
				" before it finished: not reused, starting a new run\""
			if !strings.Contains(e.log.String(), want) {
				t.Errorf("log lacks %s:\n%s", want, e.log)
			}
			if rec := e.record(); rec.RunID != res.RunID || rec.State != pipelines.StateSucceeded || rec.DisplayName != "djia30-0123456789ab-r1" {
				t.Errorf("record = %+v", rec)
			}
			// Later attempts reuse the new run and write nothing.
			tip, n := e.tip("training"), e.commits("training")
			again, err := Run(ctx, e.opts())
			if err != nil || !again.Reused || again.RunID != res.RunID || e.tip("training") != tip || e.commits("training") != n {
				t.Errorf("again: %+v, %v", again, err)
			}
			runs, _ := os.ReadDir(filepath.Join(e.dir, "state", "runs"))
			if len(runs) != 2 {
				t.Errorf("runs = %d, want 2", len(runs))
			}
		})
	}
}

// A run recorded as CANCELING that still runs (the stage that cancelled it
// was killed first) is cancelled again before its replacement starts.
func TestCancelingRunStillRunningIsCancelled(t *testing.T) {
	e := setup(t, false, configYAML)
	ctx := context.Background()
	v, err := e.pipes.UploadVersion(ctx, pipelines.Upload{PipelineName: "sleepy", VersionName: "v1", Spec: []byte(sleepySpec)})
	if err != nil {
		t.Fatal(err)
	}
	sleepy, err := e.pipes.CreateRun(ctx, pipelines.RunRequest{Experiment: "djia30", DisplayName: "djia30-0123456789ab", PipelineID: v.PipelineID, VersionID: v.VersionID,
		Parameters: map[string]any{"data_path": "/d", "model_base_path": "/m", "model_version": 1, "epochs": 3}})
	if err != nil {
		t.Fatal(err)
	}
	rec := records.RunRecord{APIVersion: records.APIVersion, Kind: "RunRecord", SourceCommit: commit, Backend: "local", RunID: sleepy.ID,
		DisplayName: "djia30-0123456789ab", State: pipelines.StateCanceling, Model: &records.ModelRef{Name: "djia30", Version: 1}}
	js, _ := json.Marshal(rec)
	if _, err := e.forge.WriteBack(ctx, forgeWB("training", records.TrainingLockPath, js)); err != nil {
		t.Fatal(err)
	}
	res, err := Run(ctx, e.opts())
	if err != nil || res.DisplayName != "djia30-0123456789ab-r1" || res.RunID == sleepy.ID {
		t.Fatalf("Run = %+v, %v\n%s", res, err, e.log)
	}
	e.pipes.Wait(sleepy.ID)
	if r, _ := e.pipes.GetRun(ctx, sleepy.ID); r.State != pipelines.StateCanceled {
		t.Errorf("the CANCELING run is %s, want CANCELED", r.State)
	}
}

// A run cancelled in the backend while the stage follows it fails with a
// message that says so (not "fix the failing task").
func TestRunCancelledInTheBackendSaysSo(t *testing.T) {
	e := setup(t, false, configYAML)
	ctx := context.Background()
	v, err := e.pipes.UploadVersion(ctx, pipelines.Upload{PipelineName: "sleepy", VersionName: "v1", Spec: []byte(sleepySpec)})
	if err != nil {
		t.Fatal(err)
	}
	lock, _ := json.Marshal(records.PipelineLock{Backend: "local", PipelineID: v.PipelineID, VersionID: v.VersionID})
	if _, err := e.forge.WriteBack(ctx, forgeWB("kf-pipeline", records.PipelineLockPath, lock)); err != nil {
		t.Fatal(err)
	}
	go func() {
		for !strings.Contains(e.logString(), "tasks done, running train") {
			time.Sleep(10 * time.Millisecond)
		}
		var rec records.RunRecord // written before the run is followed
		raw, _ := e.forge.ReadFile(ctx, "training", records.TrainingLockPath)
		json.Unmarshal(raw, &rec)
		e.pipes.CancelRun(ctx, rec.RunID) // someone presses Terminate in the UI
	}()
	res, err := Run(ctx, e.opts())
	var ce *agent.Error
	if !errors.As(err, &ce) || ce.Code != agent.ExitFailed || err.Error() != "run "+res.RunID+": ended CANCELED: the run was cancelled before it finished" ||
		ce.Fix != "run the stage again: a cancelled run is not reused, a new one is started" {
		t.Fatalf("err = %v (%+v)", err, ce)
	}
	if rec := e.record(); rec.State != pipelines.StateCanceled {
		t.Errorf("record = %+v", rec)
	}
}

// --dry-run checks the parameter names against the pipeline the pipeline
// stage composed (as the run would refuse a typo), exit 2 naming it.
func TestDryRunRefusesAnUnknownParameter(t *testing.T) {
	e := setup(t, false, strings.Replace(configYAML, "epochs: 3", "epocs: 3", 1))
	spec := "root:\n  inputDefinitions:\n    parameters:\n      data_path: {parameterType: STRING}\n      epochs: {parameterType: NUMBER_INTEGER}\n" +
		"      model_base_path: {parameterType: STRING}\n      model_version: {parameterType: NUMBER_INTEGER}\n"
	if _, err := e.forge.WriteBack(context.Background(), forgeWB("kf-pipeline", records.PipelineSpecPath, []byte(spec))); err != nil {
		t.Fatal(err)
	}
	o := e.opts()
	o.DryRun, o.Storage, o.Pipelines = true, nil, nil
	_, err := Run(context.Background(), o)
	var ae *agent.Error
	if !errors.As(err, &ae) || ae.Code != agent.ExitUsage || err.Error() != "training.parameters.epocs: pipeline version abc-1234 declares no parameter epocs" ||
		ae.Fix != "fix training.parameters in branchml.yaml: the pipeline's parameters are data_path, epochs, model_base_path, model_version" {
		t.Fatalf("err = %v (%#v)", err, err)
	}
}
