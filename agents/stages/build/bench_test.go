package build

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/branchml/branchml/agents/backends/registry"
	"github.com/branchml/branchml/agents/config"
	"github.com/branchml/branchml/agents/stages/build/changes"
	"github.com/branchml/branchml/agents/stages/build/imagebuild"
)

// exampleDir is the worked example, relative to this package.
const exampleDir = "../../../examples/djia30"

func exampleComponents(b *testing.B) (string, []config.Component) {
	b.Helper()
	root, _ := filepath.Abs(exampleDir)
	cfg, err := config.Load(filepath.Join(root, "branchml.yaml"), config.WithEnviron(nil))
	if err != nil {
		b.Skipf("examples/djia30 config: %v", err)
	}
	return root, cfg.Components
}

// BenchmarkExample compares, in one run, building and pushing the images of
// examples/djia30's components (imagebuild.BuildGo + push to the embedded
// registry on loopback) with a plain `go build` of the same binaries with
// the same flags. "cold" gives each iteration an empty GOCACHE (both sides
// compile the standard library and gonum); "warm" uses the user's GOCACHE,
// primed before timing (both sides only link).
//
//	go test -run '^$' -bench BenchmarkExample -benchtime 3x ./agents/stages/build/
func BenchmarkExample(b *testing.B) {
	root, comps := exampleComponents(b)
	ctx := context.Background()
	type pkg struct {
		c   config.Component
		src *changes.Sources
	}
	var pkgs []pkg
	for _, c := range comps {
		src, err := changes.Hash(ctx, root, c)
		if err != nil {
			b.Skipf("examples/djia30 component %s: %v", c.Name, err)
		}
		pkgs = append(pkgs, pkg{c, src})
	}
	regDir := b.TempDir()
	s, err := registry.Start(regDir, "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	reg, _ := registry.NewLocal(s.Addr, regDir, registry.WithKeychain(authn.NewMultiKeychain(), "none"))
	// warm: the user's own build cache, primed below.
	raw, err := exec.Command("go", "env", "GOCACHE").Output()
	if err != nil {
		b.Fatal(err)
	}
	warmCache := strings.TrimSpace(string(raw))

	goBuild := func(b *testing.B, cache string) {
		for _, p := range pkgs {
			cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags="+imagebuild.DefaultLdflags, "-o", filepath.Join(b.TempDir(), p.c.Name), p.src.Package)
			cmd.Dir = p.src.ModuleDir
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOCACHE="+cache, "GOFLAGS=-mod=readonly")
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("go build %s: %v\n%s", p.c.Name, err, out)
			}
		}
	}
	imagePush := func(b *testing.B, cache string) {
		for _, p := range pkgs {
			built, err := imagebuild.BuildGo(ctx, imagebuild.GoImage{Name: p.c.Name, ModuleDir: p.src.ModuleDir, Package: p.src.Package,
				Binary: p.c.Binary, Labels: map[string]string{imagebuild.LabelRevision: "bench"}, Env: []string{"GOCACHE=" + cache}})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := reg.Push(ctx, p.c.Image, "", built.Image); err != nil {
				b.Fatal(err)
			}
		}
	}
	goBuild(b, warmCache) // prime
	for _, mode := range []string{"cold", "warm"} {
		for _, side := range []struct {
			name string
			fn   func(*testing.B, string)
		}{{"go-build", goBuild}, {"image-build-push", imagePush}} {
			b.Run(mode+"/"+side.name, func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					cache := warmCache
					if mode == "cold" {
						b.StopTimer()
						cache = b.TempDir()
						b.StartTimer()
					}
					side.fn(b, cache)
				}
			})
		}
	}
}

// TestExampleComponents plans the build of examples/djia30 against a fresh
// forge and registry, then builds, pushes and pulls back the image of each
// of its components (skipped with -short: it compiles the example).
func TestExampleComponents(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles examples/djia30")
	}
	root, _ := filepath.Abs(exampleDir)
	cfg, err := config.Load(filepath.Join(root, "branchml.yaml"), config.WithEnviron(nil))
	if err != nil {
		t.Skipf("examples/djia30 config: %v", err)
	}
	ctx := context.Background()
	e := newEnv(t)
	o := Options{Config: cfg, Forge: e.forge, Registry: e.reg, Workspace: root, DryRun: true}
	res, err := Run(ctx, o)
	if err != nil {
		t.Skipf("examples/djia30 does not plan (being written?): %v", err)
	}
	if actions(res) != "prepare-data=would-build,train=would-build,serve=would-build" {
		t.Fatalf("plan %s", actions(res))
	}
	for _, c := range cfg.Components {
		src, err := changes.Hash(ctx, root, c)
		if err != nil {
			t.Fatal(err)
		}
		built, err := imagebuild.BuildGo(ctx, imagebuild.GoImage{Name: c.Name, ModuleDir: src.ModuleDir, Package: src.Package, Binary: c.Binary})
		if err != nil {
			t.Skipf("examples/djia30 %s does not build (being written?): %v", c.Name, err)
		}
		pushed, err := e.reg.Push(ctx, c.Image, "", built.Image)
		if err != nil {
			t.Fatal(err)
		}
		img, err := e.local.Pull(ctx, pushed.Ref)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := registry.Unpack(img, dir); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(filepath.Join(dir, "ko-app", c.Name))
		if err != nil || fi.Size() != built.BinarySize || fi.Mode().Perm() != 0o755 {
			t.Fatalf("%s: unpacked binary %v, %v; want %d bytes, 0755", c.Name, fi, err, built.BinarySize)
		}
	}
}
