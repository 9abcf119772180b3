package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/branchml/branchml/agents/backends/pipelines"
	"github.com/branchml/branchml/agents/backends/pipelines/local/runner/runnertest"
)

// The IR files under testdata/ir are the project's own, one per construct,
// shaped as the KFP SDK compiles them; these tests run them with tasks in
// real containers.

func irFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "ir", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func execIR(t *testing.T, name string, params map[string]any, opts ...Option) (*State, string, *testVolumes) {
	t.Helper()
	dir := prepare(t, irFile(t, name), params)
	r, vols := newRunnerVols(t, runnertest.NewDirImages(t), opts...)
	st, err := r.Exec(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	return st, dir, vols
}

func task(t *testing.T, st *State, name string) TaskState {
	t.Helper()
	for _, ts := range st.Tasks {
		if ts.Name == name {
			return ts
		}
	}
	t.Fatalf("no task %s in %s", name, taskStates(st))
	return TaskState{}
}

func TestConditionsIfElifElseOneOf(t *testing.T) {
	for coin, want := range map[string]struct{ report, ran string }{
		"heads": {"Got heads!", "condition-branches-1/condition-2"},
		"tails": {"Got tails!", "condition-branches-1/condition-3"},
		"edge":  {"Draw! (test run)", "condition-branches-1/condition-4"},
	} {
		st, _, _ := execIR(t, "conditions.yaml", map[string]any{"coin": coin})
		if st.State != pipelines.StateSucceeded {
			t.Fatalf("%s: %s %s", coin, st.State, st.Error)
		}
		if got := task(t, st, "report").Outputs["Output"]; got != want.report {
			t.Errorf("%s: report = %q, want %q", coin, got, want.report)
		}
		for _, b := range []string{"condition-branches-1/condition-2", "condition-branches-1/condition-3", "condition-branches-1/condition-4"} {
			ts := task(t, st, b)
			wantState := pipelines.StateSkipped
			if b == want.ran {
				wantState = pipelines.StateSucceeded
			}
			if ts.State != wantState || (wantState == pipelines.StateSkipped && !strings.HasPrefix(ts.Note, "condition ")) {
				t.Errorf("%s: %s = %s (%s), want %s", coin, b, ts.State, ts.Note, wantState)
			}
		}
	}
}

func TestParallelForCollected(t *testing.T) {
	st, dir, _ := execIR(t, "loops.yaml", nil)
	if st.State != pipelines.StateSucceeded {
		t.Fatalf("%s %s: %s", st.State, st.Error, taskStates(st))
	}
	l1 := task(t, st, "for-loop-1")
	if l1.Iterations != 3 || l1.Kind != "loop" {
		t.Errorf("for-loop-1 = %+v", l1)
	}
	if got := jsonString(l1.Outputs["pipelinechannel--shout-Output"]); got != `["text=\"a\"","text=\"b\"","text=\"c\""]` {
		t.Errorf("collected parameters = %s", got)
	}
	if got := readFile(t, OutputArtifactPath(dir, "collect", "out")); got != `text="a",text="b",text="c"` {
		t.Errorf("collected artifacts = %q", got)
	}
	if got := task(t, st, "for-loop-1/iteration-1/shout").Outputs["Output"]; got != `text="b"` {
		t.Errorf("iteration 1 = %v", got)
	}
	if d := task(t, st, "for-loop-1/iteration-2").DisplayName; d != "for-loop-1 (iteration 2)" {
		t.Errorf("display name = %q", d)
	}
	if got := task(t, st, "for-loop-2/iteration-1/shout-2").Outputs["Output"]; got != `text="2"` {
		t.Errorf("selector = %v", got)
	}
	l3 := task(t, st, "for-loop-3")
	if l3.Iterations != 3 || task(t, st, "for-loop-3/iteration-0/read").Outputs["Output"] != `text="a"` {
		t.Errorf("artifact iterator = %+v", l3)
	}
	// parallelismLimit 2: never more than 2 iterations of for-loop-1 at once.
	var its []TaskState
	for i := 0; i < 3; i++ {
		its = append(its, task(t, st, fmt.Sprintf("for-loop-1/iteration-%d", i)))
	}
	for _, a := range its {
		n := 0
		for _, o := range its {
			if !o.StartedAt.After(a.StartedAt) && o.FinishedAt.After(a.StartedAt) {
				n++
			}
		}
		if n > 2 {
			t.Errorf("%d iterations at once", n)
		}
	}
}

func TestNestedDAGs(t *testing.T) {
	st, dir, _ := execIR(t, "nested.yaml", map[string]any{"msg": "yo"})
	if st.State != pipelines.StateSucceeded {
		t.Fatalf("%s %s: %s", st.State, st.Error, taskStates(st))
	}
	if got := taskStates(st); got != "outer=SUCCEEDED use=SUCCEEDED outer/middle=SUCCEEDED outer/middle/produce=SUCCEEDED" {
		t.Errorf("states = %s", got)
	}
	if got := readFile(t, OutputArtifactPath(dir, "outer/middle/produce", "data")); got != "yo\nyo\n" {
		t.Errorf("produce data = %q (the optional DAG input's default is 2)", got)
	}
	if got := readFile(t, OutputArtifactPath(dir, "use", "out")); got != "YO\nYO\nwordy!" {
		t.Errorf("use out = %q", got)
	}
	if o := task(t, st, "outer").Outputs["word"]; o != "wordy" {
		t.Errorf("outer's DAG output = %v", o)
	}
}

func TestExitHandlerAndIgnoreUpstreamFailure(t *testing.T) {
	st, _, vols := execIR(t, "exit.yaml", nil)
	if st.State != pipelines.StateFailed || st.Error != "task exit-handler-1/fail failed: exited with code 1" {
		t.Fatalf("run = %s %q", st.State, st.Error)
	}
	if got := taskStates(st); got != "exit-handler-1=FAILED after-fail=SUCCEEDED cleanup=SUCCEEDED never=SKIPPED exit-handler-1/fail=FAILED" {
		t.Errorf("states = %s", got)
	}
	var fs map[string]any
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(vols.root, "scratch", "status"))), &fs); err != nil {
		t.Fatal(err)
	}
	if fs["state"] != "FAILED" || fs["pipelineTaskName"] != "exit-handler-1" || fs["pipelineJobResourceName"] != "run-1" || jsonString(fs["error"]) != `{"code":1,"message":"task exit-handler-1 failed"}` {
		t.Errorf("final status = %v", fs)
	}
	if got := task(t, st, "after-fail").Outputs["Output"]; got != "the default" {
		t.Errorf("ignore_upstream_failure input = %v", got)
	}
}

func TestPlaceholdersExecutorInputImporter(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data.csv")
	os.WriteFile(data, []byte("a,b\n"), 0o644)
	st, dir, _ := execIR(t, "placeholders.yaml", map[string]any{"path": data})
	if st.State != pipelines.StateSucceeded {
		t.Fatalf("%s %s: %s", st.State, st.Error, taskStates(st))
	}
	var args []string
	if err := json.Unmarshal([]byte(readFile(t, OutputArtifactPath(dir, "args", "out"))), &args); err != nil {
		t.Fatal(err)
	}
	want := []string{"--name=y-args", "--no-opt", "--has-name=y", "inputs=3", `{"inputs":3}`, data, "run-1"}
	if strings.Join(args, "|") != strings.Join(want, "|") {
		t.Errorf("args = %q\nwant   %q", args, want)
	}
	if got := task(t, st, "executor").Outputs["Output"]; got != `greeting="hello y from test run";n=3;pipelinechannel--name="y"` {
		t.Errorf("executor output (from executor_output.json) = %v", got)
	}
	if got := readFile(t, OutputArtifactPath(dir, "executor", "model")); got != `greeting="hello y from test run";n=3;pipelinechannel--name="y"` {
		t.Errorf("model = %q", got)
	}
	if a := task(t, st, "importer").Artifacts["artifact"]; len(a) != 1 || a[0].URI != data || a[0].Metadata["origin"] != "run-1" {
		t.Errorf("imported = %+v", a)
	}
}

func TestCaching(t *testing.T) {
	cache := t.TempDir()
	spec := irFile(t, "nested.yaml")
	spec = strings.Replace(spec, "        produce:\n          componentRef: {name: comp-produce}", "        produce:\n          cachingOptions: {enableCache: true}\n          componentRef: {name: comp-produce}", 1)
	images := runnertest.NewDirImages(t)
	var runs []*State
	for i, msg := range []string{"yo", "yo", "hey"} {
		dir := filepath.Join(t.TempDir(), "run")
		if err := Prepare(dir, []byte(spec), Request{ID: fmt.Sprintf("run-%d", i), DisplayName: "c", Parameters: map[string]any{"msg": msg}, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		st, err := newRunner(t, images, WithCacheDir(cache)).Exec(context.Background(), dir)
		if err != nil || st.State != pipelines.StateSucceeded {
			t.Fatalf("run %d: %+v %v", i, st, err)
		}
		runs = append(runs, st)
	}
	first, second, third := task(t, runs[0], "outer/middle/produce"), task(t, runs[1], "outer/middle/produce"), task(t, runs[2], "outer/middle/produce")
	if first.Cached || !second.Cached || third.Cached || first.CacheKey == "" || second.CacheKey != first.CacheKey || third.CacheKey == first.CacheKey {
		t.Errorf("cache: first %v %s, second %v %s, third %v %s", first.Cached, first.CacheKey, second.Cached, second.CacheKey, third.Cached, third.CacheKey)
	}
	if second.Attempts != 0 || second.Note != "cached: reused task outer/middle/produce of run run-0" || second.Outputs["word"] != "wordy" {
		t.Errorf("cached task = %+v", second)
	}
	if use := task(t, runs[1], "use"); use.Cached || use.State != pipelines.StateSucceeded {
		t.Errorf("use (cache off) = %+v", use)
	}
}

func TestPlatformSpecLocally(t *testing.T) {
	secrets := t.TempDir()
	os.MkdirAll(filepath.Join(secrets, "secrets", "db"), 0o755)
	os.WriteFile(filepath.Join(secrets, "secrets", "db", "password"), []byte("s3cret"), 0o600)
	t.Setenv("BRANCHML_CONFIGMAP_APP_CONFIG_MODE", "fast")
	spec := `
pipelineInfo: {name: platform}
root:
  inputDefinitions: {parameters: {vol: {parameterType: STRING, defaultValue: shared}}}
  dag:
    tasks:
      env: {componentRef: {name: comp-env}, inputs: {parameters: {vol: {componentInputParameter: vol}}}}
components:
  comp-env: {executorLabel: exec-env, inputDefinitions: {parameters: {vol: {parameterType: STRING}}}}
deploymentSpec:
  executors:
    exec-env:
      container:
        image: r/t@sha256:00
        command: [/ko-app/tool]
        args: [args, /mnt/vol/out, "$(PASSWORD)"]
        env: [{name: DB_PASSWORD_FILE, value: /etc/db/password}]
---
platforms:
  kubernetes:
    deploymentSpec:
      executors:
        exec-env:
          pvcMount: [{mountPath: /mnt/vol, pvcNameParameter: {componentInputParameter: vol}}]
          secretAsEnv: [{secretNameParameter: {runtimeValue: {constant: db}}, keyToEnv: [{secretKey: password, envVar: PASSWORD}]}]
          configMapAsEnv: [{configMapName: app-config, keyToEnv: [{configMapKey: mode, envVar: MODE}]}]
          secretAsVolume: [{secretName: db, mountPath: /etc/db}]
          nodeSelector: {labels: {gpu: "true"}}
          tolerations: [{key: k, operator: Exists}]
`
	dir := prepare(t, spec, nil)
	r, vols := newRunnerVols(t, runnertest.NewDirImages(t), WithSecretsDir(secrets))
	st, err := r.Exec(context.Background(), dir)
	if err != nil || st.State != pipelines.StateSucceeded {
		t.Fatalf("%+v %v", st, err)
	}
	if got := readFile(t, filepath.Join(vols.root, "shared", "out")); got != `["s3cret"]` { // $(NAME) expands as in Kubernetes
		t.Errorf("out = %s", got)
	}
	if n := task(t, st, "env").Note; n != "ignored locally: nodeSelector, tolerations" {
		t.Errorf("note = %q", n)
	}
	// The environment and the secret volume, seen from inside the task.
	spec2 := strings.Replace(spec, `args: [args, /mnt/vol/out, "$(PASSWORD)"]`, `args: [env, PASSWORD, /mnt/vol/pw]`, 1)
	spec2 = strings.Replace(spec2, "pipelineInfo: {name: platform}", "pipelineInfo: {name: platform2}", 1)
	dir = prepare(t, spec2, nil)
	if st, err = r.Exec(context.Background(), dir); err != nil || st.State != pipelines.StateSucceeded {
		t.Fatalf("%+v %v", st, err)
	}
	if got := readFile(t, filepath.Join(vols.root, "shared", "pw")); got != "s3cret" {
		t.Errorf("PASSWORD = %q", got)
	}
	spec3 := strings.Replace(spec, `args: [args, /mnt/vol/out, "$(PASSWORD)"]`, `args: [copy, /etc/db/password, /mnt/vol/pw2]`, 1)
	dir = prepare(t, spec3, nil)
	if st, err = r.Exec(context.Background(), dir); err != nil || st.State != pipelines.StateSucceeded {
		t.Fatalf("%+v %v", st, err)
	}
	if got := readFile(t, filepath.Join(vols.root, "shared", "pw2")); got != "s3cret" {
		t.Errorf("secret volume = %q", got)
	}
	// A secret that is not there is an error naming where it was looked for.
	spec4 := strings.Replace(spec, "secretKey: password", "secretKey: nope", 1)
	dir = prepare(t, spec4, nil)
	st, _ = r.Exec(context.Background(), dir)
	if want := "secret db has no key nope locally (looked in " + filepath.Join(secrets, "secrets", "db", "nope") + " and $BRANCHML_SECRET_DB_NOPE)"; st.State != pipelines.StateFailed || task(t, st, "env").Error != want {
		t.Errorf("missing secret: %s %q", st.State, task(t, st, "env").Error)
	}
}

func TestUnsupportedAndHostileSpecs(t *testing.T) {
	base := irFile(t, "nested.yaml")
	for name, tc := range map[string]struct{ spec, want string }{
		"workspace placeholder": {strings.Replace(base, `args: [produce,`, `args: ["{{$.workspace_path}}", produce,`, 1),
			"not supported by the local runner: pipeline workspaces ({{$.workspace_path}}) (task outer/middle/produce)"},
		"object storage importer": {`
pipelineInfo: {name: imp}
root: {dag: {tasks: {imp: {componentRef: {name: comp-imp}}}}}
components: {comp-imp: {executorLabel: exec-imp, outputDefinitions: {artifacts: {artifact: {artifactType: {schemaTitle: system.Dataset}}}}}}
deploymentSpec: {executors: {exec-imp: {importer: {artifactUri: {constant: "gs://bucket/x"}, typeSchema: {schemaTitle: system.Dataset}}}}}
`, "not supported by the local runner: importing from gs:// (only local paths and file:// URIs) (task imp)"},
		"init containers": {base + "---\nplatforms: {kubernetes: {deploymentSpec: {executors: {exec-consume: {initContainers: [{name: x, image: y}]}}}}}\n",
			"not supported by the local runner: kubernetes initContainers (task use)"},
		"unknown placeholder": {strings.Replace(base, "{{$.inputs.parameters['suffix']}}", "{{$.inputs.bogus}}", 1),
			"not supported by the local runner: placeholder {{$.inputs.bogus}} is not one the KFP SDK emits (task use)"},
		"condition that does not parse": {strings.Replace(base, "        middle:\n          componentRef: {name: comp-middle}", "        middle:\n          triggerPolicy: {condition: \"inputs.parameter_values[ == \"}\n          componentRef: {name: comp-middle}", 1),
			"task outer/middle: condition \"inputs.parameter_values[ == \": ERROR: <input>:1:26: Syntax error"},
		"component containing itself": {strings.Replace(base, "componentRef: {name: comp-middle}", "componentRef: {name: comp-outer}", 1),
			`task outer/middle: component "comp-outer" contains itself`},
	} {
		_, err := Compile([]byte(tc.spec))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: %v\nwant %s", name, err, tc.want)
		}
		var ue *UnsupportedError
		if strings.HasPrefix(tc.want, "not supported") && !errors.As(err, &ue) {
			t.Errorf("%s: %T is not an UnsupportedError", name, err)
		}
	}
	// Nesting beyond the bound.
	var b strings.Builder
	b.WriteString("pipelineInfo: {name: deep}\nroot: {dag: {tasks: {t: {componentRef: {name: c0}}}}}\ncomponents:\n")
	for i := 0; i < MaxDAGDepth+2; i++ {
		fmt.Fprintf(&b, "  c%d: {dag: {tasks: {t: {componentRef: {name: c%d}}}}}\n", i, i+1)
	}
	fmt.Fprintf(&b, "  c%d: {executorLabel: e}\ndeploymentSpec: {executors: {e: {container: {image: x@sha256:00}}}}\n", MaxDAGDepth+2)
	if _, err := Compile([]byte(b.String())); err == nil || !strings.Contains(err.Error(), "DAG components nest more than 64 levels deep") {
		t.Errorf("deep nesting = %v", err)
	}
	// A million items: refused at run time with a clear error, nothing started.
	spec := strings.Replace(irFile(t, "loops.yaml"), `'[{"x": "1"}, {"x": "2"}]'`, `"[`+strings.Repeat("0,", 999999)+`0]"`, 1)
	dir := prepare(t, spec, nil)
	st, err := newRunner(t, runnertest.NewDirImages(t)).Exec(context.Background(), dir)
	if err != nil || st.State != pipelines.StateFailed || task(t, st, "for-loop-2").Error != "1000000 items to iterate, more than the local runner's limit of 10000 per loop" {
		t.Errorf("million items = %v %s %q", err, st.State, task(t, st, "for-loop-2").Error)
	}
}

func TestNonRootImageUser(t *testing.T) {
	images := runnertest.NewDirImages(t)
	images.User = "1000:1000"
	os.MkdirAll(filepath.Join(images.Root, "etc"), 0o755)
	os.WriteFile(filepath.Join(images.Root, "etc", "passwd"), []byte("root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"), 0o644)
	spec := strings.Replace(chainSpec(1), `args: ["true"]`, `args: [whoami, /scratch/me]`, 1) + scratch("exec-true")
	dir := prepare(t, spec, nil)
	r, vols := newRunnerVols(t, images)
	st, err := r.Exec(context.Background(), dir)
	if testIsolation(t) == IsolationProcess {
		t.Skip("the image's user applies to containers")
	}
	if err != nil || st.State != pipelines.StateSucceeded {
		t.Fatalf("%+v %v", st, err)
	}
	if got := readFile(t, filepath.Join(vols.root, "scratch", "me")); got != "1000:1000" {
		t.Errorf("user = %s", got)
	}
}

// debianLikeImage lays out an image root with the host's dynamically linked
// /bin/sh and cat, their loader and libc (Debian's paths): an image that is
// not a static binary, run with its own file system.
func debianLikeImage(t *testing.T) *runnertest.DirImages {
	images := runnertest.NewDirImages(t)
	for _, f := range []string{"/bin/sh", "/usr/bin/cat", "/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/libc.so.6"} {
		real, err := filepath.EvalSymlinks(f)
		if err != nil {
			t.Skip("no Debian-like host files to build the image from:", err)
		}
		b, err := os.ReadFile(real)
		if err != nil {
			t.Skip(err)
		}
		dst := filepath.Join(images.Root, f)
		os.MkdirAll(filepath.Dir(dst), 0o755)
		if err := os.WriteFile(dst, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	images.Env = []string{"PATH=/usr/bin:/bin"}
	return images
}

func TestDynamicallyLinkedImageRunsOnItsOwnRoot(t *testing.T) {
	if testIsolation(t) != IsolationContainer {
		t.Skip("the image's own file system is a container's")
	}
	spec := `
pipelineInfo: {name: shell}
root: {dag: {tasks: {sh: {componentRef: {name: c}}}}}
components: {c: {executorLabel: e, outputDefinitions: {parameters: {Output: {parameterType: STRING}}}}}
deploymentSpec:
  executors:
    e:
      container:
        image: r/t@sha256:00
        command: [sh, -c]
        args: ['echo "$(cat /etc/os-release-test) in $(hostname 2>/dev/null || echo box) as $0" > "$1"', me, "{{$.outputs.parameters['Output'].output_file}}"]
`
	images := debianLikeImage(t)
	os.MkdirAll(filepath.Join(images.Root, "etc"), 0o755)
	os.WriteFile(filepath.Join(images.Root, "etc", "os-release-test"), []byte("image-root"), 0o644)
	dir := prepare(t, spec, nil)
	st, err := newRunner(t, images).Exec(context.Background(), dir)
	if err != nil || st.State != pipelines.StateSucceeded {
		t.Fatalf("%+v %v", st, err)
	}
	if got := task(t, st, "sh").Outputs["Output"]; got != "image-root in box as me\n" {
		t.Errorf("output = %q", got)
	}
}
