package pipelinecmd

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/backends/forge/gitremote"
	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/records"
)

// stages.pipeline.requireApproval: a commit pushed onto the pipeline branch
// is refused (exit 2, the fix text) before the pipelines backend is opened
// or a lock written; one merged through an approved pull request gets past
// the gate (here to the missing pipeline spec).
func TestRunRequireApproval(t *testing.T) {
	ctx := context.Background()
	ws := t.TempDir()
	state := filepath.Join(ws, "state")
	os.WriteFile(filepath.Join(ws, "branchml.yaml"), []byte(`apiVersion: branchml.dev/v1
project: djia30
branches: {build: build-components, pipeline: kf-pipeline, train: training, deploy: deploy-model}
stages:
  pipeline: {requireApproval: true}
pipeline: {spec: pipeline.yaml}
backends:
  stateDir: `+state+"\n"), 0o644)
	f, err := gitremote.Init(ctx, filepath.Join(state, "forge", "djia30.git"), map[string][]byte{"README.md": []byte("x\n")}, []string{"main", "build-components", "kf-pipeline"})
	if err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := cli.Run(ctx, App(), append([]string{"branchml-pipeline", "run", "--workspace", ws}, args...), cli.Streams{Out: &out, Err: &errb})
		return code, errb.String()
	}
	pushed, err := f.WriteBack(ctx, forge.WriteBack{Branch: "kf-pipeline", Message: "a push", Files: map[string][]byte{"a.txt": []byte("a\n")}})
	if err != nil {
		t.Fatal(err)
	}
	code, logs := run("--commit", pushed)
	if code != agent.ExitUsage || !strings.Contains(logs, "stages.pipeline.requireApproval: commit "+pushed[:12]+" on kf-pipeline did not arrive through a merged pull request") ||
		!strings.Contains(logs, "fix: merge into kf-pipeline through a pull request with an approving review ('branchml pr open --head BRANCH --base kf-pipeline', approve, merge), or set stages.pipeline.requireApproval: false") {
		t.Fatalf("unreviewed commit: exit %d\n%s", code, logs)
	}
	if _, err := os.Stat(filepath.Join(state, "pipelines")); !os.IsNotExist(err) {
		t.Fatalf("a refused run opened the pipelines backend: %v", err)
	}
	if _, err := f.ReadFile(ctx, "kf-pipeline", records.PipelineLockPath); err == nil {
		t.Fatal("a refused run wrote the pipeline lock")
	}

	f.WriteBack(ctx, forge.WriteBack{Branch: "main", Message: "a change", Files: map[string][]byte{"b.txt": []byte("b\n")}})
	pr, _ := f.EnsurePullRequest(ctx, forge.PullRequest{Head: "main", Base: "kf-pipeline", Title: "t", Author: "ds1"})
	if _, err := f.Review(ctx, pr.Number, "bob", "APPROVED", ""); err != nil {
		t.Fatal(err)
	}
	merged, err := f.MergeAs(ctx, pr.Number, "bob")
	if err != nil {
		t.Fatal(err)
	}
	code, logs = run("--commit", merged)
	if code != agent.ExitUsage || strings.Contains(logs, "requireApproval") || !strings.Contains(logs, "read pipeline spec: ") {
		t.Fatalf("approved merge: exit %d\n%s", code, logs)
	}
	if _, err := os.Stat(filepath.Join(state, "pipelines")); err != nil {
		t.Fatalf("an approved run did not get to the pipelines backend: %v", err)
	}
}
