package buildcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/backends/forge/gitremote"
	"github.com/branchml/branchml/agents/backends/registry"
	"github.com/branchml/branchml/agents/backends/registry/registrytest"
	"github.com/branchml/branchml/agents/cli"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/records"
)

const yaml = `apiVersion: branchml.dev/v1
project: tiny
branches:
  build: build-components
  pipeline: kf-pipeline
  train: training
  deploy: deploy-model
components:
  - name: hello
    path: components/hello
    kind: go
    image: tiny/hello
pipeline:
  spec: pipeline.yaml
backends:
  stateDir: state
  forge: {type: local, remote: remote.git}
  registry: {type: local}
`

func setup(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"branchml.yaml":            yaml,
		"go.mod":                   "module example.com/tiny\n\ngo 1.22\n",
		"components/hello/main.go": "package main\n\nfunc main() { println(\"hi\") }\n",
	}
	for p, c := range files {
		os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(root, p), []byte(c), 0o644)
	}
	if _, err := gitremote.Init(context.Background(), filepath.Join(root, "remote.git"), map[string][]byte{"README.md": []byte("x\n")}, []string{"main", "build-components"}); err != nil {
		t.Fatal(err)
	}
	return root
}

func runApp(t *testing.T, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := cli.Run(context.Background(), App(), append([]string{"branchml-build"}, args...), cli.Streams{Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

func TestRunCommand(t *testing.T) {
	root := setup(t)
	resultFile := filepath.Join(t.TempDir(), "result.json")
	// Dry run first: a plan, nothing written.
	code, out, logs := runApp(t, "run", "--workspace", root, "--dry-run", "-o", "json")
	if code != 0 {
		t.Fatalf("dry run exit %d\n%s", code, logs)
	}
	var dry agent.Result
	if err := json.Unmarshal([]byte(out), &dry); err != nil {
		t.Fatal(err)
	}
	if dry.Summary != "would build 1 of 1 components, 0 unchanged" || !dry.DryRun {
		t.Fatalf("dry run result %+v", dry)
	}
	if !strings.Contains(logs, "hello: would build: new component: not in the lock") {
		t.Fatalf("dry-run log lacks the reason:\n%s", logs)
	}
	f, _ := gitremote.New(filepath.Join(root, "remote.git"))
	if _, err := f.ReadFile(context.Background(), "build-components", records.ComponentsLockPath); err == nil {
		t.Fatal("dry run wrote the lock")
	}

	code, _, logs = runApp(t, "run", "--workspace", root, "--commit", "abcdef0123456789", "--result", resultFile)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, logs)
	}
	raw, _ := os.ReadFile(resultFile)
	var res struct {
		Summary string  `json:"summary"`
		Outputs Outputs `json:"outputs"`
		Reports []agent.Report
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatal(err)
	}
	addr := registry.RecordedAddr(filepath.Join(root, "state", "registry"))
	h := res.Outputs.Components["hello"]
	if res.Summary != "built 1 of 1 components, 0 unchanged" || h.Action != "built" || h.Image != addr+"/tiny/hello@"+h.Digest || res.Outputs.LockCommit == "" {
		t.Fatalf("result %s", raw)
	}
	if len(res.Reports) != 1 || res.Reports[0].Path != "build/junit.xml" || res.Reports[0].Kind != "junit" {
		t.Fatalf("reports %+v", res.Reports)
	}
	lock, err := f.ReadFile(context.Background(), "build-components", records.ComponentsLockPath)
	if err != nil || !strings.Contains(string(lock), `"image": "`+h.Image+`"`) {
		t.Fatalf("lock %s %v", lock, err)
	}

	// Again: nothing to do.
	code, out, _ = runApp(t, "run", "--workspace", root, "--commit", "abcdef0123456789")
	if code != 0 || !strings.HasPrefix(out, "built 0 of 1 components, 1 unchanged\n") {
		t.Fatalf("second run exit %d:\n%s", code, out)
	}
}

func TestRunCommandErrors(t *testing.T) {
	root := setup(t)
	code, _, logs := runApp(t, "run", "--workspace", root)
	if code != agent.ExitUsage || !strings.Contains(logs, "the source commit is not known") || !strings.Contains(logs, "fix: pass --commit") {
		t.Fatalf("no commit: exit %d\n%s", code, logs)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "yesterday")
	code, _, logs = runApp(t, "run", "--workspace", root, "--commit", "abc")
	if code != agent.ExitUsage || !strings.Contains(logs, `SOURCE_DATE_EPOCH="yesterday" is not a number of seconds`) {
		t.Fatalf("bad epoch: exit %d\n%s", code, logs)
	}
}

// TestSourceURLOfLocalForge: the image.source label of the local forge is a
// file:// URL, not a path.
func TestSourceURLOfLocalForge(t *testing.T) {
	root := setup(t)
	cfg, err := config.Load(filepath.Join(root, "branchml.yaml"), config.WithEnviron(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := SourceURL(cfg), "file://"+filepath.ToSlash(root)+"/remote.git"; got != want {
		t.Fatalf("SourceURL = %q, want %q", got, want)
	}
	code, _, logs := runApp(t, "run", "--workspace", root, "--commit", "abc", "--source-url", "not a url")
	if code != agent.ExitUsage || !strings.Contains(logs, `image source "not a url" is not a URL`) {
		t.Fatalf("bad --source-url: exit %d\n%s", code, logs)
	}
}

// stages.build.requireApproval: a commit pushed onto the build branch is
// refused (exit 2, the fix text) before the registry is opened or anything
// is built or written back; one merged through an approved pull request
// gets past the gate (here to --source-url's own check).
func TestRunCommandRequireApproval(t *testing.T) {
	ctx := context.Background()
	root := setup(t)
	os.WriteFile(filepath.Join(root, "branchml.yaml"), []byte(yaml+"stages:\n  build: {requireApproval: true}\n"), 0o644)
	f, _ := gitremote.New(filepath.Join(root, "remote.git"))
	pushed, err := f.WriteBack(ctx, forge.WriteBack{Branch: "build-components", Message: "a push", Files: map[string][]byte{"a.txt": []byte("a\n")}})
	if err != nil {
		t.Fatal(err)
	}
	code, _, logs := runApp(t, "run", "--workspace", root, "--commit", pushed)
	if code != agent.ExitUsage || !strings.Contains(logs, "stages.build.requireApproval: commit "+pushed[:12]+" on build-components did not arrive through a merged pull request") ||
		!strings.Contains(logs, "fix: merge into build-components through a pull request with an approving review ('branchml pr open --head BRANCH --base build-components', approve, merge), or set stages.build.requireApproval: false") {
		t.Fatalf("unreviewed commit: exit %d\n%s", code, logs)
	}
	if _, err := f.ReadFile(ctx, "build-components", records.ComponentsLockPath); err == nil {
		t.Fatal("a refused run wrote the lock")
	}
	if _, err := os.Stat(filepath.Join(root, "state", "registry")); !os.IsNotExist(err) {
		t.Fatalf("a refused run opened the registry: %v", err)
	}

	f.WriteBack(ctx, forge.WriteBack{Branch: "main", Message: "a change", Files: map[string][]byte{"b.txt": []byte("b\n")}})
	pr, _ := f.EnsurePullRequest(ctx, forge.PullRequest{Head: "main", Base: "build-components", Title: "t", Author: "ds1"})
	if _, err := f.Review(ctx, pr.Number, "bob", "APPROVED", ""); err != nil {
		t.Fatal(err)
	}
	merged, err := f.MergeAs(ctx, pr.Number, "bob")
	if err != nil {
		t.Fatal(err)
	}
	code, _, logs = runApp(t, "run", "--workspace", root, "--commit", merged, "--source-url", "not a url")
	if code != agent.ExitUsage || strings.Contains(logs, "requireApproval") || !strings.Contains(logs, `image source "not a url" is not a URL`) {
		t.Fatalf("approved merge: exit %d\n%s", code, logs)
	}
	if _, err := os.Stat(filepath.Join(root, "state", "registry")); err != nil {
		t.Fatalf("an approved run did not get to the registry: %v", err)
	}
}

// TestRegistryTLSThroughConfiguration runs the stage against a real
// Distribution registry (TLS from a CA of the test's, htpasswd) set up by
// branchml.yaml alone: backends.registry.caFile (relative to the file)
// trusts its CA, insecureRegistries skips verification, and without either
// the stage fails at the push check naming TLS and the fix.
func TestRegistryTLSThroughConfiguration(t *testing.T) {
	d := registrytest.Start(t, registrytest.Options{TLS: true, Auth: true})
	t.Setenv("REGISTRY_USERNAME", d.User)
	t.Setenv("REGISTRY_PASSWORD", d.Password)
	ca, err := os.ReadFile(d.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, registry string
		code           int
		want           []string
	}{
		{"caFile", `{type: oci, host: "` + d.Host + `", caFile: certs/ca.pem, retryWindow: 30s}`, 0, []string{"hello: pushed " + d.Host + "/tiny/hello@sha256:"}},
		{"insecureRegistries", `{type: oci, host: "` + d.Host + `", insecureRegistries: ["` + d.Host + `"]}`, 0, []string{"hello: pushed " + d.Host + "/tiny/hello@sha256:"}},
		{"neither", `{type: oci, host: "` + d.Host + `"}`, agent.ExitFailed, []string{"check push access for hello", "TLS handshake with " + d.Host + " failed",
			"certificate signed by unknown authority", "fix: set backends.registry.caFile"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := setup(t)
			os.MkdirAll(filepath.Join(root, "certs"), 0o755)
			os.WriteFile(filepath.Join(root, "certs", "ca.pem"), ca, 0o644)
			cfg := strings.Replace(yaml, "registry: {type: local}", "registry: "+c.registry, 1)
			os.WriteFile(filepath.Join(root, "branchml.yaml"), []byte(cfg), 0o644)
			code, _, logs := runApp(t, "run", "--workspace", root, "--commit", "abcdef0123456789")
			if code != c.code {
				t.Fatalf("exit %d, want %d\n%s", code, c.code, logs)
			}
			for _, w := range c.want {
				if !strings.Contains(logs, w) {
					t.Errorf("log lacks %q:\n%s", w, logs)
				}
			}
			if _, err := os.Stat(filepath.Join(root, "build", "junit.xml")); (err == nil) != (c.code == 0) {
				t.Errorf("JUnit XML written %v with exit %d (tests must not run before a failed push check)", err == nil, code)
			}
		})
	}
}
