package runcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/branchml/branchml/agents/backends/pipelines/local/runner/runnertest"
	"github.com/branchml/branchml/agents/backends/registry"
	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/cli/branchmlcmd"
	"github.com/branchml/branchml/agents/cli/traincmd"
)

const spec = `
pipelineInfo: {name: hello}
root:
  inputDefinitions: {parameters: {who: {parameterType: STRING}, times: {parameterType: NUMBER_INTEGER, defaultValue: 1}, flags: {parameterType: LIST, defaultValue: []}}}
  dag:
    tasks:
      greet:
        componentRef: {name: comp-greet}
        inputs: {parameters: {who: {componentInputParameter: who}, times: {componentInputParameter: times}, flags: {componentInputParameter: flags}}}
components:
  comp-greet:
    executorLabel: exec-greet
    inputDefinitions: {parameters: {who: {parameterType: STRING}, times: {parameterType: NUMBER_INTEGER}, flags: {parameterType: LIST}}}
    outputDefinitions: {parameters: {Output: {parameterType: STRING}}}
deploymentSpec:
  executors:
    exec-greet: {container: {image: IMAGE, command: [/ko-app/tool], args: [write, "{{$.outputs.parameters['Output'].output_file}}", "hello {{$.inputs.parameters['who']}} x{{$.inputs.parameters['times']}} {{$.inputs.parameters['flags']}}"]}}
`

func TestRunAnyPipelineThenStatus(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("tasks in containers need root")
	}
	ctx := context.Background()
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	addr, stop, err := registry.EnsureLocal(ctx, state)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	ref := runnertest.Push(t, addr, "hello/tool") // also tagged :test
	tag := "hello/tool:test"                      // not pinned: found in the embedded registry
	file := filepath.Join(dir, "hello.yaml")
	os.WriteFile(file, []byte(strings.Replace(spec, "IMAGE", tag, 1)), 0o644)
	t.Setenv("BRANCHML_BACKENDS_STATE_DIR", state)
	t.Chdir(dir)

	branchmlcmd.Register(Command())
	var out, errb bytes.Buffer
	code := cli.Run(ctx, branchmlcmd.App(), []string{"branchml", "run", file, "--param", "who=world", "--param", "times=2", "--param", `flags=["-v"]`, "-o", "json"}, cli.Streams{Out: &out, Err: &errb})
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	var res struct {
		Summary string
		Outputs struct {
			ID    string
			State string
			Tasks []struct {
				Name    string
				State   string
				Outputs map[string]any
			}
		}
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	if res.Outputs.State != "SUCCEEDED" || len(res.Outputs.Tasks) != 1 || res.Outputs.Tasks[0].Outputs["Output"] != `hello world x2 ["-v"]` {
		t.Errorf("result = %s", out.String())
	}
	if !strings.Contains(errb.String(), "task greet SUCCEEDED") || !strings.Contains(errb.String(), "image hello/tool:test is "+strings.Split(ref, "@")[0]+"@") {
		t.Errorf("progress = %s", errb.String())
	}
	// The run is kept for branchml-train status.
	os.WriteFile(filepath.Join(dir, "branchml.yaml"), []byte("apiVersion: branchml.dev/v1\nproject: p\nbranches: {build: b, pipeline: p, train: t, deploy: d}\n"), 0o644)
	out.Reset()
	errb.Reset()
	if code := cli.Run(ctx, traincmd.App(), []string{"branchml-train", "status", res.Outputs.ID}, cli.Streams{Out: &out, Err: &errb}); code != 0 || !strings.Contains(out.String(), ": SUCCEEDED [greet=SUCCEEDED]") {
		t.Errorf("status: %d %s %s", code, out.String(), errb.String())
	}
	// A bad parameter is a usage error naming it.
	out.Reset()
	errb.Reset()
	if code := cli.Run(ctx, branchmlcmd.App(), []string{"branchml", "run", file, "--param", "times=two"}, cli.Streams{Out: &out, Err: &errb}); code != 2 || !strings.Contains(errb.String(), `times: "two" is not a whole number`) {
		t.Errorf("bad param: %d %s", code, errb.String())
	}
}
