package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/branchml/branchml/agents/backends/pipelines"
	"github.com/branchml/branchml/agents/backends/pipelines/local/runner/runnertest"
	"github.com/branchml/branchml/agents/internal/imagecache"
)

const dagSpec = `
pipelineInfo: {name: dag}
root:
  inputDefinitions:
    parameters:
      greeting: {parameterType: STRING, defaultValue: hello}
      "n": {parameterType: NUMBER_INTEGER, defaultValue: 3}
      ratio: {parameterType: NUMBER_DOUBLE, defaultValue: 0.25}
      flag: {parameterType: BOOLEAN, defaultValue: false}
      items: {parameterType: LIST, defaultValue: [1, "a"]}
      cfg: {parameterType: STRUCT, isOptional: true}
  dag:
    tasks:
      produce:
        componentRef: {name: comp-produce}
        inputs:
          parameters:
            text: {componentInputParameter: greeting}
            count: {componentInputParameter: "n"}
      consume:
        componentRef: {name: comp-consume}
        inputs:
          artifacts:
            data: {taskOutputArtifact: {producerTask: produce, outputArtifactKey: data}}
          parameters:
            word: {taskOutputParameter: {producerTask: produce, outputParameterKey: word}}
            suffix: {runtimeValue: {constant: "!"}}
      side:
        componentRef: {name: comp-side}
        dependentTasks: [produce]
        inputs:
          parameters:
            ratio: {componentInputParameter: ratio}
            flag: {componentInputParameter: flag}
            items: {componentInputParameter: items}
components:
  comp-produce:
    executorLabel: exec-produce
    inputDefinitions:
      parameters:
        text: {parameterType: STRING}
        count: {parameterType: NUMBER_INTEGER}
    outputDefinitions:
      artifacts:
        data: {artifactType: {schemaTitle: system.Dataset}}
      parameters:
        word: {parameterType: STRING}
  comp-consume:
    executorLabel: exec-consume
    inputDefinitions:
      artifacts:
        data: {artifactType: {schemaTitle: system.Dataset}}
      parameters:
        word: {parameterType: STRING}
        suffix: {parameterType: STRING}
    outputDefinitions:
      artifacts:
        out: {artifactType: {schemaTitle: system.Artifact}}
  comp-side:
    executorLabel: exec-side
    inputDefinitions:
      parameters:
        ratio: {parameterType: NUMBER_DOUBLE}
        flag: {parameterType: BOOLEAN}
        items: {parameterType: LIST}
    outputDefinitions:
      artifacts:
        out: {artifactType: {schemaTitle: system.Artifact}}
deploymentSpec:
  executors:
    exec-produce:
      container:
        image: registry.test/tool@sha256:0000000000000000000000000000000000000000000000000000000000000000
        command: [/ko-app/tool]
        args: [produce, "{{$.inputs.parameters['text']}}", "{{$.inputs.parameters['count']}}", "{{$.outputs.artifacts['data'].path}}", "{{$.outputs.parameters['word'].output_file}}"]
    exec-consume:
      container:
        image: registry.test/tool@sha256:0000000000000000000000000000000000000000000000000000000000000000
        command: [tool]
        args: [consume, "{{$.inputs.artifacts['data'].path}}", "{{$.inputs.parameters['word']}}", "{{$.inputs.parameters['suffix']}}", "{{$.outputs.artifacts['out'].path}}"]
    exec-side:
      container:
        image: registry.test/tool@sha256:0000000000000000000000000000000000000000000000000000000000000000
        args: [write, "{{$.outputs.artifacts['out'].path}}", "r={{$.inputs.parameters['ratio']}}", "f={{$.inputs.parameters['flag']}}", "l={{$.inputs.parameters['items']}}", "task={{$.pipeline_task_name}}", "run={{$.pipeline_job_uuid}}"]
        env:
        - {name: TASK_ENV, value: "yes"}
`

func prepare(t *testing.T, spec string, params map[string]any) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "run")
	err := Prepare(dir, []byte(spec), Request{ID: "run-1", DisplayName: "test run", Parameters: params, CreatedAt: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func taskStates(st *State) string {
	var parts []string
	for _, t := range st.Tasks {
		parts = append(parts, t.Name+"="+t.State)
	}
	return strings.Join(parts, " ")
}

func TestCompileOrdersTasksAndTypes(t *testing.T) {
	p, err := Compile(runnertest.TrainSpec("img@sha256:00", false))
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, task := range p.Root.Tasks {
		order = append(order, task.Name+"<"+strings.Join(task.Deps, ","))
	}
	if got := strings.Join(order, " "); got != "prepare-data< train<prepare-data" {
		t.Errorf("order = %q", got)
	}
	if p.Name != "djia30-sentiment" || p.Params["model_version"].Type != "NUMBER_INTEGER" || p.Params["epochs"].Default != float64(30) {
		t.Errorf("plan = %+v %+v", p.Name, p.Params["epochs"])
	}
	p, err = Compile([]byte(dagSpec))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, task := range p.Root.Tasks {
		names = append(names, task.Name)
	}
	if got := strings.Join(names, ","); got != "produce,consume,side" {
		t.Errorf("order = %s", got)
	}
}

func TestCompileErrors(t *testing.T) {
	cyc := strings.Replace(dagSpec, "componentRef: {name: comp-produce}", "componentRef: {name: comp-produce}\n        dependentTasks: [side]", 1)
	for name, tc := range map[string]struct{ spec, want string }{
		"cycle":        {cyc, "tasks consume, produce, side depend on each other in a cycle"},
		"no executor":  {strings.Replace(dagSpec, "exec-side:", "exec-other:", 1), `task side: executor "exec-side" of component "comp-side" is not in deploymentSpec.executors`},
		"unknown dep":  {strings.Replace(dagSpec, "dependentTasks: [produce]", "dependentTasks: [nope]", 1), `task side depends on task "nope", which is not in its DAG`},
		"bad artifact": {strings.Replace(dagSpec, "outputArtifactKey: data", "outputArtifactKey: nope", 1), `task consume input artifact "data" takes output artifact "nope" of task "produce", which does not exist`},
		"not a spec":   {"root: 3", "pipeline spec is not a KFP v2 PipelineSpec"},
	} {
		_, err := Compile([]byte(tc.spec))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Compile = %v, want %q", name, err, tc.want)
		}
	}
}

func TestResolveParams(t *testing.T) {
	p, err := Compile([]byte(dagSpec))
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.ResolveParams(map[string]any{"n": 5, "ratio": 1, "cfg": map[string]any{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"cfg":{"k":"v"},"flag":false,"greeting":"hello","items":[1,"a"],"n":5,"ratio":1}`
	if jsonString(got) != want {
		t.Errorf("params = %s, want %s", jsonString(got), want)
	}
	for in, msg := range map[string]string{
		`{"n": 2.5}`:        `parameter "n": want a NUMBER_INTEGER, got the number 2.5`,
		`{"n": "3"}`:        `parameter "n": want a NUMBER_INTEGER, got the string "3"`,
		`{"greeting": 1}`:   `parameter "greeting": want a STRING, got the number 1 (quote it)`,
		`{"flag": "yes"}`:   `parameter "flag": want a BOOLEAN (true or false), got the string "yes"`,
		`{"items": {}}`:     `parameter "items": want a LIST, got an object`,
		`{"cfg": [1]}`:      `parameter "cfg": want a STRUCT, got a list`,
		`{"epochs": 3}`:     `parameter "epochs": the pipeline declares no such parameter (it has: cfg, flag, greeting, items, n, ratio)`,
		`{"ratio": "fast"}`: `parameter "ratio": want a NUMBER_DOUBLE, got the string "fast"`,
	} {
		var m map[string]any
		if err := jsonUnmarshal(in, &m); err != nil {
			t.Fatal(err)
		}
		_, err := p.ResolveParams(m)
		var pe *ParamError
		if !errors.As(err, &pe) || err.Error() != msg {
			t.Errorf("ResolveParams(%s) = %v, want %q", in, err, msg)
		}
	}
	tp, _ := Compile(runnertest.TrainSpec("img@sha256:00", false))
	_, err = tp.ResolveParams(map[string]any{"data_path": "/d", "model_base_path": "/m"})
	if err == nil || err.Error() != `parameter "model_version": is required and has no default; give it a value` {
		t.Errorf("missing required = %v", err)
	}
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		typ  string
		v    any
		want string
	}{
		{"NUMBER_INTEGER", float64(7), "7"}, {"NUMBER_DOUBLE", 0.001, "0.001"}, {"NUMBER_DOUBLE", float64(2), "2"},
		{"STRING", "32,16", "32,16"}, {"BOOLEAN", true, "true"}, {"LIST", []any{1.0, "a"}, `[1,"a"]`},
		{"STRUCT", map[string]any{"a": 1.0}, `{"a":1}`}, {"", float64(42), "42"},
	} {
		if got := Format(tc.typ, tc.v); got != tc.want {
			t.Errorf("Format(%s, %v) = %q, want %q", tc.typ, tc.v, got, tc.want)
		}
	}
}

func TestExecDAGParamsArtifactsPlaceholders(t *testing.T) {
	dir := prepare(t, dagSpec, map[string]any{"greeting": "hi", "n": 2})
	r := newRunner(t, runnertest.NewDirImages(t, "IMAGE_ENV=1"), WithParallelism(2))
	st, err := r.Exec(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != pipelines.StateSucceeded || taskStates(st) != "produce=SUCCEEDED consume=SUCCEEDED side=SUCCEEDED" {
		t.Fatalf("state = %s %s (%s)", st.State, taskStates(st), st.Error)
	}
	if got := readFile(t, OutputArtifactPath(dir, "produce", "data")); got != "hi\nhi\n" {
		t.Errorf("produce data = %q", got)
	}
	if got := readFile(t, OutputArtifactPath(dir, "consume", "out")); got != "HI\nHI\nwordy!" {
		t.Errorf("consume out = %q", got)
	}
	if got := readFile(t, OutputArtifactPath(dir, "side", "out")); got != `r=0.25 f=false l=[1,"a"] task=side run=run-1` {
		t.Errorf("side out = %q", got)
	}
	if got := readFile(t, filepath.Join(TaskDir(dir, "produce"), "log")); got != "produced 2 lines\n" {
		t.Errorf("produce log = %q", got)
	}
	onDisk, err := ReadState(dir)
	if err != nil || onDisk.State != pipelines.StateSucceeded || onDisk.Tasks[0].Attempts != 1 || onDisk.FinishedAt.IsZero() {
		t.Errorf("state file = %+v, %v", onDisk, err)
	}
}

func TestExecTaskEnv(t *testing.T) {
	spec := strings.Replace(dagSpec, `args: [write, "{{$.outputs.artifacts['out'].path}}", "r={{$.inputs.parameters['ratio']}}", "f={{$.inputs.parameters['flag']}}", "l={{$.inputs.parameters['items']}}", "task={{$.pipeline_task_name}}", "run={{$.pipeline_job_uuid}}"]`,
		`args: [env, TASK_ENV, "{{$.outputs.artifacts['out'].path}}"]`, 1)
	dir := prepare(t, spec, nil)
	st, err := newRunner(t, runnertest.NewDirImages(t)).Exec(context.Background(), dir)
	if err != nil || st.State != pipelines.StateSucceeded {
		t.Fatalf("Exec = %+v, %v", st, err)
	}
	if got := readFile(t, OutputArtifactPath(dir, "side", "out")); got != "yes" {
		t.Errorf("TASK_ENV = %q", got)
	}
}

func TestExecWrongParameterFailsRun(t *testing.T) {
	dir := prepare(t, dagSpec, map[string]any{"n": "three"})
	st, err := newRunner(t, runnertest.NewDirImages(t)).Exec(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != pipelines.StateFailed || st.Error != `parameter "n": want a NUMBER_INTEGER, got the string "three"` {
		t.Errorf("state = %s %q", st.State, st.Error)
	}
}

const failSpec = `
pipelineInfo: {name: failing}
root:
  dag:
    tasks:
      first: {componentRef: {name: comp-fail}}
      second: {componentRef: {name: comp-ok}, dependentTasks: [first]}
      third: {componentRef: {name: comp-ok}, dependentTasks: [second]}
components:
  comp-fail: {executorLabel: exec-fail}
  comp-ok: {executorLabel: exec-ok}
deploymentSpec:
  executors:
    exec-fail: {container: {image: "r/t@sha256:00", args: [fail, "3"]}}
    exec-ok: {container: {image: "r/t@sha256:00", args: ["true"]}}
`

func TestExecFailedTaskSkipsTheRest(t *testing.T) {
	dir := prepare(t, failSpec, nil)
	st, err := newRunner(t, runnertest.NewDirImages(t)).Exec(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != pipelines.StateFailed || taskStates(st) != "first=FAILED second=SKIPPED third=SKIPPED" {
		t.Fatalf("state = %s %s", st.State, taskStates(st))
	}
	if st.Error != "task first failed: exited with code 3" {
		t.Errorf("error = %q", st.Error)
	}
	// stdout and stderr interleave as the container's process wrote them.
	bothLines := func(tail string) bool {
		return tail == "line one\nboom: something broke" || tail == "boom: something broke\nline one"
	}
	if !bothLines(st.Tasks[0].LogTail) || st.Tasks[0].ExitCode != 3 {
		t.Errorf("task = %+v", st.Tasks[0])
	}
	run := st.Run()
	if !bothLines(run.Tasks[0].LogTail) || run.Tasks[0].Error != "exited with code 3" {
		t.Errorf("run = %+v", run)
	}
}

var retrySpec = `
pipelineInfo: {name: retry}
root:
  dag:
    tasks:
      flaky:
        componentRef: {name: comp-flaky}
        retryPolicy: {maxRetryCount: RETRIES, backoffDuration: 0.01s, backoffFactor: 2}
components:
  comp-flaky: {executorLabel: exec-flaky}
deploymentSpec:
  executors:
    exec-flaky: {container: {image: "r/t@sha256:00", args: [flaky, /scratch/counter, "3"]}}
` + "\n" + scratch("exec-flaky")

func TestExecRetryPolicy(t *testing.T) {
	for _, tc := range []struct {
		retries  int
		state    string
		attempts int
	}{{2, pipelines.StateSucceeded, 3}, {1, pipelines.StateFailed, 2}} {
		spec := strings.NewReplacer("RETRIES", strconv.Itoa(tc.retries)).Replace(retrySpec)
		dir := prepare(t, spec, nil)
		r, _ := newRunnerVols(t, runnertest.NewDirImages(t))
		st, err := r.Exec(context.Background(), dir)
		if err != nil {
			t.Fatal(err)
		}
		if st.State != tc.state || st.Tasks[0].Attempts != tc.attempts {
			t.Errorf("retries %d: state %s attempts %d, want %s %d", tc.retries, st.State, st.Tasks[0].Attempts, tc.state, tc.attempts)
		}
		log := readFile(t, filepath.Join(TaskDir(dir, "flaky"), "log"))
		if !strings.Contains(log, "flaky attempt 1\n--- retry 1 of "+strconv.Itoa(tc.retries)+" after 10ms: exited with code 1\n") {
			t.Errorf("log = %q", log)
		}
	}
	r := Retry{Backoff: time.Second, Factor: 2, MaxBackoff: 3 * time.Second}
	if r.Delay(1) != time.Second || r.Delay(2) != 2*time.Second || r.Delay(3) != 3*time.Second {
		t.Errorf("delays %v %v %v", r.Delay(1), r.Delay(2), r.Delay(3))
	}
}

const sleepSpec = `
pipelineInfo: {name: sleepy}
root:
  dag:
    tasks:
      sleep: {componentRef: {name: comp-sleep}}
      after: {componentRef: {name: comp-ok}, dependentTasks: [sleep]}
components:
  comp-sleep: {executorLabel: exec-sleep}
  comp-ok: {executorLabel: exec-ok}
deploymentSpec:
  executors:
    exec-sleep: {container: {image: "r/t@sha256:00", args: [sleep, 60s, PIDFILE]}}
    exec-ok: {container: {image: "r/t@sha256:00", args: ["true"]}}
`

func TestCancelFromAnotherProcessKillsTasks(t *testing.T) {
	dir := prepare(t, strings.Replace(sleepSpec, "sleep, 60s, PIDFILE", "sleep, 61s", 1), nil)
	r := newRunner(t, runnertest.NewDirImages(t), WithPollInterval(10*time.Millisecond))
	type res struct {
		st  *State
		err error
	}
	ch := make(chan res, 1)
	go func() { st, err := r.Exec(context.Background(), dir); ch <- res{st, err} }()
	waitFor(t, "the task process", func() bool { return len(procsWith("sleep\x0061s")) > 0 })
	st, _ := ReadState(dir)
	if st.State != pipelines.StateRunning || st.PID != os.Getpid() {
		t.Fatalf("state while running = %s pid %d", st.State, st.PID)
	}
	if err := RequestCancel(dir); err != nil {
		t.Fatal(err)
	}
	var got res
	select {
	case got = <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("run not cancelled")
	}
	if got.err != nil || got.st.State != pipelines.StateCanceled || taskStates(got.st) != "sleep=CANCELED after=SKIPPED" {
		t.Fatalf("final = %+v %v", got.st, got.err)
	}
	if left := procsWith("sleep\x0061s"); len(left) > 0 {
		t.Errorf("task processes still there: %v", left)
	}
	if _, err := os.Stat(filepath.Join(dir, CancelFile)); !os.IsNotExist(err) {
		t.Errorf("cancel file left: %v", err)
	}
	if err := RequestCancel(dir); err != nil {
		t.Errorf("cancel of a finished run = %v", err)
	}
}

func TestCancelKillsTheTaskProcessGroup(t *testing.T) {
	spec := strings.Replace(sleepSpec, "args: [sleep, 60s, PIDFILE]", "args: [spawn, 62s, /tmp/pid]", 1)
	dir := prepare(t, spec, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan *State, 1)
	go func() { st, _ := newRunner(t, runnertest.NewDirImages(t)).Exec(ctx, dir); done <- st }()
	waitFor(t, "the task's child", func() bool { return len(procsWith("sleep\x0062s")) > 0 })
	cancel()
	st := <-done
	if st.State != pipelines.StateCanceled {
		t.Fatalf("state = %s", st.State)
	}
	waitFor(t, "the task's processes to end", func() bool { return len(procsWith("62s")) == 0 })
}

func TestContextCancelCancelsRun(t *testing.T) {
	dir := prepare(t, strings.Replace(sleepSpec, "PIDFILE", "/tmp/pid", 1), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	st, err := newRunner(t, runnertest.NewDirImages(t)).Exec(ctx, dir)
	if err != nil || st.State != pipelines.StateCanceled {
		t.Fatalf("Exec = %+v, %v", st, err)
	}
}

func TestReadStateOfDeadRunner(t *testing.T) {
	dir := prepare(t, failSpec, nil)
	st, _ := ReadState(dir)
	st.State, st.PID = pipelines.StateRunning, 999999999
	b := []byte(jsonString(st))
	os.WriteFile(filepath.Join(dir, StateFile), b, 0o644)
	got, err := ReadState(dir)
	if err != nil || got.State != pipelines.StateFailed || got.Error != "the runner process 999999999 exited before the run finished (state was RUNNING)" {
		t.Errorf("ReadState = %+v, %v", got, err)
	}
	if _, err := ReadState(t.TempDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing run = %v", err)
	}
}

// TestEndToEndFromRegistry builds the tool into an image, pushes it to an
// in-process registry, and runs the train-shaped pipeline through the image
// cache: real pull, real unpack, real processes.
func TestEndToEndFromRegistry(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	ref := runnertest.Push(t, host, "djia30/train")
	cache, err := imagecache.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	spec := strings.Replace(string(runnertest.TrainSpec(ref, false)), "nodeSelector:\n            labels: {pool: train}", "pvcMount: [{constant: djia30-model, mountPath: /models}]", 1)
	dir := prepare(t, spec, map[string]any{"data_path": "/data/djia30", "model_base_path": "/models", "model_version": 4})
	r, vols := newRunnerVols(t, cache)
	models := filepath.Join(vols.root, "djia30-model")
	st, err := r.Exec(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != pipelines.StateSucceeded {
		t.Fatalf("state %s: %s %+v", st.State, st.Error, st.Tasks)
	}
	if got := readFile(t, OutputArtifactPath(dir, "train", "metrics")); got != runnertest.TrainMetrics {
		t.Errorf("metrics = %q", got)
	}
	if got := readFile(t, filepath.Join(models, "4", "model.json")); got != "data from /data/djia30" {
		t.Errorf("model = %q", got)
	}
	if got := readFile(t, filepath.Join(TaskDir(dir, "train"), "log")); got != "trained\n" {
		t.Errorf("train log = %q", got)
	}
	if st.Parameters["epochs"] != float64(30) || st.Parameters["model_version"] != float64(4) {
		t.Errorf("params = %v", st.Parameters)
	}
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

var _ = fmt.Sprint

func TestParallelismBoundsConcurrentTasks(t *testing.T) {
	var b strings.Builder
	b.WriteString("pipelineInfo: {name: wide}\nroot:\n  dag:\n    tasks:\n")
	for i := 0; i < 5; i++ {
		fmt.Fprintf(&b, "      t%d: {componentRef: {name: c}}\n", i)
	}
	b.WriteString("components: {c: {executorLabel: e}}\ndeploymentSpec: {executors: {e: {container: {image: \"r/t@sha256:00\", args: [sleep, 150ms]}}}}\n")
	dir := prepare(t, b.String(), nil)
	st, err := newRunner(t, runnertest.NewDirImages(t), WithParallelism(2)).Exec(context.Background(), dir)
	if err != nil || st.State != pipelines.StateSucceeded {
		t.Fatalf("%+v %v", st, err)
	}
	// At any task's start, at most 2 tasks (itself included) had started and not finished.
	maxOverlap := 0
	for _, a := range st.Tasks {
		n := 0
		for _, o := range st.Tasks {
			if !o.StartedAt.After(a.StartedAt) && o.FinishedAt.After(a.StartedAt) {
				n++
			}
		}
		maxOverlap = max(maxOverlap, n)
	}
	if maxOverlap != 2 {
		t.Errorf("max concurrent tasks = %d, want 2", maxOverlap)
	}
}

func TestExampleSpecCompiles(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "..", "..", "..", "examples", "djia30", "pipeline.yaml"))
	if err != nil {
		t.Skip("example pipeline not there:", err)
	}
	p, err := Compile(raw)
	if err != nil {
		t.Fatal(err)
	}
	params, err := p.ResolveParams(map[string]any{"data_path": "/d", "model_base_path": "/m", "model_version": 3, "hidden": "32,16", "epochs": 30})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Root.Tasks) != 2 || p.Root.Tasks[1].Name != "train" || params["batch_size"] != float64(256) || Format("NUMBER_INTEGER", params["batch_size"]) != "256" {
		t.Errorf("plan %+v params %v", p.Root.Tasks, params)
	}
}
