package pipelinesfactory

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/branchml/branchml/agents/backends/pipelines/kfp"
	"github.com/branchml/branchml/agents/backends/pipelines/local"
	"github.com/branchml/branchml/agents/backends/pipelines/local/runner"
	"github.com/branchml/branchml/agents/config"
	fake "github.com/branchml/branchml/agents/internal/fake/kfp"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestKFPWithTokenFile(t *testing.T) {
	s := fake.New(fake.WithToken("kfp-file-token"))
	defer s.Close()
	tok := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tok, []byte("kfp-file-token\n"), 0o600)
	cfg := &config.Config{Backends: config.Backends{Pipelines: config.PipelinesBackend{Type: "kfp", Endpoint: s.URL, Namespace: "team-a"}}}
	b, err := New(cfg, WithGetenv(env(map[string]string{"KFP_TOKEN_FILE": tok})))
	if err != nil {
		t.Fatal(err)
	}
	c, ok := b.(*kfp.Client)
	if !ok {
		t.Fatalf("backend %T", b)
	}
	if _, err := c.FindPipeline(context.Background(), "x"); err != nil {
		t.Fatal(err)
	}
	r := s.Requests()[0]
	if r.Authorization != "Bearer kfp-file-token" || r.Query.Get("namespace") != "team-a" {
		t.Errorf("request %s auth %q", r, r.Authorization)
	}
}

func TestLocal(t *testing.T) {
	dir := t.TempDir()
	cfg := &config.Config{Backends: config.Backends{StateDir: dir, Pipelines: config.PipelinesBackend{Type: "local"}}}
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "no runner") {
		t.Errorf("err = %v", err)
	}
	b, err := New(cfg, WithRunner(runner.New(nil)))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := b.(*local.Backend); !ok {
		t.Fatalf("backend %T", b)
	}
}

func TestRejects(t *testing.T) {
	for typ, want := range map[string]string{
		"argo": `backends.pipelines.type "argo": unknown; use "kfp" or "local"`,
		"kfp":  "backends.pipelines.endpoint: empty",
	} {
		_, err := New(&config.Config{Backends: config.Backends{Pipelines: config.PipelinesBackend{Type: typ}}})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v", typ, err)
		}
	}
}
