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

func TestKFPOutputStoresConfig(t *testing.T) {
	base := config.PipelinesBackend{Type: "kfp", Endpoint: "http://127.0.0.1:1"}
	for _, tc := range []struct {
		name string
		mod  func(*config.PipelinesBackend)
		env  map[string]string
		want string
	}{
		{"metadata URL", func(p *config.PipelinesBackend) { p.Metadata.Address = "http://mlmd:8080" }, nil, "backends.pipelines.metadata: ML Metadata address \"http://mlmd:8080\": want host:port"},
		{"metadata CA", func(p *config.PipelinesBackend) {
			p.Metadata.Address, p.Metadata.CAFile = "mlmd:8080", "/nonexistent.pem"
		}, nil, "backends.pipelines.metadata.caFile"},
		{"store endpoint", func(p *config.PipelinesBackend) { p.ObjectStore.Endpoint = "minio:9000" }, nil, "backends.pipelines.objectStore: object store endpoint \"minio:9000\": want http(s)://host[:port]"},
		{"secret file", func(p *config.PipelinesBackend) { p.ObjectStore.Endpoint = "http://minio:9000" }, map[string]string{"AWS_SECRET_ACCESS_KEY_FILE": "/nonexistent"}, "AWS_SECRET_ACCESS_KEY_FILE"},
		{"ok", func(p *config.PipelinesBackend) {
			p.Metadata.Address, p.ObjectStore.Endpoint = "mlmd:8080", "http://minio:9000"
		}, map[string]string{"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s3cret-key"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pb := base
			tc.mod(&pb)
			_, err := New(&config.Config{Backends: config.Backends{Pipelines: pb}}, WithGetenv(env(tc.env)))
			if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
