package lineage

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// Realistic is the record of a DJIA 30 training run on the local backends.
func Realistic() *Record {
	commit := "9f2c4e1a7b3d5c6e8f0a1b2c3d4e5f6a7b8c9d0e"
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	return &Record{
		APIVersion: APIVersion, Kind: Kind, SchemaVersion: SchemaVersion,
		ID:     ID(commit, "run-5d1c2a"),
		Source: Source{Repository: "https://github.com/acme/djia30", Branch: "training", Commit: commit},
		Config: Config{Path: "branchml.yaml", Hash: "sha256:4b1d9f0c2e7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c"},
		Pipeline: Pipeline{Backend: "local", ID: "djia30-sentiment", Name: "djia30-sentiment", VersionID: "v-7a3e",
			VersionName: "9f2c4e1-7a3e5b21", SpecHash: "sha256:7a3e5b21c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3", SourceCommit: "1e2d3c4b"},
		Images: []Image{
			{Component: "prepare-data", Image: "127.0.0.1:5000/djia30/prepare-data@sha256:aa11", Digest: "sha256:aa11"},
			{Component: "train", Image: "127.0.0.1:5000/djia30/train@sha256:bb22", Digest: "sha256:bb22"},
		},
		Run: Run{ID: "run-5d1c2a", Experiment: "djia30", State: "SUCCEEDED",
			Parameters: map[string]any{"epochs": 30.0, "hidden": "32,16", "learning_rate": 0.001},
			StartedAt:  t0, FinishedAt: t0.Add(4 * time.Minute)},
		Data: SnapshotRef{Volume: "djia30-data", Snapshot: "djia30-data-lin-3f9a", Handle: "sha256:cc33", CreatedAt: t0.Add(5 * time.Minute)},
		Model: Model{Name: "djia30", Version: 3, Path: "/models/djia30",
			Snapshot: SnapshotRef{Volume: "djia30-model", Snapshot: "djia30-model-lin-3f9a", Handle: "sha256:dd44", CreatedAt: t0.Add(5 * time.Minute)}},
		Metrics:   map[string]any{"validation": map[string]any{"auc": 0.5712, "accuracy": 0.548}},
		StartedBy: StartedBy{BuildURL: "https://jenkins.example.com/job/djia30/job/training/42/", User: "ana"},
		PullRequest: &PullRequest{Number: 7, URL: "https://github.com/acme/djia30/pull/7", Title: "Merge kf-pipeline into training", Author: "ana",
			Approvers: []string{"bob", "carol"}, MergedBy: "bob", MergeCommit: commit},
		Backend:   "local",
		CreatedAt: t0.Add(6 * time.Minute),
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		os.WriteFile(p, got, 0o644)
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestShowGolden(t *testing.T) {
	var b bytes.Buffer
	if err := Show(&b, Realistic()); err != nil {
		t.Fatal(err)
	}
	golden(t, "show.golden", b.Bytes())
	// Every link of the chain is named, down to the snapshots.
	for _, s := range []string{"9f2c4e1a7b3d", `pull request    #7 "Merge kf-pipeline into training" by ana, approved by bob, carol, merged by bob`, "sha256:4b1d9f0c", "v-7a3e", "djia30/train@sha256:bb22", "run-5d1c2a", "djia30-data-lin-3f9a", "djia30-model-lin-3f9a", "djia30 version 3"} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("show lacks %q", s)
		}
	}
}

func TestGraphGolden(t *testing.T) {
	second := Realistic()
	second.Run.ID = "run-77aa01"
	second.ID = ID(second.Source.Commit, second.Run.ID)
	second.Model.Version = 4
	second.Model.Snapshot.Snapshot = "djia30-model-lin-8c1d"
	for _, f := range []string{FormatDOT, FormatMermaid} {
		var b bytes.Buffer
		if err := Graph(&b, []*Record{Realistic(), second}, f); err != nil {
			t.Fatal(err)
		}
		golden(t, "graph."+f, b.Bytes())
	}
	if err := Graph(&bytes.Buffer{}, nil, "svg"); err == nil || !strings.Contains(err.Error(), "use dot or mermaid") {
		t.Fatalf("svg: %v", err)
	}
}

func TestParseRoundTripAndErrors(t *testing.T) {
	rec := Realistic()
	raw, err := rec.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := back.Marshal()
	if !bytes.Equal(raw, again) {
		t.Fatalf("round trip differs:\n%s\n%s", raw, again)
	}
	cases := map[string]string{
		`{"apiVersion":"branchml.dev/v1","kind":"Lineage","schemaVersion":3}`: "schemaVersion 3 is not supported",
		`{"apiVersion":"branchml.dev/v1","kind":"Lineage","schemaVersion":1,"id":"lin-0000000000000000","source":{"commit":"c"},"run":{"id":"r"},"data":{"snapshot":"s","volume":"v"}}`: "does not match commit and run",
		`{"bogus":1}`: `unknown field "bogus"`,
		`[]`:          "invalid lineage record",
	}
	for in, want := range cases {
		if _, err := Parse([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%s) = %v, want %q", in, err, want)
		}
	}
}

func TestFindAndLoadDir(t *testing.T) {
	dir := t.TempDir()
	a := Realistic()
	b := Realistic()
	b.Run.ID, b.Model.Version, b.CreatedAt = "run-2", 4, a.CreatedAt.Add(time.Hour)
	b.ID = ID(b.Source.Commit, b.Run.ID)
	for _, r := range []*Record{b, a} {
		raw, _ := r.Marshal()
		os.WriteFile(filepath.Join(dir, r.ID+".json"), raw, 0o644)
	}
	recs, err := LoadDir(dir)
	if err != nil || len(recs) != 2 || recs[0].ID != a.ID {
		t.Fatalf("LoadDir = %v, %v", recs, err)
	}
	for ref, want := range map[string]string{a.ID: a.ID, "4": b.ID, "djia30:3": a.ID, "djia30@4": b.ID} {
		r, err := Find(recs, ref)
		if err != nil || r.ID != want {
			t.Errorf("Find(%s) = %v, %v; want %s", ref, r, err, want)
		}
	}
	if _, err := Find(recs, "other:3"); !errors.Is(err, ErrNotFound) {
		t.Errorf("other:3: %v", err)
	}
	if _, err := Find(recs, "latest"); err == nil || !strings.Contains(err.Error(), "neither a lineage ID") {
		t.Errorf("latest: %v", err)
	}
	if ID("c", "r") != ID("c", "r") || ID("c", "r") == ID("c", "r2") || len(ID("c", "r")) != 20 {
		t.Error("ID is not deterministic and distinct")
	}
}

func FuzzParse(f *testing.F) {
	raw, _ := Realistic().Marshal()
	f.Add(raw)
	f.Add([]byte(`{"schemaVersion":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Parse(data)
		if err != nil {
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("Parse accepted an invalid record: %v", err)
		}
		var b bytes.Buffer
		if err := Show(&b, r); err != nil {
			t.Fatal(err)
		}
		if err := Graph(&b, []*Record{r}, FormatMermaid); err != nil {
			t.Fatal(err)
		}
	})
}
