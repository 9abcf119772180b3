package snapshotcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/backends/forge/gitremote"
	"github.com/branchml/branchml/agents/backends/storage"
	"github.com/branchml/branchml/agents/backends/storage/local"
	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/records"
	"github.com/branchml/branchml/agents/stages/snapshot/lineage"
)

const commit = "9f2c4e1a7b3d5c6e8f0a1b2c3d4e5f6a7b8c9d0e"

func TestCommands(t *testing.T) {
	ctx := context.Background()
	ws := t.TempDir()
	os.WriteFile(filepath.Join(ws, "branchml.yaml"), []byte("apiVersion: branchml.dev/v1\nproject: djia30\n"+
		"branches: {build: build-components, pipeline: kf-pipeline, train: training, deploy: deploy-model}\n"), 0o644)
	st, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"djia30-data", "djia30-model"} {
		vol, _ := st.EnsureVolume(ctx, storage.VolumeSpec{Name: v})
		os.WriteFile(filepath.Join(vol.Path, "f.txt"), []byte(v), 0o644)
	}
	fg, err := gitremote.Init(ctx, filepath.Join(t.TempDir(), "r.git"), map[string][]byte{"README.md": []byte("x\n")}, []string{"main", "training"})
	if err != nil {
		t.Fatal(err)
	}
	run := records.RunRecord{APIVersion: records.APIVersion, Kind: "RunRecord", SourceCommit: commit, RunID: "run-1", State: "SUCCEEDED",
		VersionID: "v-1", PipelineID: "p", DataVolume: "djia30-data", Model: &records.ModelRef{Name: "djia30", Version: 3, Volume: "djia30-model", Path: "/models/djia30"},
		StartedAt: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)}
	raw, _ := json.Marshal(run)
	os.MkdirAll(filepath.Join(ws, ".branchml"), 0o755)
	os.WriteFile(filepath.Join(ws, records.TrainingLockPath), raw, 0o644)
	w := Wiring{
		Storage: func(*cli.Env) (storage.Backend, error) { return st, nil },
		Forge:   func(*cli.Env) (forge.Forge, error) { return fg, nil },
	}
	do := func(want int, args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		code := cli.Run(ctx, AppWith(w), append([]string{"branchml-snapshot"}, args...), cli.Streams{Out: &out, Err: &errb})
		if code != want {
			t.Fatalf("%v: exit %d, want %d\nstdout %s\nstderr %s", args, code, want, out.String(), errb.String())
		}
		return out.String()
	}
	id := lineage.ID(commit, "run-1")
	res := filepath.Join(t.TempDir(), "result.json")
	out := do(0, "run", "--workspace", ws, "--commit", commit, "--build-user", "ana", "--result", res)
	if !strings.Contains(out, "recorded lineage "+id+": data djia30-data-"+id+", model djia30-model-"+id) {
		t.Fatalf("run output: %s", out)
	}
	var r agent.Result
	js, _ := os.ReadFile(res)
	json.Unmarshal(js, &r)
	if !r.OK || r.Outputs.(map[string]any)["lineageId"] != id {
		t.Fatalf("result = %s", js)
	}
	// The record, as a checkout of training has it, is what lineage show reads.
	rec, err := fg.ReadFile(ctx, "training", lineage.Path(id))
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(ws, records.LineageDir), 0o755)
	os.WriteFile(filepath.Join(ws, lineage.Path(id)), rec, 0o644)
	show := do(0, "lineage", "show", "--workspace", ws, "djia30:3")
	for _, s := range []string{"commit          " + commit, "data snapshot   djia30-data-" + id, "model version   djia30 version 3"} {
		if !strings.Contains(show, s) {
			t.Fatalf("show lacks %q:\n%s", s, show)
		}
	}
	if g := do(0, "lineage", "graph", "--workspace", ws, "--format", "mermaid"); !strings.HasPrefix(g, "flowchart LR\n") {
		t.Fatalf("graph: %s", g)
	}
	do(2, "lineage", "graph", "--workspace", ws, "--format", "svg")
	do(2, "lineage", "show", "--workspace", ws, "lin-0000000000000000")

	if v := do(0, "verify", "--workspace", ws, "djia30-data-"+id); !strings.Contains(v, "verified: 1 files, 11 bytes, handle as lineage "+id+" recorded") {
		t.Fatalf("verify: %s", v)
	}
	do(0, "clone", "--workspace", ws, "djia30-data-"+id, "ws-ana")
	if b, _ := os.ReadFile(filepath.Join(st.Root(), "volumes", "ws-ana", "f.txt")); string(b) != "djia30-data" {
		t.Fatalf("clone content %q", b)
	}
	do(2, "restore", "--workspace", ws, "djia30-data-"+id)
	do(0, "restore", "--workspace", ws, "--in-place", "--volume", "djia30-data", "djia30-data-"+id)
	if p := do(0, "prune", "--workspace", ws, "--dry-run", "--keep", "1"); !strings.Contains(p, "would delete 0 snapshots, kept 2") {
		t.Fatalf("prune: %s", p)
	}
	do(2, "run", "--workspace", ws, "--run-record", "missing.json")
}
