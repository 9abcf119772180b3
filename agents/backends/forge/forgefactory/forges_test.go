package forgefactory

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/branchml/branchml/agents/backends/forge/github"
	"github.com/branchml/branchml/agents/backends/forge/gitremote"
	"github.com/branchml/branchml/agents/config"
	fakegh "github.com/branchml/branchml/agents/internal/fake/github"
	"github.com/branchml/branchml/agents/internal/secrets"
)

func TestNewLocal(t *testing.T) {
	state := t.TempDir()
	cfg := &config.Config{Project: "djia30", Dir: t.TempDir()}
	cfg.Backends.StateDir = state
	cfg.Backends.Forge.Type = "local"
	want := filepath.Join(state, "forge", "djia30.git")
	if got := LocalRemote(cfg); got != want {
		t.Fatalf("LocalRemote = %s, want %s", got, want)
	}
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "gitremote.Init") {
		t.Fatalf("missing remote: %v", err)
	}
	if _, err := gitremote.Init(context.Background(), want, map[string][]byte{"a": []byte("a")}, []string{"main"}); err != nil {
		t.Fatal(err)
	}
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := f.ReadFile(context.Background(), "main", "a"); err != nil || string(got) != "a" {
		t.Fatalf("ReadFile = %q, %v", got, err)
	}
	if gr, ok := f.(*gitremote.Forge); !ok || gr.Remote() != want {
		t.Fatalf("forge = %T", f)
	}
	cfg.Backends.Forge.Remote = "repos/ml.git"
	if got := LocalRemote(cfg); got != filepath.Join(cfg.Dir, "repos/ml.git") {
		t.Fatalf("relative remote = %s", got)
	}
}

func TestNewGitHub(t *testing.T) {
	srv := fakegh.Start(t, fakegh.WithToken("tok-forges-test"))
	srv.Commit("main", map[string][]byte{"a": []byte("A")}, "init")
	cfg := &config.Config{Project: "p"}
	cfg.Backends.Forge = config.ForgeBackend{Type: "github", Owner: "acme", Repo: "ml", APIURL: srv.APIURL()}
	getenv := func(k string) string {
		if k == "GITHUB_TOKEN" {
			return "tok-forges-test"
		}
		return ""
	}
	f, err := New(cfg, WithGitHubOptions(github.WithGetenv(getenv)))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := f.ReadFile(context.Background(), "main", "a"); err != nil || string(got) != "A" {
		t.Fatalf("ReadFile = %q, %v", got, err)
	}
	_, err = New(cfg, WithGitHubOptions(github.WithGetenv(func(string) string { return "" })))
	if !errors.Is(err, secrets.ErrNotSet) {
		t.Fatalf("no token: %v", err)
	}
}

func TestNewUnknownType(t *testing.T) {
	cfg := &config.Config{}
	cfg.Backends.Forge.Type = "gitlab"
	_, err := New(cfg)
	if err == nil || err.Error() != `backends.forge.type "gitlab" is unknown: use one of local, github` {
		t.Fatalf("err = %v", err)
	}
}
