package build

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/branchml/branchml/agents/backends/forge"
	"github.com/branchml/branchml/agents/backends/forge/gitremote"
	"github.com/branchml/branchml/agents/backends/registry"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/records"
	"github.com/branchml/branchml/agents/stages/build/changes"
	"github.com/branchml/branchml/agents/stages/build/imagebuild"
)

// counting is a registry.Registry that counts pushes.
type counting struct {
	registry.Registry
	pushes atomic.Int32
}

func (c *counting) Push(ctx context.Context, repo, tag string, img v1.Image) (registry.Pushed, error) {
	c.pushes.Add(1)
	return c.Registry.Push(ctx, repo, tag, img)
}

type env struct {
	root  string
	cfg   *config.Config
	forge *gitremote.Forge
	reg   *counting
	local *registry.Local
}

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(root, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// newEnv makes a tiny ML repository with two Go components (hello imports
// internal/greet; other does not), a bare git remote and a registry on loopback.
func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"go.mod":                         "module example.com/ml\n\ngo 1.22\n",
		"internal/greet/greet.go":        "package greet\n\n// Hello greets name.\nfunc Hello(name string) string { return \"hello, \" + name }\n",
		"components/hello/main.go":       "package main\n\nimport (\n\t\"fmt\"\n\t\"os\"\n\n\t\"example.com/ml/internal/greet\"\n)\n\nfunc main() { fmt.Println(greet.Hello(os.Args[1])) }\n",
		"components/hello/hello_test.go": "package main\n\nimport (\n\t\"testing\"\n\n\t\"example.com/ml/internal/greet\"\n)\n\nfunc TestGreet(t *testing.T) {\n\tif got := greet.Hello(\"x\"); got != \"hello, x\" {\n\t\tt.Fatalf(\"got %q\", got)\n\t}\n}\n",
		"components/other/main.go":       "package main\n\nfunc main() { println(\"other v1\") }\n",
	})
	cfg := &config.Config{Project: "ml", Dir: root,
		Branches: map[string]string{config.StageBuild: "build-components"},
		Components: []config.Component{
			{Name: "hello", Path: "components/hello", Kind: "go", Image: "ml/hello"},
			{Name: "other", Path: "components/other", Kind: "go", Image: "ml/other"},
		}}
	f, err := gitremote.Init(ctx, filepath.Join(t.TempDir(), "ml.git"), map[string][]byte{"README.md": []byte("ml\n")}, []string{"main", "build-components"})
	if err != nil {
		t.Fatal(err)
	}
	regDir := t.TempDir()
	s, err := registry.Start(regDir, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	local, err := registry.NewLocal(s.Addr, regDir, registry.WithKeychain(authn.NewMultiKeychain(), "none"))
	if err != nil {
		t.Fatal(err)
	}
	return &env{root: root, cfg: cfg, forge: f, reg: &counting{Registry: local}, local: local}
}

func (e *env) opts(t *testing.T, commit string) Options {
	return Options{Config: e.cfg, Forge: e.forge, Registry: e.reg, Commit: commit,
		JUnitPath: filepath.Join(t.TempDir(), "junit.xml"), SourceURL: "file:///ml.git"}
}

func (e *env) lockFile(t *testing.T) string {
	t.Helper()
	raw, err := e.forge.ReadFile(context.Background(), "build-components", records.ComponentsLockPath)
	if err != nil {
		t.Fatalf("read lock: %v", err)
	}
	return string(raw)
}

func actions(r *Result) string {
	var s []string
	for _, c := range r.Components {
		s = append(s, c.Name+"="+c.Action)
	}
	return strings.Join(s, ",")
}

func hashOf(t *testing.T, e *env, name string) string {
	for _, c := range e.cfg.Components {
		if c.Name == name {
			s, err := changes.Hash(context.Background(), e.root, c, changes.WithPlatforms(imagebuild.DefaultPlatform()))
			if err != nil {
				t.Fatal(err)
			}
			return s.Hash
		}
	}
	t.Fatalf("no component %s", name)
	return ""
}

func TestBuildTwiceThenChangeOne(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)

	// First run: both built, pushed, tested, locked.
	o := e.opts(t, "1111111111111111111111111111111111111111")
	res, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if actions(res) != "hello=built,other=built" || e.reg.pushes.Load() != 2 || res.LockCommit == "" || !res.LockChanged {
		t.Fatalf("first run: %s, %d pushes, lock commit %q", actions(res), e.reg.pushes.Load(), res.LockCommit)
	}
	host := e.local.Host()
	hello, other := res.Components[0], res.Components[1]
	if hello.Image != host+"/ml/hello@"+hello.Digest || hello.Tests != "passed" || hello.Reason != "new component: not in the lock" {
		t.Fatalf("hello = %+v", hello)
	}
	wantLock := `{
  "apiVersion": "branchml.dev/v1",
  "kind": "ComponentsLock",
  "sourceCommit": "1111111111111111111111111111111111111111",
  "registry": "` + host + `",
  "components": {
    "hello": {
      "repository": "ml/hello",
      "image": "` + hello.Image + `",
      "digest": "` + hello.Digest + `",
      "sourceHash": "` + hashOf(t, e, "hello") + `",
      "sourceCommit": "1111111111111111111111111111111111111111",
      "binary": "/ko-app/hello"
    },
    "other": {
      "repository": "ml/other",
      "image": "` + other.Image + `",
      "digest": "` + other.Digest + `",
      "sourceHash": "` + hashOf(t, e, "other") + `",
      "sourceCommit": "1111111111111111111111111111111111111111",
      "binary": "/ko-app/other"
    }
  }
}
`
	if got := e.lockFile(t); got != wantLock {
		t.Fatalf("lock:\n%s\nwant:\n%s", got, wantLock)
	}
	junitXML, err := os.ReadFile(o.JUnitPath)
	if err != nil || !strings.Contains(string(junitXML), `<testcase classname="example.com/ml/components/hello" name="TestGreet"`) {
		t.Fatalf("junit: %v\n%s", err, junitXML)
	}

	// Second run, another commit, nothing changed: nothing built or pushed, lock as it was.
	res2, err := Run(ctx, e.opts(t, "2222222222222222222222222222222222222222"))
	if err != nil {
		t.Fatal(err)
	}
	if actions(res2) != "hello=skipped,other=skipped" || e.reg.pushes.Load() != 2 || res2.LockCommit != "" || res2.LockChanged || res2.JUnit != "" {
		t.Fatalf("second run: %s, %d pushes, lock commit %q", actions(res2), e.reg.pushes.Load(), res2.LockCommit)
	}
	if want := "sources unchanged since 111111111111 (hash " + strings.TrimPrefix(hashOf(t, e, "hello"), "sha256:")[:12] + ") and image present: only relevant jobs run"; res2.Components[0].Reason != want {
		t.Fatalf("skip reason %q, want %q", res2.Components[0].Reason, want)
	}
	if res2.Components[0].Digest != hello.Digest {
		t.Fatal("skipped component lost its digest in the result")
	}
	if got := e.lockFile(t); got != wantLock {
		t.Fatal("second run changed the lock")
	}

	// Change only other: only other is rebuilt.
	writeFiles(t, e.root, map[string]string{"components/other/main.go": "package main\n\nfunc main() { println(\"other v2\") }\n"})
	res3, err := Run(ctx, e.opts(t, "3333333333333333333333333333333333333333"))
	if err != nil {
		t.Fatal(err)
	}
	if actions(res3) != "hello=skipped,other=built" || e.reg.pushes.Load() != 3 || res3.LockCommit == "" {
		t.Fatalf("third run: %s, %d pushes", actions(res3), e.reg.pushes.Load())
	}
	if !strings.HasPrefix(res3.Components[1].Reason, "sources changed since 111111111111 (hash ") || res3.Components[1].Digest == other.Digest {
		t.Fatalf("other = %+v", res3.Components[1])
	}
	lock3 := e.lockFile(t)
	if !strings.Contains(lock3, `"sourceCommit": "3333333333333333333333333333333333333333",
      "binary": "/ko-app/other"`) || !strings.Contains(lock3, `"digest": "`+hello.Digest+`",
      "sourceHash": "`+hashOf(t, e, "hello")+`",
      "sourceCommit": "1111111111111111111111111111111111111111"`) {
		t.Fatalf("lock after changing other:\n%s", lock3)
	}

	// Pull hello back, unpack it and run its binary.
	img, err := e.local.Pull(ctx, hello.Image)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	if cf.Config.Labels["org.opencontainers.image.revision"] != "1111111111111111111111111111111111111111" || cf.Config.Labels["org.opencontainers.image.source"] != "file:///ml.git" {
		t.Fatalf("labels %v", cf.Config.Labels)
	}
	dir := t.TempDir()
	if err := registry.Unpack(img, dir); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(dir, cf.Config.Entrypoint[0]), "branchml").Output()
	if err != nil || string(out) != "hello, branchml\n" {
		t.Fatalf("image binary printed %q, %v", out, err)
	}
}

func TestFailingTestPushesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	writeFiles(t, e.root, map[string]string{"components/hello/hello_test.go": "package main\n\nimport \"testing\"\n\nfunc TestBroken(t *testing.T) { t.Fatal(\"broken on purpose\") }\n"})
	o := e.opts(t, "1111111111111111111111111111111111111111")
	res, err := Run(ctx, o)
	var ce *agent.Error
	if !errors.As(err, &ce) || ce.Code != agent.ExitFailed || ce.What != "test hello" || !strings.Contains(ce.Fix, o.JUnitPath) {
		t.Fatalf("err = %v", err)
	}
	if e.reg.pushes.Load() != 0 {
		t.Fatalf("%d pushes after a failed test", e.reg.pushes.Load())
	}
	if _, err := e.forge.ReadFile(ctx, "build-components", records.ComponentsLockPath); !errors.Is(err, forge.ErrNotFound) {
		t.Fatalf("lock written after a failed test: %v", err)
	}
	if actions(res) != "hello=failed,other=failed" || res.Components[0].Tests != "failed" {
		t.Fatalf("result %s", actions(res))
	}
	raw, _ := os.ReadFile(o.JUnitPath)
	if !strings.Contains(string(raw), `name="TestBroken"`) || !strings.Contains(string(raw), "broken on purpose") {
		t.Fatalf("junit:\n%s", raw)
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	o := e.opts(t, "")
	o.DryRun = true
	res, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if actions(res) != "hello=would-build,other=would-build" || res.Components[0].Reason != "new component: not in the lock" || !res.LockChanged {
		t.Fatalf("plan: %s %+v", actions(res), res.Components)
	}
	if res.Summary(true) != "would build 2 of 2 components, 0 unchanged" {
		t.Fatalf("summary %q", res.Summary(true))
	}
	// The plan names the repository each image would be pushed to.
	host := e.local.Host()
	if r0, r1 := res.Components[0].Repository, res.Components[1].Repository; r0 != host+"/ml/hello" || r1 != host+"/ml/other" {
		t.Fatalf("repositories %q %q, want %s/ml/hello and %s/ml/other", r0, r1, host, host)
	}
	if e.reg.pushes.Load() != 0 || res.JUnit != "" {
		t.Fatal("dry run pushed or tested")
	}
	if _, err := os.Stat(o.JUnitPath); !os.IsNotExist(err) {
		t.Fatal("dry run wrote JUnit XML")
	}
	if _, err := e.forge.ReadFile(ctx, "build-components", records.ComponentsLockPath); !errors.Is(err, forge.ErrNotFound) {
		t.Fatalf("dry run wrote the lock: %v", err)
	}
}

func TestDockerfileWithoutBuilder(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	writeFiles(t, e.root, map[string]string{"components/web/Dockerfile": "FROM scratch\n"})
	e.cfg.Components = append(e.cfg.Components, config.Component{Name: "web", Path: "components/web", Kind: "dockerfile", Image: "ml/web"})
	o := e.opts(t, "")
	o.DryRun = true
	o.LookPath = func(string) (string, error) { return "", exec.ErrNotFound }
	_, err := Run(context.Background(), o)
	var ce *agent.Error
	if !errors.As(err, &ce) || ce.Code != agent.ExitUsage || ce.What != "build component web" ||
		!strings.Contains(err.Error(), "no Dockerfile builder found on PATH (looked for docker, buildah, executor)") {
		t.Fatalf("err = %v", err)
	}
}

func TestNoGoToolchainSaysSo(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	o := e.opts(t, "abc")
	o.DryRun = true
	o.Go = "go-not-installed-here"
	_, err := Run(context.Background(), o)
	var ce *agent.Error
	if !errors.As(err, &ce) || ce.Code != agent.ExitUsage || ce.Fix != "put the Go toolchain on PATH (kind: go components need it; the agents image of make image has it)" {
		t.Fatalf("err = %v (%+v)", err, ce)
	}
}

func TestOptionErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	o := e.opts(t, "")
	_, err := Run(context.Background(), o)
	if agent.CodeOf(err) != agent.ExitUsage || !strings.Contains(err.Error(), "the source commit is not known") {
		t.Fatalf("no commit: %v", err)
	}
	o = e.opts(t, "abc")
	e.cfg.Components[1].Image = "Bad Name"
	_, err = Run(context.Background(), o)
	if agent.CodeOf(err) != agent.ExitUsage || !strings.Contains(err.Error(), `component other: image "Bad Name" is not a valid repository`) {
		t.Fatalf("bad image: %v", err)
	}
}

// faultEnv serves the registry of a fresh directory behind fault.
func faultEnv(t *testing.T, fault func(h http.Handler) http.Handler, opts ...registry.Option) *env {
	e := newEnv(t)
	h, err := registry.NewHandler(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(fault(h))
	t.Cleanup(srv.Close)
	base := []registry.Option{registry.WithInsecure(true), registry.WithRetry(3, time.Millisecond), registry.WithAttemptTimeout(300 * time.Millisecond)}
	r, err := registry.NewRemote(srv.Listener.Addr().String(), append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	e.reg = &counting{Registry: r}
	e.cfg.Components = e.cfg.Components[:1] // hello only: the push fails anyway
	return e
}

func TestRegistryFailuresWriteNothing(t *testing.T) {
	t.Parallel()
	onUploads := func(status int) func(http.Handler) http.Handler {
		return func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/v2/" && r.Method != http.MethodHead {
					w.WriteHeader(status)
					return
				}
				h.ServeHTTP(w, r)
			})
		}
	}
	hang := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPut {
				<-r.Context().Done()
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	creds := map[string]string{"REGISTRY_USERNAME": "robot", "REGISTRY_PASSWORD": "pw-not-logged"}
	cases := []struct {
		name  string
		fault func(http.Handler) http.Handler
		opts  []registry.Option
		what  string
		want  []string
	}{
		// A 401 (or a registry that is down) shows before any test or build.
		{"401", onUploads(http.StatusUnauthorized), []registry.Option{registry.WithGetenv(func(k string) string { return creds[k] })},
			"check push access for hello", []string{"answered 401 Unauthorized (credentials: REGISTRY_USERNAME/REGISTRY_PASSWORD)", "check push access to "}},
		{"503", onUploads(http.StatusServiceUnavailable), []registry.Option{registry.WithKeychain(authn.NewMultiKeychain(), "none")},
			"check push access for hello", []string{"answered 503 Service Unavailable (after 3 attempts)"}},
		{"timeout", hang, []registry.Option{registry.WithKeychain(authn.NewMultiKeychain(), "none")},
			"push hello", []string{"(after 3 attempts)", "context deadline exceeded"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := faultEnv(t, c.fault, c.opts...)
			o := e.opts(t, "1111111111111111111111111111111111111111")
			res, err := Run(context.Background(), o)
			var ce *agent.Error
			if !errors.As(err, &ce) || ce.Code != agent.ExitFailed || ce.What != c.what {
				t.Fatalf("err = %v", err)
			}
			if _, serr := os.Stat(o.JUnitPath); c.what != "push hello" && (serr == nil || res.Components[0].Tests != "") {
				t.Errorf("tests ran before the push check failed")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if c.name == "401" && (!strings.Contains(ce.Fix, "REGISTRY_USERNAME/REGISTRY_PASSWORD") || res.Components[0].Reason != "not built: no push access to "+e.reg.Host()+"/ml/hello") {
				t.Errorf("fix %q does not name the credentials", ce.Fix)
			}
			var re *registry.Error
			if !errors.As(err, &re) || (c.name == "401") == re.Temporary() {
				t.Errorf("registry error %+v: temporary should be %v", re, c.name != "401")
			}
			if strings.Contains(err.Error(), "pw-not-logged") || strings.Contains(ce.Fix, "pw-not-logged") {
				t.Errorf("the password leaked into the error: %v", err)
			}
			if c.name == "401" && re.Attempts != 1 {
				t.Errorf("401 tried %d times, want 1", re.Attempts)
			}
			if _, err := e.forge.ReadFile(context.Background(), "build-components", records.ComponentsLockPath); !errors.Is(err, forge.ErrNotFound) {
				t.Fatalf("lock written after a registry failure: %v", err)
			}
		})
	}
}
