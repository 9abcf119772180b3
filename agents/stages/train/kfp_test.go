package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/branchml/branchml/agents/backends/pipelines"
	"github.com/branchml/branchml/agents/backends/pipelines/kfp"
	"github.com/branchml/branchml/agents/backends/pipelines/pipelinesfactory"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/agent"
	fakekfp "github.com/branchml/branchml/agents/internal/fake/kfp"
	fakemlmd "github.com/branchml/branchml/agents/internal/fake/mlmd"
	fakes3 "github.com/branchml/branchml/agents/internal/fake/s3"
	"github.com/branchml/branchml/agents/records"
)

// exampleMetrics is a metrics.json in the shape the example's train
// component writes (examples/djia30/README.md) that passes the example's KPIs.
const exampleMetrics = `{"model_name":"djia30","model_version":1,` +
	`"train":{"accuracy":0.58,"auc":0.61,"log_loss":0.676,"rows":1762},` +
	`"validation":{"accuracy":0.54,"auc":0.552,"log_loss":0.689,"rows":252},` +
	`"test":{"accuracy":0.52,"auc":0.531,"log_loss":0.693,"rows":252},` +
	`"baselines":{"always_bullish":{"train":{"accuracy":0.53,"auc":0.5,"log_loss":0.691,"rows":1762},"validation":{"accuracy":0.53,"auc":0.5,"log_loss":0.6918,"rows":252},"test":{"accuracy":0.51,"auc":0.5,"log_loss":0.6931,"rows":252}}},` +
	`"epochs_run":12,"best_epoch":7}`

// examplePredictions is a predictions.csv in the shape the example's train
// task writes for the gate split (examples/djia30/README.md): 60 trading
// days of 10 tickers whose model column ranks the labels clearly better
// than same_as_today, so the example's KPIs pass with confidence.
func examplePredictions() []byte {
	var b strings.Builder
	b.WriteString("split,date,ticker,label,model,same_as_today\n")
	x := uint32(7)
	next := func() float64 { x = x*1664525 + 1013904223; return float64(x>>8) / (1 << 24) }
	for d := 0; d < 60; d++ {
		for k := 0; k < 10; k++ {
			label := 0
			if next() < 0.3 {
				label = 1
			}
			model := 0.2 + 0.25*float64(label) + 0.3*next()
			fmt.Fprintf(&b, "test,2017-%02d-%02d,T%d,%d,%.4f,%.4f\n", 1+d/28, 1+d%28, k, label, model, 0.1+0.4*next())
		}
	}
	return []byte(b.String())
}

// kfpEnv is the training stage against a KFP 2.x stand-in: the v2beta1 API
// server fake with the example's pipeline uploaded, ML Metadata, the
// pipeline root's object store, and a launcher that records the example's
// outputs for every run created (unless outputs is false).
type kfpEnv struct {
	*env
	kfp     *fakekfp.Server
	md      *fakemlmd.Server
	s3      *fakes3.Server
	backend pipelines.Backend
	outputs bool
}

func setupKFP(t *testing.T, opts ...fakekfp.Option) *kfpEnv {
	t.Helper()
	ctx := context.Background()
	ke := &kfpEnv{outputs: true, s3: fakes3.New("minio", "minio123", "mlpipeline")}
	t.Cleanup(ke.s3.Close)
	md, err := fakemlmd.New()
	if err != nil {
		t.Fatal(err)
	}
	ke.md = md
	t.Cleanup(md.Close)
	l := &fakekfp.Launcher{MLMD: md, S3: ke.s3, Root: "minio://mlpipeline/v2/artifacts"}
	ke.kfp = fakekfp.New(append([]fakekfp.Option{fakekfp.WithToken("kfp-token"), fakekfp.OnRunCreated(func(r fakekfp.Run) {
		if !ke.outputs {
			return
		}
		for _, o := range []fakekfp.Output{
			{Task: "prepare-data", Name: "dataset", Type: "system.Dataset", Files: map[string][]byte{"features.csv": []byte("x")}},
			{Task: "train", Name: "metrics", Type: "system.Metrics", Files: map[string][]byte{"": []byte(exampleMetrics)}},
			{Task: "train", Name: "predictions", Type: "system.Dataset", Files: map[string][]byte{"": examplePredictions()}},
		} {
			if _, _, err := l.Record(r, "djia30-sentiment", o); err != nil {
				t.Error(err)
			}
		}
	})}, opts...)...)
	t.Cleanup(ke.kfp.Close)

	spec, err := os.ReadFile("../../../examples/djia30/pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("../../../examples/djia30/branchml.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	os.MkdirAll(repo, 0o755)
	cfgText := strings.Replace(string(example), "backends:\n", "backends:\n  stateDir: "+filepath.Join(dir, "state")+"\n", 1)
	cfgText = strings.Replace(cfgText, "  pipelines: {type: local}", "  pipelines:\n    type: kfp\n    endpoint: "+ke.kfp.URL+
		"\n    metadata: {address: \""+md.Addr+"\"}\n    objectStore: {endpoint: \""+ke.s3.URL+"\", bucket: mlpipeline}", 1)
	os.WriteFile(filepath.Join(repo, "branchml.yaml"), []byte(cfgText), 0o644)
	cfg, err := config.Load(filepath.Join(repo, "branchml.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ke.backend, err = pipelinesfactory.New(cfg, pipelinesfactory.WithGetenv(func(k string) string {
		return map[string]string{"KFP_TOKEN": "kfp-token", "AWS_ACCESS_KEY_ID": "minio", "AWS_SECRET_ACCESS_KEY": "minio123"}[k]
	}), pipelinesfactory.WithKFPOptions(kfp.WithRetry(kfp.RetryPolicy{Attempts: 2, Initial: time.Millisecond, Max: time.Millisecond})))
	if err != nil {
		t.Fatal(err)
	}
	v, err := ke.backend.UploadVersion(ctx, pipelines.Upload{PipelineName: "djia30-sentiment", VersionName: "feed-1234", Spec: spec, SpecHash: "sha256:feed"})
	if err != nil {
		t.Fatal(err)
	}
	ke.env = newEnv(t, dir, cfg, "kfp", v)
	return ke
}

// opts are env's options with the KFP backend, followed every 5ms.
func (ke *kfpEnv) opts() Options {
	o := ke.env.opts()
	o.Pipelines, o.Follow.Interval = ke.backend, 5*time.Millisecond
	return o
}

func (ke *kfpEnv) terminations() int {
	n := 0
	for _, c := range ke.kfp.Calls() {
		if strings.HasPrefix(c, "POST ") && strings.HasSuffix(c, ":terminate") {
			n++
		}
	}
	return n
}

// Done when: on KFP 2.x, where task outputs live in ML Metadata and the
// pipeline root, the example's metrics reach the KPI gate and the
// promotion PR opens.
func TestKFPMetricsReachTheGateAndThePROpens(t *testing.T) {
	ke := setupKFP(t)
	res, err := Run(context.Background(), ke.opts())
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, ke.log)
	}
	var want map[string]any
	json.Unmarshal([]byte(exampleMetrics), &want)
	if js(res.Metrics) != js(want) || res.Gate == nil || res.Gate.Verdict != "passed" || res.PullRequest == nil || res.Stopped != "" {
		t.Fatalf("result: metrics %s, gate %+v, PR %+v", js(res.Metrics), res.Gate, res.PullRequest)
	}
	prs, _ := ke.forge.ListPullRequests(context.Background(), "open")
	if len(prs) != 1 || prs[0].Head != "branchml/promote-djia30-v1" || !strings.Contains(prs[0].Body, "| **model** | validation | 0.5400 | 0.5520 | 0.6890 |") ||
		!strings.Contains(prs[0].Body, "| auc vs same_as_today | 0.9831 | 0.5818 | +0.4012 | [+0.3396, +0.4552] | 0.02 | passed |") ||
		!strings.Contains(prs[0].Body, "| auc vs champion | – | – | – | – | 0 | skipped: no champion: nothing is deployed on deploy-model yet |") {
		t.Fatalf("PRs %+v", prs)
	}
	if rec := ke.record(); rec.State != "SUCCEEDED" || rec.Gate != "passed" || js(rec.Metrics) != js(want) {
		t.Errorf("record %+v", rec)
	}
	// The run was made with the example's parameters and the volumes' mount paths.
	r := ke.kfp.Runs()[0]
	if r.Parameters["epochs"] != float64(30) || r.Parameters["hidden"] != "" || r.Parameters["learning_rate"] != 0.01 || r.Parameters["gate_split"] != "test" || r.Parameters["model_version"] != float64(1) {
		t.Errorf("parameters %v", r.Parameters)
	}
	calls := strings.Join(ke.md.Calls(), ",")
	if !strings.Contains(calls, "GetContextByTypeAndName system.PipelineRun/"+res.RunID+",GetExecutionsByContext,GetEventsByExecutionIDs,GetArtifactsByID") {
		t.Errorf("ML Metadata calls %s", calls)
	}
}

// A SUCCEEDED run whose metrics cannot be read is an error (exit 1) naming
// the task, the artifact and where it looked, never a KPI verdict (exit 3).
func TestKFPUnreadableMetricsExit1(t *testing.T) {
	ke := setupKFP(t)
	ke.outputs = false
	res, err := Run(context.Background(), ke.opts())
	var ae *agent.Error
	if !errors.As(err, &ae) || ae.Code != agent.ExitFailed || !strings.HasPrefix(err.Error(), "read the metrics of run "+res.RunID+": output metrics of task train of run "+res.RunID+": ML Metadata at "+ke.md.Addr+" has no system.PipelineRun context") ||
		!strings.HasPrefix(ae.Fix, "make task train write metrics.json to its output artifact 'metrics'") {
		t.Fatalf("err = %v (%+v)", err, ae)
	}
	if res.Gate != nil || res.PullRequest != nil {
		t.Errorf("gate %+v PR %+v", res.Gate, res.PullRequest)
	}
	if rec := ke.record(); rec.State != "SUCCEEDED" || rec.Gate != "" || rec.Metrics != nil {
		t.Errorf("record %+v", rec)
	}
	// Once the outputs are readable, the next build reuses the run and judges it.
	r := ke.kfp.Runs()[0]
	(&fakekfp.Launcher{MLMD: ke.md, S3: ke.s3, Root: "minio://mlpipeline/v2/artifacts"}).Record(r, "djia30-sentiment",
		fakekfp.Output{Task: "train", Name: "metrics", Type: "system.Metrics", Files: map[string][]byte{"": []byte(exampleMetrics)}})
	(&fakekfp.Launcher{MLMD: ke.md, S3: ke.s3, Root: "minio://mlpipeline/v2/artifacts"}).Record(r, "djia30-sentiment",
		fakekfp.Output{Task: "train", Name: "predictions", Type: "system.Dataset", Files: map[string][]byte{"": examplePredictions()}})
	again, err := Run(context.Background(), ke.opts())
	if err != nil || !again.Reused || again.RunID != res.RunID || again.Gate.Verdict != "passed" || again.PullRequest == nil {
		t.Fatalf("again: %+v, %v", again, err)
	}
}

// An error while following (here a 401 after the token was rotated) is no
// cancel: nothing is terminated, the record keeps the state the server
// reported, and the next build follows the same run to its end.
func TestKFPFollowErrorIsNotRecordedAsCanceling(t *testing.T) {
	ke := setupKFP(t, fakekfp.WithRunStates("PENDING", "RUNNING", "RUNNING", "RUNNING", "SUCCEEDED"))
	ke.kfp.Inject(fakekfp.When(func(r *http.Request) bool {
		return r.Method == "GET" && strings.Contains(r.URL.Path, "/runs/") && ke.sawRunning()
	}, 0,
		fakekfp.Fail(401, 16, "Unauthenticated: token expired")))
	res, err := Run(context.Background(), ke.opts())
	if agent.CodeOf(err) != agent.ExitFailed || res.Stopped != StoppedFollowFailed || !strings.Contains(err.Error(), "401") {
		t.Fatalf("Run = %+v, %v", res, err)
	}
	if rec := ke.record(); rec.State != pipelines.StateRunning {
		t.Errorf("recorded %s, want RUNNING", rec.State)
	}
	if n := ke.terminations(); n != 0 {
		t.Errorf("%d terminate calls", n)
	}
	ke.kfp.ClearFaults()
	again, err := Run(context.Background(), ke.opts())
	if err != nil || !again.Reused || again.RunID != res.RunID || again.State != "SUCCEEDED" || again.PullRequest == nil {
		t.Fatalf("again: %+v, %v\n%s", again, err, ke.log)
	}
	if len(ke.kfp.Runs()) != 1 || ke.terminations() != 0 {
		t.Errorf("%d runs, %d terminations", len(ke.kfp.Runs()), ke.terminations())
	}
}

func (ke *kfpEnv) sawRunning() bool { return strings.Contains(ke.logString(), "RUNNING, ") }

// SIGTERM after the run SUCCEEDED but before the next poll: nothing is
// cancelled, the success is recorded, and the next build uses the run.
func TestKFPInterruptAfterSucceededKeepsTheSuccess(t *testing.T) {
	ke := setupKFP(t, fakekfp.WithRunStates("PENDING", "RUNNING", "SUCCEEDED"))
	o := ke.opts()
	o.Follow.Interval = time.Hour
	ctx, abort := context.WithCancel(context.Background())
	go func() {
		for !ke.sawRunning() {
			time.Sleep(5 * time.Millisecond)
		}
		abort() // the next GET (the abort's re-read) says SUCCEEDED
	}()
	res, err := Run(ctx, o)
	if !errors.Is(err, context.Canceled) || res.Stopped != StoppedAfterEnd {
		t.Fatalf("Run = %+v, %v", res, err)
	}
	if rec := ke.record(); rec.State != "SUCCEEDED" || ke.terminations() != 0 {
		t.Fatalf("record %s, %d terminations", rec.State, ke.terminations())
	}
	again, err := Run(context.Background(), ke.opts())
	if err != nil || !again.Reused || again.RunID != res.RunID || again.PullRequest == nil {
		t.Fatalf("again: %+v, %v", again, err)
	}
}

// A run recorded as CANCELING that the server says SUCCEEDED (the cancel
// came too late) is reused, not replaced.
func TestKFPCancelingRecordOfASucceededRunIsReused(t *testing.T) {
	ke := setupKFP(t)
	first, err := Run(context.Background(), ke.opts())
	if err != nil {
		t.Fatal(err)
	}
	rec := ke.record()
	rec.State, rec.Gate, rec.PullRequest = pipelines.StateCanceling, "", ""
	js, _ := json.MarshalIndent(rec, "", "  ")
	if _, err := ke.forge.WriteBack(context.Background(), forgeWB("training", records.TrainingLockPath, append(js, '\n'))); err != nil {
		t.Fatal(err)
	}
	again, err := Run(context.Background(), ke.opts())
	if err != nil || !again.Reused || again.RunID != first.RunID || len(ke.kfp.Runs()) != 1 || ke.record().State != "SUCCEEDED" {
		t.Fatalf("again: %+v, %v; %d runs\n%s", again, err, len(ke.kfp.Runs()), ke.log)
	}
}

// A stalled run is cancelled remotely, recorded CANCELING, and says
// "stalled" in the result (exit 1), apart from a failed run.
func TestKFPStalledRunIsDistinguishable(t *testing.T) {
	ke := setupKFP(t, fakekfp.WithRunStates("PENDING", "RUNNING"))
	o := ke.opts()
	o.Follow.StallTimeout = 100 * time.Millisecond
	res, err := Run(context.Background(), o)
	if agent.CodeOf(err) != agent.ExitFailed || res.Stopped != StoppedStalled || !strings.Contains(err.Error(), "stalled: no state or task change for") {
		t.Fatalf("Run = %+v, %v", res, err)
	}
	if ke.terminations() != 1 || ke.record().State != pipelines.StateCanceling {
		t.Errorf("%d terminations, record %s", ke.terminations(), ke.record().State)
	}
	out, _ := json.Marshal(res)
	if !strings.Contains(string(out), `"stopped":"stalled"`) {
		t.Errorf("result JSON %s", out)
	}
}

// training.parameters take every KFP parameter type, typed by the
// pipeline's root inputs (the composed spec on the pipeline branch):
// lists and structs as they are, strings from BRANCHML_* variables parsed.
func TestKFPParametersTypedBySpec(t *testing.T) {
	ke := setupKFP(t)
	composed := "pipelineInfo: {name: djia30-sentiment}\nroot:\n  inputDefinitions:\n    parameters:\n" +
		"      hidden: {parameterType: LIST}\n      options: {parameterType: STRUCT}\n      epochs: {parameterType: NUMBER_INTEGER}\n" +
		"      learning_rate: {parameterType: NUMBER_DOUBLE}\n      shuffle: {parameterType: BOOLEAN}\n      train_end: {parameterType: STRING}\n" +
		"      patience: {parameterType: STRING}\n      seed: {parameterType: NUMBER_INTEGER}\n      model_version: {parameterType: NUMBER_INTEGER}\n" +
		"      data_path: {parameterType: STRING}\n      model_base_path: {parameterType: STRING}\n      gate_split: {parameterType: STRING}\n---\nplatforms: {kubernetes: {}}\n"
	if _, err := ke.forge.WriteBack(context.Background(), forgeWB("kf-pipeline", ComposedSpecPath, []byte(composed))); err != nil {
		t.Fatal(err)
	}
	ke.cfg.Training.Parameters = map[string]any{"hidden": []any{float64(32), float64(16)}, "options": map[string]any{"dropout": 0.1},
		"epochs": "30", "learning_rate": float64(1), "shuffle": "true", "train_end": "2015-12-31", "patience": float64(5), "seed": float64(42)}
	if _, err := Run(context.Background(), ke.opts()); err != nil {
		t.Fatalf("Run: %v\n%s", err, ke.log)
	}
	got := ke.kfp.Runs()[0].Parameters
	delete(got, "data_path")
	delete(got, "model_base_path")
	want := `{"epochs":30,"gate_split":"test","hidden":[32,16],"learning_rate":1,"model_version":1,"options":{"dropout":0.1},"patience":"5","seed":42,"shuffle":true,"train_end":"2015-12-31"}`
	if js(got) != want {
		t.Errorf("runtime_config.parameters = %s\nwant %s", js(got), want)
	}
	body := ""
	for _, r := range ke.kfp.Requests() {
		if r.Method == "POST" && r.Path == "/apis/v2beta1/runs" {
			body = string(r.Body)
		}
	}
	if !strings.Contains(body, `"hidden":[32,16]`) || !strings.Contains(body, `"options":{"dropout":0.1}`) || !strings.Contains(body, `"epochs":30,`) {
		t.Errorf("create body %s", body)
	}
	// A value that is not of its type: exit 2, naming it.
	ke2 := setupKFP(t)
	ke2.forge.WriteBack(context.Background(), forgeWB("kf-pipeline", ComposedSpecPath, []byte(composed)))
	ke2.cfg.Training.Parameters = map[string]any{"epochs": 2.5, "hidden": "32,16"}
	_, err := Run(context.Background(), ke2.opts())
	if agent.CodeOf(err) != agent.ExitUsage || !strings.Contains(err.Error(), "training.parameters.epochs: 2.5 is not a NUMBER_INTEGER; training.parameters.hidden: \"32,16\" is not a LIST") {
		t.Errorf("err = %v", err)
	}
	if len(ke2.kfp.Runs()) != 0 {
		t.Error("a run was created")
	}
}

// Two `branchml-train run` for one commit at once, while CreateRun takes
// 300ms: both name the run alike ("<project>-<commit12>"), both create
// one, and the check after the create leaves one run going; both stages
// follow and record that one.
func TestKFPTwoStagesAtOnceMakeOneRun(t *testing.T) {
	ke := setupKFP(t, fakekfp.WithCreateRunDelay(300*time.Millisecond))
	ke.cfg.Snapshot.Enabled = false
	var wg sync.WaitGroup
	res := make([]*Result, 2)
	errs := make([]error, 2)
	for i := range res {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i], errs[i] = Run(context.Background(), ke.opts())
		}()
	}
	wg.Wait()
	runs := ke.kfp.Runs()
	if len(runs) != 2 || runs[1].State() != pipelines.StateCanceling && runs[1].State() != pipelines.StateCanceled {
		t.Fatalf("runs %d: %+v", len(runs), runs)
	}
	for i := range res {
		if res[i] == nil || res[i].RunID != runs[0].ID || errs[i] != nil {
			t.Errorf("stage %d: %+v, %v", i, res[i], errs[i])
		}
	}
	if rec := ke.record(); rec.RunID != runs[0].ID || rec.State != "SUCCEEDED" {
		t.Errorf("record %+v", rec)
	}
}
