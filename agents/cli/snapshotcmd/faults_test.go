package snapshotcmd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
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
	"github.com/branchml/branchml/agents/records"
	"github.com/branchml/branchml/agents/stages/snapshot/lineage"
)

type fixture struct {
	t  *testing.T
	ws string
	st *local.Backend
	fg *gitremote.Forge
	w  Wiring
}

func newFixture(t *testing.T) *fixture {
	ctx := context.Background()
	fx := &fixture{t: t, ws: t.TempDir()}
	os.WriteFile(filepath.Join(fx.ws, "branchml.yaml"), []byte("apiVersion: branchml.dev/v1\nproject: djia30\n"+
		"branches: {build: build-components, pipeline: kf-pipeline, train: training, deploy: deploy-model}\n"), 0o644)
	var err error
	if fx.st, err = local.New(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"djia30-data", "djia30-model"} {
		vol, _ := fx.st.EnsureVolume(ctx, storage.VolumeSpec{Name: v})
		os.WriteFile(filepath.Join(vol.Path, "f.txt"), []byte(v), 0o644)
	}
	if fx.fg, err = gitremote.Init(ctx, filepath.Join(t.TempDir(), "r.git"), map[string][]byte{"README.md": []byte("x\n")}, []string{"main", "training", "deploy-model"}); err != nil {
		t.Fatal(err)
	}
	fx.w = Wiring{Storage: func(*cli.Env) (storage.Backend, error) { return fx.st, nil }, Forge: func(*cli.Env) (forge.Forge, error) { return fx.fg, nil }}
	return fx
}

func (fx *fixture) do(want int, args ...string) string {
	fx.t.Helper()
	var out, errb bytes.Buffer
	code := cli.Run(context.Background(), AppWith(fx.w), append([]string{"branchml-snapshot"}, args...), cli.Streams{Out: &out, Err: &errb})
	if code != want {
		fx.t.Fatalf("%v: exit %d, want %d\nstdout %s\nstderr %s", args, code, want, out.String(), errb.String())
	}
	return out.String() + errb.String()
}

// run records one training run of model version v and returns its lineage ID.
func (fx *fixture) run(runID string, v int64, content string) string {
	fx.t.Helper()
	for _, vol := range []string{"djia30-data", "djia30-model"} {
		os.WriteFile(filepath.Join(fx.st.VolumePath(vol), "f.txt"), []byte(content), 0o644)
	}
	rec := records.RunRecord{APIVersion: records.APIVersion, Kind: "RunRecord", SourceCommit: commit, RunID: runID, State: "SUCCEEDED",
		DataVolume: "djia30-data", Model: &records.ModelRef{Name: "djia30", Version: v, Volume: "djia30-model", Path: "djia30"},
		StartedAt: time.Date(2026, 11, 29, 12, 0, int(v), 0, time.UTC)}
	raw, _ := json.Marshal(rec)
	os.MkdirAll(filepath.Join(fx.ws, ".branchml"), 0o755)
	os.WriteFile(filepath.Join(fx.ws, records.TrainingLockPath), raw, 0o644)
	fx.do(0, "run", "--workspace", fx.ws, "--commit", commit)
	return lineage.ID(commit, runID)
}

// A consistent rewrite of a snapshot's tree, manifest and handle passes
// the backend's own check, but not the handle the lineage record on git
// holds: verify exits 2 and names the lineage.
func TestVerifyChecksTheHandleOnGit(t *testing.T) {
	fx := newFixture(t)
	id := fx.run("run-1", 1, "djia30-data")
	name := "djia30-data-" + id
	dir := filepath.Join(fx.st.Root(), "snapshots", name)
	os.Chmod(filepath.Join(dir, "tree"), 0o755)
	os.Remove(filepath.Join(dir, "tree", "f.txt"))
	os.WriteFile(filepath.Join(dir, "tree", "f.txt"), []byte("forged"), 0o444)
	man, _ := fx.st.Manifest(name)
	sum := sha256.Sum256([]byte("forged"))
	for i := range man.Entries {
		if man.Entries[i].Path == "f.txt" {
			man.Entries[i].SHA256, man.Entries[i].Size = hex.EncodeToString(sum[:]), 6
		}
	}
	h := sha256.New()
	json.NewEncoder(h).Encode(man.Entries)
	meta, _ := fx.st.Meta(name)
	meta.Handle = "sha256:" + hex.EncodeToString(h.Sum(nil))
	for file, v := range map[string]any{"manifest.json": man, "meta.json": meta} {
		js, _ := json.Marshal(v)
		os.Remove(filepath.Join(dir, file))
		os.WriteFile(filepath.Join(dir, file), js, 0o444)
	}
	if rep, err := fx.st.Verify(context.Background(), name); err != nil || !rep.OK() {
		t.Fatalf("the backend's check should pass a consistent rewrite: %+v, %v", rep, err)
	}
	out := fx.do(2, "verify", "--workspace", fx.ws, name)
	if !strings.Contains(out, "but lineage "+id+" on training recorded sha256:") || !strings.Contains(out, "do not use this snapshot") {
		t.Fatalf("verify: %s", out)
	}
}

// Prune without --deploy-status reads what serves from the deploy branch
// and keeps its lineage's snapshots; with the lineage unknown it prunes
// nothing.
func TestPruneProtectsTheServingModelByDefault(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	id1 := fx.run("run-1", 1, "one")
	fx.run("run-2", 2, "two")
	fx.run("run-3", 3, "three")
	status, _ := json.Marshal(records.DeployStatus{APIVersion: records.APIVersion, Kind: "DeployStatus", Model: "djia30", Phase: "Succeeded", StableVersion: 1})
	spec := "apiVersion: branchml.dev/v1\nkind: DeploySpec\nmodel: {name: djia30, version: 1, volume: djia30-model, path: djia30}\nlineageId: " + id1 + "\n"
	if _, err := fx.fg.WriteBack(ctx, forge.WriteBack{Branch: "deploy-model", Message: "branchml deploy: test",
		Files: map[string][]byte{records.DeployStatusPath: status, records.DeploySpecPath: []byte(spec)}}); err != nil {
		t.Fatal(err)
	}
	out := fx.do(0, "prune", "--workspace", fx.ws, "--keep", "1")
	if !strings.Contains(out, "deleted 2 snapshots, kept 4 (2 protected)") {
		t.Fatalf("prune: %s", out)
	}
	for _, v := range []string{"djia30-data", "djia30-model"} {
		list, _ := fx.st.ListSnapshots(ctx, v)
		if len(list) != 2 || list[1].Name != v+"-"+id1 {
			t.Errorf("%s snapshots after prune: %+v", v, list)
		}
	}
	// Version 2 serves, but no record of it is at hand: nothing is pruned.
	status, _ = json.Marshal(records.DeployStatus{APIVersion: records.APIVersion, Kind: "DeployStatus", Model: "djia30", Phase: "Succeeded", StableVersion: 2})
	fx.fg.WriteBack(ctx, forge.WriteBack{Branch: "deploy-model", Message: "branchml deploy: test", Files: map[string][]byte{records.DeployStatusPath: status}})
	out = fx.do(2, "prune", "--workspace", fx.ws, "--keep", "1")
	if !strings.Contains(out, "version(s) [2] serve, but no lineage record names their snapshots: nothing was pruned") {
		t.Fatalf("prune: %s", out)
	}
}
