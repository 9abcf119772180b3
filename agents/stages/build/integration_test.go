package build

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/branchml/branchml/agents/backends/registry"
	"github.com/branchml/branchml/agents/backends/registry/registrytest"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/internal/agent"
	"github.com/branchml/branchml/agents/stages/build/imagebuild"
)

// distributionEnv is newEnv with its registry replaced by a real
// Distribution registry (TLS from a test CA, htpasswd) reached with opts.
func distributionEnv(t *testing.T, d *registrytest.Registry, opts ...registry.Option) *env {
	t.Helper()
	e := newEnv(t)
	r, err := registry.NewRemote(d.Host, append([]registry.Option{registry.WithRetry(2, 10*time.Millisecond), registry.WithGetenv(d.Env())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	e.reg = &counting{Registry: r}
	return e
}

// TestStageAgainstDistribution runs the stage against a Distribution
// registry with TLS and htpasswd: with the CA bundle it builds, pushes and
// skips what is there; without it, or with a wrong password, it stops at
// the push check, before any test.
func TestStageAgainstDistribution(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := registrytest.Start(t, registrytest.Options{TLS: true, Auth: true})

	e := distributionEnv(t, d, registry.WithCAFile(d.CAFile))
	res, err := Run(ctx, e.opts(t, "1111111111111111111111111111111111111111"))
	if err != nil {
		t.Fatal(err)
	}
	if actions(res) != "hello=built,other=built" || !strings.HasPrefix(res.Components[0].Image, d.Host+"/ml/hello@sha256:") {
		t.Fatalf("result %s %+v", actions(res), res.Components)
	}
	cf, err := e.reg.Config(ctx, res.Components[0].Image)
	if err != nil || cf.Config.Labels[imagebuild.LabelRevision] != "1111111111111111111111111111111111111111" || cf.Config.User != "65532:65532" {
		t.Fatalf("config read back: %+v, %v", cf, err)
	}
	if res, err := Run(ctx, e.opts(t, "2222222222222222222222222222222222222222")); err != nil || actions(res) != "hello=skipped,other=skipped" {
		t.Fatalf("second run: %v %v", err, res)
	}

	for _, c := range []struct {
		name string
		opts []registry.Option
		want []string
	}{
		{"no CA", nil, []string{"TLS handshake with " + d.Host + " failed", "certificate signed by unknown authority", "fix: set backends.registry.caFile"}},
		{"wrong password", []registry.Option{registry.WithCAFile(d.CAFile), registry.WithGetenv(func(k string) string {
			if k == "REGISTRY_PASSWORD" {
				return "wrong"
			}
			return d.Env()(k)
		})}, []string{"answered 401 Unauthorized (credentials: REGISTRY_USERNAME/REGISTRY_PASSWORD)", "fix: check the credentials for " + d.Host}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := distributionEnv(t, d, c.opts...)
			o := e.opts(t, "3333333333333333333333333333333333333333")
			_, err := Run(ctx, o)
			var ae *agent.Error
			if !errors.As(err, &ae) || ae.Code != agent.ExitFailed || ae.What != "check push access for hello" {
				t.Fatalf("err = %v", err)
			}
			text := err.Error() + "\nfix: " + ae.Fix
			for _, w := range c.want {
				if !strings.Contains(text, w) {
					t.Errorf("%q does not contain %q", text, w)
				}
			}
			if _, serr := os.Stat(o.JUnitPath); serr == nil {
				t.Error("tests ran before the push check")
			}
		})
	}
}

// TestBuildahAgainstDistribution builds a Dockerfile component with
// buildah (vfs storage, chroot isolation) from a relative workspace and
// pushes it to a Distribution registry with TLS and htpasswd; a forced
// rebuild makes the same digest and writes nothing; no builder output is
// left behind.
func TestBuildahAgainstDistribution(t *testing.T) {
	registrytest.Need(t, "buildah")
	if os.Geteuid() != 0 {
		t.Skip("buildah with vfs storage and chroot isolation runs as root here")
	}
	ctx := context.Background()
	d := registrytest.Start(t, registrytest.Options{TLS: true, Auth: true})
	e := distributionEnv(t, d, registry.WithCAFile(d.CAFile))
	writeFiles(t, e.root, map[string]string{
		"components/web/Dockerfile": "FROM scratch\nCOPY index.html /srv/index.html\nUSER 65532:65532\n",
		"components/web/index.html": "<p>hi</p>\n",
	})
	e.cfg.Components = []config.Component{{Name: "web", Path: "components/web", Kind: "dockerfile", Image: "ml/web"}}
	storage := t.TempDir()
	conf := filepath.Join(storage, "storage.conf")
	os.WriteFile(conf, []byte("[storage]\ndriver = \"vfs\"\nrunroot = \""+filepath.Join(storage, "run")+"\"\ngraphroot = \""+filepath.Join(storage, "graph")+"\"\n"), 0o644)
	t.Setenv("CONTAINERS_STORAGE_CONF", conf)
	t.Setenv("STORAGE_DRIVER", "vfs")
	t.Setenv("BUILDAH_ISOLATION", "chroot")

	wd, _ := os.Getwd()
	rel, err := filepath.Rel(wd, e.root)
	if err != nil {
		t.Fatal(err)
	}
	o := e.opts(t, "1111111111111111111111111111111111111111")
	o.Workspace, o.BuilderName, o.TempDir = rel, imagebuild.BuilderBuildah, t.TempDir()
	res, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	web := res.Components[0]
	if web.Action != ActionBuilt || !strings.HasPrefix(web.Image, d.Host+"/ml/web@sha256:") {
		t.Fatalf("web %+v", web)
	}
	img, err := e.reg.Pull(ctx, web.Image)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	if cf.Config.User != "65532:65532" || cf.Config.Labels[imagebuild.LabelRevision] != "1111111111111111111111111111111111111111" || cf.Config.Labels[imagebuild.LabelSource] != "file:///ml.git" {
		t.Fatalf("config %+v", cf.Config)
	}
	dir := t.TempDir()
	if err := registry.Unpack(img, dir); err != nil {
		t.Fatal(err)
	}
	if raw, err := os.ReadFile(filepath.Join(dir, "srv/index.html")); err != nil || string(raw) != "<p>hi</p>\n" {
		t.Fatalf("index.html in the image: %q %v", raw, err)
	}
	if left, _ := os.ReadDir(o.TempDir); len(left) != 0 {
		t.Fatalf("left after the build: %v", left)
	}
	before := e.lockFile(t)

	o.Force, o.Commit = true, "2222222222222222222222222222222222222222"
	res, err = Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if c := res.Components[0]; c.Digest != web.Digest || !c.ImageUnchanged || res.LockChanged || e.lockFile(t) != before {
		t.Fatalf("forced rebuild: %+v, lock changed %v", c, res.LockChanged)
	}
	if left, _ := os.ReadDir(o.TempDir); len(left) != 0 {
		t.Fatalf("left after the second build: %v", left)
	}
	// The builder's own storage keeps nothing either (buildah rmi after export).
	if out, err := exec.Command("buildah", "images", "--all", "--quiet").CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Fatalf("buildah images left: %q %v", out, err)
	}
	if layers, _ := os.ReadDir(filepath.Join(storage, "graph", "vfs")); len(layers) > 1 {
		t.Fatalf("buildah kept %d layers", len(layers))
	}
}
