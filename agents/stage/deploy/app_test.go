package deploy_test

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

	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/forge/gitremote"
	"github.com/branchml/branchml/agents/records"
	"github.com/branchml/branchml/agents/serving/local"
	stage "github.com/branchml/branchml/agents/stage/deploy"
)

func build(t *testing.T) string {
	bin := filepath.Join(t.TempDir(), "fake-tfserving")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/branchml/branchml/agents/internal/fake/tfserving/cmd/fake-tfserving").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

func TestCLIRunStatusGate(t *testing.T) {
	bin := build(t)
	ws := t.TempDir()
	state := filepath.Join(ws, "state")
	for v, beh := range map[int]string{1: "", 3: `{"failEvery":2}`} {
		d := filepath.Join(ws, "models", "djia30", fmt.Sprint(v))
		os.MkdirAll(d, 0o755)
		if beh != "" {
			os.WriteFile(filepath.Join(d, "behavior.json"), []byte(beh), 0o644)
		}
	}
	cfg := `apiVersion: branchml.dev/v1
project: djia30
branches: {build: build-components, pipeline: kf-pipeline, train: training, deploy: deploy-model}
deploy:
  model: djia30
  canary: {steps: [20, 100], interval: 100ms, threshold: 1, minRequests: 3, successRate: 99, maxLatencyP99: 1s}
backends:
  stateDir: ` + state + "\n"
	os.WriteFile(filepath.Join(ws, "branchml.yaml"), []byte(cfg), 0o644)
	// The ML repository's forge: a bare git remote where the status is written back.
	remote, err := gitremote.Init(context.Background(), filepath.Join(state, "forge", "djia30.git"),
		map[string][]byte{"README.md": []byte("ml repo\n")}, []string{"main", "deploy-model"})
	if err != nil {
		t.Fatal(err)
	}
	spec := func(v int) {
		os.WriteFile(filepath.Join(ws, "deploy.yaml"), []byte(fmt.Sprintf("apiVersion: branchml.dev/v1\nkind: DeploySpec\nmodel: {name: djia30, version: %d, volume: djia30-model, path: models/djia30}\n", v)), 0o644)
	}
	t.Cleanup(func() {
		st, _ := local.ReadState(state, "djia30")
		for _, v := range st.Variants {
			exec.Command("kill", fmt.Sprint(v.PID)).Run()
		}
	})
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := cli.Run(context.Background(), stage.App(), append([]string{"branchml-deploy"}, args...), cli.Streams{Out: &out, Err: &errb})
		return code, out.String(), errb.String()
	}
	spec(1)
	if code, out, errs := run("run", "--workspace", ws, "--commit", "c1", "--serve-command", bin); code != 0 {
		t.Fatalf("run v1 = %d\n%s\n%s", code, out, errs)
	}
	spec(3)
	resultPath := filepath.Join(ws, "result.json")
	code, out, errs := run("run", "--workspace", ws, "--commit", "c2", "--serve-command", bin, "--load", "300", "--load-body", `{"instances":[[1]]}`, "--result", resultPath, "--error-details", filepath.Join(ws, "err.json"))
	if code != 3 {
		t.Fatalf("run bad v3 = %d, want 3\n%s\n%s", code, out, errs)
	}
	var res struct {
		ExitCode int `json:"exitCode"`
		Outputs  struct {
			Status struct {
				Phase, Message string
				StableVersion  int64
			} `json:"status"`
		} `json:"outputs"`
	}
	raw, _ := os.ReadFile(resultPath)
	if err := json.Unmarshal(raw, &res); err != nil || res.ExitCode != 3 || res.Outputs.Status.Phase != "RolledBack" || res.Outputs.Status.StableVersion != 1 || !strings.Contains(res.Outputs.Status.Message, "success rate") {
		t.Fatalf("result = %s", raw)
	}
	// The rolled-back status was written back to deploy-model.
	raw, err = remote.ReadFile(context.Background(), "deploy-model", records.DeployStatusPath)
	if err != nil {
		t.Fatal(err)
	}
	var written records.DeployStatus
	if err := json.Unmarshal(raw, &written); err != nil || written.Phase != "RolledBack" || written.StableVersion != 1 || written.SourceCommit != "c2" {
		t.Fatalf("written-back status = %s", raw)
	}
	code, out, _ = run("status", "--workspace", ws, "-o", "json")
	if code != 0 || !strings.Contains(out, `"phase": "RolledBack"`) || !strings.Contains(out, `"variant": "stable"`) {
		t.Fatalf("status = %d\n%s", code, out)
	}
	os.WriteFile(filepath.Join(ws, "deploy.yaml"), []byte("apiVersion: branchml.dev/v1\nkind: DeploySpec\nmodel: {name: djia30, version: 0}\n"), 0o644)
	if code, _, errs := run("run", "--workspace", ws, "--serve-command", bin); code != 2 || !strings.Contains(errs, "model.version 0") {
		t.Fatalf("bad spec = %d\n%s", code, errs)
	}
}
