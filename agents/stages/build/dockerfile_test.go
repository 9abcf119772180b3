package build

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/branchml/branchml/agents/backends/registry"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/stages/build/imagebuild"
)

// stubBuilder stands in for an external Dockerfile builder (buildah, kaniko):
// it records what it was asked to build and returns a fixed image.
type stubBuilder struct{ got []imagebuild.DockerfileBuild }

func (s *stubBuilder) Name() string { return "stub" }

func (s *stubBuilder) Build(_ context.Context, b imagebuild.DockerfileBuild) (v1.Image, error) {
	s.got = append(s.got, b)
	return empty.Image, nil
}

func TestDockerfileComponent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	writeFiles(t, e.root, map[string]string{"components/web/Dockerfile": "FROM scratch\nCOPY index.html /\n", "components/web/index.html": "<p>hi</p>\n"})
	e.cfg.Components = []config.Component{{Name: "web", Path: "components/web", Kind: "dockerfile", Image: "ml/web", Test: []string{"test", "-f", "index.html"}}}
	stub := &stubBuilder{}
	o := e.opts(t, "1111111111111111111111111111111111111111")
	o.Builder = stub
	res, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if actions(res) != "web=built" || res.Components[0].Tests != "passed" || len(stub.got) != 1 {
		t.Fatalf("result %s %+v, %d builds", actions(res), res.Components, len(stub.got))
	}
	b := stub.got[0]
	if b.Name != "web" || b.Context != filepath.Join(e.root, "components/web") || b.Dir == "" {
		t.Fatalf("builder got %+v", b)
	}
	img, err := e.local.Pull(ctx, res.Components[0].Image)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	wantLabels := map[string]string{imagebuild.LabelRevision: "1111111111111111111111111111111111111111", imagebuild.LabelSource: "file:///ml.git"}
	if !reflect.DeepEqual(cf.Config.Labels, wantLabels) {
		t.Fatalf("labels %v", cf.Config.Labels)
	}
	lock := e.lockFile(t)
	if !strings.Contains(lock, `"repository": "ml/web"`) || strings.Contains(lock, `"binary"`) {
		t.Fatalf("lock:\n%s", lock)
	}
	// Unchanged: skipped without calling the builder.
	if res, err := Run(ctx, e.opts(t, "2222222222222222222222222222222222222222")); err != nil || actions(res) != "web=skipped" || len(stub.got) != 1 {
		t.Fatalf("second run: %v %v, %d builds", err, res, len(stub.got))
	}
}

// dirWriter is a stub builder that writes output into its Dir, as buildah does.
type dirWriter struct{ stubBuilder }

func (d *dirWriter) Build(ctx context.Context, b imagebuild.DockerfileBuild) (v1.Image, error) {
	if err := os.WriteFile(filepath.Join(b.Dir, "blob"), make([]byte, 1<<20), 0o644); err != nil {
		return nil, err
	}
	d.got = append(d.got, b)
	html, err := os.ReadFile(filepath.Join(b.Context, "index.html"))
	if err != nil {
		return nil, err
	}
	cf, _ := empty.Image.ConfigFile()
	cf = cf.DeepCopy()
	cf.Config.Env = []string{"PAGE=" + string(html)} // the content follows the context
	return mutate.ConfigFile(empty.Image, cf)
}

// TestDockerfileRelativeWorkspaceAndNoLeftovers: with a relative workspace
// the builder gets an absolute context (and Dockerfile); its output
// directory is gone when Run returns, pushed or not.
func TestDockerfileRelativeWorkspaceAndNoLeftovers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	writeFiles(t, e.root, map[string]string{"components/web/Dockerfile": "FROM scratch\nCOPY index.html /\n", "components/web/index.html": "<p>hi</p>\n"})
	e.cfg.Components = []config.Component{{Name: "web", Path: "components/web", Kind: "dockerfile", Image: "ml/web", Dockerfile: "components/web/Dockerfile"}}
	wd, _ := os.Getwd()
	rel, err := filepath.Rel(wd, e.root)
	if err != nil || filepath.IsAbs(rel) {
		t.Fatalf("relative path: %q %v", rel, err)
	}
	stub := &dirWriter{}
	o := e.opts(t, "1111111111111111111111111111111111111111")
	o.Workspace, o.Builder, o.TempDir = rel, stub, t.TempDir()
	if _, err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	b := stub.got[0]
	if b.Context != filepath.Join(e.root, "components/web") || b.Dockerfile != filepath.Join(e.root, "components/web/Dockerfile") {
		t.Fatalf("builder got context %q, Dockerfile %q", b.Context, b.Dockerfile)
	}
	if left, _ := os.ReadDir(o.TempDir); len(left) != 0 {
		t.Fatalf("left in the temporary directory: %v", left)
	}
	// A failed push leaves nothing either.
	writeFiles(t, e.root, map[string]string{"components/web/index.html": "<p>hello</p>\n"})
	o.Registry = failingPush{e.reg}
	o.Commit = "2222222222222222222222222222222222222222"
	if _, err := Run(context.Background(), o); err == nil {
		t.Fatal("push did not fail")
	}
	if left, _ := os.ReadDir(o.TempDir); len(left) != 0 {
		t.Fatalf("left after a failed push: %v", left)
	}
}

type failingPush struct{ *counting }

func (f failingPush) Push(context.Context, string, string, v1.Image) (registry.Pushed, error) {
	return registry.Pushed{}, errors.New("injected push failure")
}
